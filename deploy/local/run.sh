#!/usr/bin/env bash
# `make run`: provision and start Kafka and PostgreSQL (or reuse them), a local SMTP sink,
# and the four services, all in the foreground with one prefixed log stream. Ctrl-C stops
# the services and the sink; Kafka and PostgreSQL keep running (`make infra-down`).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
py="$repo/.venv/bin/python"

echo "run: starting Kafka and PostgreSQL (first time: downloads Kafka from Maven Central)" >&2
set -a
eval "$(bash deploy/local/infra.sh up)"
set +a
export OFFRAMP_SMTP_HOST=127.0.0.1
export OFFRAMP_SMTP_PORT="${OFFRAMP_SMTP_PORT:-2525}"
export OFFRAMP_LOG_FORMAT="${OFFRAMP_LOG_FORMAT:-console}"

pids=()
names=()
stop() {
  trap - INT TERM EXIT
  echo "run: stopping services" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  echo "run: stopped (Kafka and PostgreSQL still up; 'make infra-down' stops them)" >&2
}
trap stop INT TERM EXIT

start() {  # name, command...: run it in the background, every output line prefixed
  local name=$1; shift
  # Process substitution keeps $! the service's own pid, so stop() signals it directly.
  "$@" > >(sed -u "s/^/$(printf '%-17s' "[$name]") /") 2>&1 &
  pids+=($!)
  names+=("$name")
}

start smtp-sink "$py" -m shared.cli smtp-sink --port "$OFFRAMP_SMTP_PORT"
OFFRAMP_HEALTH_PORT=8081 start enrollment "$py" -m services.enrollment
OFFRAMP_HEALTH_PORT=8082 start scheduler "$py" -m services.scheduler
OFFRAMP_HEALTH_PORT=8083 start trigger-evaluator "$py" -m services.trigger_evaluator
OFFRAMP_HEALTH_PORT=8084 start messaging "$py" -m services.messaging

cat >&2 <<EOT

run: Offramp is starting.
  Kafka       $KAFKA_BOOTSTRAP_SERVERS
  PostgreSQL  $DATABASE_URL
  SMTP sink   127.0.0.1:$OFFRAMP_SMTP_PORT (every email the system sends is printed here)
  Health      http://127.0.0.1:8081/readyz (enrollment), 8082 scheduler, 8083 trigger-evaluator, 8084 messaging

  In another terminal:
    make demo                                   # apply a workflow, enroll, reply, watch the exit
    .venv/bin/offramp --help                    # the operator CLI (apply, enroll, exit, publish, tail)
    .venv/bin/offramp publish offramp.inbound.email.v1 deploy/local/samples/email.replied.json
    .venv/bin/offramp tail offramp.enrollment.events.v1

  Ctrl-C stops the services.
EOT

# Run until Ctrl-C, until whoever started us goes away, or until a service exits.
parent=$PPID
while kill -0 "$parent" 2>/dev/null; do
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "run: ${names[$i]} exited; stopping the others (its log is above)" >&2
      exit 1
    fi
  done
  sleep 1
done
