#!/usr/bin/env python3
"""Kafka readiness probe using only the Python standard library.

Usage: kafka_ready.py HOST:PORT [--timeout SECONDS] [--wait SECONDS] [-v]

Exit status 0 when the broker answers a Metadata request listing at least one
broker, 1 otherwise.

Why not just check that the port is open: a KRaft broker binds its listener
early, but it only reports itself in Metadata responses once it has caught up
with the metadata log, registered with the controller and been unfenced. Before
that, producers/consumers/admin clients connect but then time out, which makes
tests flaky. A Metadata answer with >= 1 broker is what clients need.

Why hand-rolled bytes: this runs before the project's virtualenv exists (it is
called by deploy/local/infra.sh), so it must not import kafka clients.

Protocol notes (https://kafka.apache.org/protocol):
  * Metadata (api key 3) version 4 is used: it is supported by every broker
    from 1.0 up to and including 4.x (Kafka 4.0 dropped Metadata v0-v3), and it
    is a non-"flexible" version, so plain fixed-width encoding works.
  * Request  = INT32 size, header v1 (api_key INT16, api_version INT16,
    correlation_id INT32, client_id NULLABLE_STRING), then the body
    (topics ARRAY with 0 entries = "no topics, brokers only",
    allow_auto_topic_creation BOOLEAN).
  * Response = INT32 size, header v0 (correlation_id INT32), then the body
    starting with throttle_time_ms INT32 and the brokers ARRAY of
    (node_id INT32, host STRING, port INT32, rack NULLABLE_STRING).
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

API_KEY_METADATA = 3
API_VERSION = 4
CLIENT_ID = b"offramp-kafka-ready"
# Responses to a brokers-only request are tiny; anything larger means we are
# not talking to Kafka (or the stream is corrupt).
MAX_RESPONSE = 1 << 20


class ProbeError(Exception):
    pass


def build_request(correlation_id: int) -> bytes:
    header = (
        struct.pack(">hhih", API_KEY_METADATA, API_VERSION, correlation_id, len(CLIENT_ID))
        + CLIENT_ID
    )
    # topics: empty array (count 0) -> only broker/cluster info is returned;
    # allow_auto_topic_creation: false (irrelevant without topics).
    body = struct.pack(">i?", 0, False)
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by peer before full response")
        buf += chunk
    return bytes(buf)


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProbeError("truncated Metadata response")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def int16(self) -> int:
        return self.take(">h")[0]

    def int32(self) -> int:
        return self.take(">i")[0]

    def string(self, nullable: bool = False) -> str | None:
        length = self.int16()
        if length < 0:
            if nullable:
                return None
            raise ProbeError("unexpected null string")
        raw = self.take(f">{length}s")[0]
        return raw.decode("utf-8", errors="replace")


def probe(host: str, port: int, timeout: float) -> list[tuple[int, str, int]]:
    """Return the broker list from one Metadata round trip (raises on failure)."""
    correlation_id = int(time.time()) & 0x7FFFFFFF
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(build_request(correlation_id))
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        if size < 8 or size > MAX_RESPONSE:
            raise ProbeError(f"implausible response size {size}")
        r = Reader(recv_exact(sock, size))

    if r.int32() != correlation_id:
        raise ProbeError("correlation id mismatch (not a Kafka response?)")
    r.int32()  # throttle_time_ms
    count = r.int32()
    if count < 0 or count > 10_000:
        raise ProbeError(f"implausible broker count {count}")
    brokers = []
    for _ in range(count):
        node_id = r.int32()
        broker_host = r.string() or ""
        broker_port = r.int32()
        r.string(nullable=True)  # rack
        brokers.append((node_id, broker_host, broker_port))
    return brokers


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", type=parse_address, help="HOST:PORT of a broker listener")
    parser.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        help="per-attempt connect/read timeout in seconds (default 3)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="keep retrying for up to this many seconds (default: single attempt)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print the broker list on success and the reason on failure",
    )
    args = parser.parse_args(argv)
    host, port = args.address

    deadline = time.monotonic() + args.wait
    while True:
        try:
            brokers = probe(host, port, args.timeout)
            if brokers:
                if args.verbose:
                    listed = ", ".join(f"id={b[0]} {b[1]}:{b[2]}" for b in brokers)
                    print(f"kafka ready at {host}:{port}: brokers [{listed}]", file=sys.stderr)
                return 0
            reason = "Metadata response lists no brokers yet"
        except (OSError, ProbeError, struct.error) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            if args.verbose:
                print(f"kafka not ready at {host}:{port}: {reason}", file=sys.stderr)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
