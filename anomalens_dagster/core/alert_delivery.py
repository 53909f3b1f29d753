"""Senders of alert payloads: a JSON webhook, Slack's chat.postMessage, e-mail over SMTP (no dagster import).

Each takes the payload as the outbox sends it (with its `idempotency_key`) and raises when the target
did not accept it; the outbox records the error and retries later. Secrets are given to a sender
already read from the environment and are never part of what it raises.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol

from anomalens_dagster.core.alerts import message_id, subject, text

IDEMPOTENCY_HEADER = "Idempotency-Key"
SLACK_EVENT_TYPE = "anomalens_alert"


class DeliveryError(RuntimeError):
    """A target refused an alert or could not be reached; the message names the target, never a secret."""


@dataclass(frozen=True)
class WebhookSender:
    """POSTs the payload as JSON, with the idempotency key in the `Idempotency-Key` header too.

    `headers` (an authorisation header, its token read from the environment) are sent as given and
    never quoted in errors. Any 2xx answer is a delivery; anything else raises.
    """

    url: str
    timeout_seconds: float
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def send(self, payload: Mapping[str, Any]) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                IDEMPOTENCY_HEADER: str(payload["idempotency_key"]),
                **self.headers,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            raise DeliveryError(f"webhook {self.url} answered HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            raise DeliveryError(f"webhook {self.url} unreachable: {getattr(error, 'reason', error)}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook {self.url} answered HTTP {status}")


class SlackClient(Protocol):
    """What a `slack_sdk.WebClient` offers that the Slack sender uses."""

    def chat_postMessage(self, **kwargs: Any) -> Any: ...  # noqa: N802 (Slack's method name)


@dataclass(frozen=True)
class SlackSender:
    """Posts the alert's text to a channel; the idempotency key rides in the message's metadata and text."""

    client: SlackClient = field(repr=False)
    channel: str

    def send(self, payload: Mapping[str, Any]) -> None:
        try:
            self.client.chat_postMessage(
                channel=self.channel,
                text=text(payload),
                metadata={
                    "event_type": SLACK_EVENT_TYPE,
                    "event_payload": {
                        "idempotency_key": str(payload["idempotency_key"]),
                        "incident_id": str(payload["incident_id"]),
                    },
                },
            )
        except Exception as error:  # slack_sdk raises SlackApiError (ok: false) or a transport error
            raise DeliveryError(f"Slack chat.postMessage to {self.channel} failed: {_slack_reason(error)}") from None


def _slack_reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    data = getattr(response, "data", None)
    if isinstance(data, Mapping) and data.get("error"):
        return str(data["error"])
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class EmailSender:
    """Sends a plain-text e-mail whose Message-ID is derived from the idempotency key (a resend has the same)."""

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    starttls: bool
    timeout_seconds: float
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def send(self, payload: Mapping[str, Any]) -> None:
        key = str(payload["idempotency_key"])
        message = EmailMessage()
        message["Subject"] = subject(payload)
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id(key)
        message["X-Idempotency-Key"] = key
        message.set_content(text(payload))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as error:
            raise DeliveryError(f"SMTP {self.host}:{self.port} refused the login (code {error.smtp_code})") from None
        except (smtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"SMTP {self.host}:{self.port} failed: {type(error).__name__}: {error}") from None


@dataclass(frozen=True)
class UnusableSender:
    """A target whose settings name an environment variable that is not set: every attempt fails saying so."""

    reason: str

    def send(self, payload: Mapping[str, Any]) -> None:
        raise DeliveryError(self.reason)
