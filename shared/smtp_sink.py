"""A development SMTP server that prints each email it receives (``make run`` starts it)."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller


class PrintingHandler:
    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        mail = message_from_bytes(envelope.original_content or envelope.content)
        print(
            f"email to={','.join(envelope.rcpt_tos)} subject={mail['Subject']!r}"
            f" message-id={mail['Message-ID']}",
            flush=True,
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int) -> None:
    controller = Controller(PrintingHandler(), hostname=host, port=port)
    controller.start()
    print(f"smtp sink listening on {host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        controller.stop()
