"""Which provider each channel uses, as the settings choose (``build_providers``)."""

from __future__ import annotations

from collections.abc import Mapping

from services.messaging.config import MessagingSettings
from services.messaging.http_providers import (
    LookupWebhookProvider,
    TwilioProvider,
    WebhookProvider,
)
from services.messaging.providers import LogProvider, Provider, SmtpProvider
from services.messaging.smtp_pool import PoolLimits
from shared.contracts.inbound import Channel


def build_providers(settings: MessagingSettings) -> Mapping[Channel, Provider]:
    """One provider per channel: SMTP (or log) for email; log, Twilio or webhook for SMS
    and chat."""
    return {
        Channel.EMAIL: _email(settings),
        Channel.SMS: _http(Channel.SMS, settings),
        Channel.CHAT: _http(Channel.CHAT, settings),
    }


def _email(settings: MessagingSettings) -> Provider:
    if settings.email_provider != "smtp":
        return LogProvider(Channel.EMAIL)
    password = settings.smtp_password
    return SmtpProvider(
        host=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_use_tls,
        start_tls=settings.smtp_start_tls,
        validate_certs=settings.smtp_validate_certs,
        cert_bundle=settings.smtp_cert_bundle,
        username=settings.smtp_username,
        password=password.get_secret_value() if password else None,
        timeout_s=settings.send_timeout_s,
        limits=PoolLimits(
            size=settings.smtp_pool_size,
            max_messages=settings.smtp_pool_max_messages,
            idle_check_s=settings.smtp_pool_idle_check_s,
            idle_close_s=settings.smtp_pool_idle_close_s,
        ),
    )


def _http(channel: Channel, settings: MessagingSettings) -> Provider:
    choice = settings.sms_provider if channel is Channel.SMS else settings.chat_provider
    timeout_s, connections = settings.send_timeout_s, settings.http_max_connections
    if choice == "twilio":
        sid, token = settings.twilio_account_sid, settings.twilio_auth_token
        if sid is None or token is None:  # the settings' validator already refused this
            raise ValueError("twilio needs OFFRAMP_TWILIO_ACCOUNT_SID and _AUTH_TOKEN")
        callback = settings.twilio_status_callback_url
        return TwilioProvider(
            base_url=str(settings.twilio_base_url),
            account_sid=sid,
            auth_token=token.get_secret_value(),
            status_callback_url=str(callback) if callback else None,
            timeout_s=timeout_s,
            max_connections=connections,
        )
    if choice == "webhook":
        url = settings.sms_webhook_url if channel is Channel.SMS else settings.chat_webhook_url
        if url is None:
            raise ValueError(f"OFFRAMP_{channel.value.upper()}_WEBHOOK_URL is not set")
        secret = settings.webhook_token
        kind = LookupWebhookProvider if settings.webhook_lookup else WebhookProvider
        return kind(
            url=str(url),
            token=secret.get_secret_value() if secret else None,
            timeout_s=timeout_s,
            max_connections=connections,
        )
    return LogProvider(channel)
