"""SMS and chat providers over HTTP: a Twilio-compatible Messages API and a generic JSON
webhook. Both classify answers as the SMTP provider does (``http_failure``): 2xx
accepted (with the provider's message id), 5xx, 408 and 429 transient (honouring
Retry-After), any other 4xx permanent; a connection error or time-out transient.

Each call carries the send's Message-ID as its idempotency key (``Idempotency-Key``
header; Twilio-compatible APIs that honour ``I-Twilio-Idempotency-Token`` get it there
too), so a retry after a time-out is not delivered twice by a provider that keeps keys.
Only the webhook can say afterwards whether it accepted a key (``webhook_lookup``): a
send left by a crash is then looked up, not sent again. Twilio's API offers no such
look-up: like SMTP, such a send goes again (counted as a re-send after a crash).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from services.messaging.errors import ProviderError
from services.messaging.providers import OutboundEmail, http_failure
from shared.contracts.events import FailureKind
from shared.logging import get_logger

log = get_logger(__name__)

TWILIO_RECIPIENT_GONE = frozenset({21211, 21214, 21610, 21614})
"""Twilio error codes that say the recipient cannot get messages: invalid or unreachable
'To' number (21211, 21214), not a mobile number (21614), unsubscribed with STOP (21610)."""


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delay-seconds or an HTTP date);
    None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - (now or datetime.now(UTC))).total_seconds())


def _json(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    text: str
    retry_after: str | None


class HttpProvider:
    """What both adapters share: one pooled client session (aiohttp: httpx's connection
    pool cost about 3 ms of CPU per request at 32 in flight, a sixteenth of the rate), the
    call and its classification."""

    name = "http"

    def __init__(self, *, timeout_s: float, max_connections: int = 32) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, opened on first use (inside the running event loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(self, method: str, url: str, **request: Any) -> Answer:
        async with self._client().request(method, url, **request) as response:
            text = await response.text()
            return Answer(response.status, text, response.headers.get("Retry-After"))

    async def _post(self, email: OutboundEmail, url: str, **request: Any) -> dict[str, Any]:
        """POST and classify; returns the accepted answer's JSON body."""
        try:
            answer = await self._request("POST", url, **request)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(
                f"{self.name} provider unreachable for {email.message_id}: {exc!r}"
            ) from exc
        body = _json(answer.text)
        if 200 <= answer.status < 300:
            return body
        failure = http_failure(answer.status)
        if failure is not None and self._recipient_gone(answer.status, body):
            failure = FailureKind.HARD_BOUNCE
        raise ProviderError(
            f"{self.name} provider answered {answer.status} for {email.message_id}: "
            f"{answer.text[:500]}",
            failure=failure,
            retry_after_s=retry_after_s(answer.retry_after),
        )

    def _recipient_gone(self, status: int, body: dict[str, Any]) -> bool:
        del status, body
        return False


class TwilioProvider(HttpProvider):
    """Twilio's Messages API (and the many APIs that copy it): form-encoded POST to
    ``{base}/2010-04-01/Accounts/{sid}/Messages.json`` with Basic auth; the answer's
    ``sid`` is the provider's message id."""

    name = "twilio"

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        status_callback_url: str | None = None,
        timeout_s: float,
        max_connections: int = 32,
    ) -> None:
        super().__init__(timeout_s=timeout_s, max_connections=max_connections)
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._authorization = f"Basic {credentials}"
        self._status_callback_url = status_callback_url

    async def send(self, email: OutboundEmail) -> str | None:
        form = {"To": email.recipient, "Body": email.body}
        # A Messaging Service (MG...) picks the number itself; else the step's number sends.
        sender_field = "MessagingServiceSid" if email.sender.startswith("MG") else "From"
        form[sender_field] = email.sender
        key = email.message_id
        if self._status_callback_url:
            # The callback names Offramp's id, so the gateway can publish the report with it.
            joint = "&" if "?" in self._status_callback_url else "?"
            query = urlencode({"offramp_message_id": key})
            form["StatusCallback"] = f"{self._status_callback_url}{joint}{query}"
        body = await self._post(
            email,
            self._url,
            data=form,
            headers={
                "Authorization": self._authorization,
                "Idempotency-Key": key,
                "I-Twilio-Idempotency-Token": key,
            },
        )
        sid = body.get("sid")
        return str(sid) if sid else None

    def _recipient_gone(self, status: int, body: dict[str, Any]) -> bool:
        code = body.get("code")
        return isinstance(code, int) and code in TWILIO_RECIPIENT_GONE


class WebhookProvider(HttpProvider):
    """A generic JSON webhook: POST ``{message_id, channel, from, to, subject, body,
    record}`` with ``Idempotency-Key`` and an optional Bearer token; a 2xx answer accepts it
    (its JSON ``id``, if any, is the provider's message id). A 4xx whose JSON says
    ``"reason": "recipient_unknown"`` is a hard bounce."""

    name = "webhook"

    def __init__(
        self,
        *,
        url: str,
        token: str | None = None,
        timeout_s: float,
        max_connections: int = 32,
    ) -> None:
        super().__init__(timeout_s=timeout_s, max_connections=max_connections)
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def send(self, email: OutboundEmail) -> str | None:
        body = await self._post(
            email,
            self._url,
            json={
                "message_id": email.message_id,
                "channel": email.channel.value,
                "from": email.sender,
                "to": email.recipient,
                "subject": email.subject or None,
                "body": email.body,
                "record": email.record,
                "offramp_enrollment_id": email.enrollment_id,
            },
            headers={**self._headers, "Idempotency-Key": email.message_id},
        )
        provider_id = body.get("id")
        return str(provider_id) if provider_id else None

    def _recipient_gone(self, status: int, body: dict[str, Any]) -> bool:
        return body.get("reason") == "recipient_unknown"


class LookupWebhookProvider(WebhookProvider):
    """A webhook that also answers ``GET {url}/{Idempotency-Key}``: 200 when it accepted
    that key, 404 when not. A crash's send is looked up instead of sent again."""

    async def already_accepted(self, message_id: str) -> bool:
        url = f"{self._url.rstrip('/')}/{quote(message_id, safe='')}"
        answer = await self._request("GET", url, headers=self._headers)
        if answer.status == 404:
            return False
        if 200 <= answer.status < 300:
            return True
        # Anything else: unknown, resolved at the next round.
        raise ProviderError(f"webhook look-up of {message_id} answered {answer.status}")
