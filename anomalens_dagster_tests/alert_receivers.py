"""Real servers on loopback that alert tests deliver to: a JSON webhook, a fake of Slack's Web API, an SMTP server.

Each runs in a thread of the test process and records what it received, as a receiver would: the
webhook and the fake Slack answer over real HTTP, the SMTP server is aiosmtpd's.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from anomalens_dagster_tests.e2e_support import free_loopback_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _HttpReceiver:
    """A threaded HTTP server whose `answer(request) -> (status, body)` decides each response."""

    received: list[Received] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # time.time() of each request, in order
    # Statuses to answer first, one per request (e.g. [503, 503]); then 200.
    failures: list[int] = field(default_factory=list)
    # Idempotency keys answered 503 (a target that is down for those alerts only).
    refused_keys: set[str] = field(default_factory=set)
    # Status of each answer, in the order of `received`.
    statuses: list[int] = field(default_factory=list)
    # While cleared, a request is recorded and then held without an answer (a sender that dies waiting).
    answering: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keys(self) -> list[str]:
        return [request.body.get("idempotency_key") for request in self.received]

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.failures:
            return self.failures.pop(0), {"error": "down"}
        if request.body.get("idempotency_key") in self.refused_keys:
            return 503, {"error": "down"}
        return 200, {"ok": True}

    def accepted(self) -> list[str]:
        """The idempotency keys of the requests answered 2xx, in order."""
        return [key for key, status in zip(self.keys(), self.statuses, strict=False) if 200 <= status < 300]


def _handler(receiver: _HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            content_type = self.headers.get("Content-Type") or ""
            body = json.loads(raw) if "json" in content_type else {"form": raw.decode()}
            request = Received(self.path, {key.lower(): value for key, value in self.headers.items()}, body)
            receiver.received_at.append(time.time())
            receiver.received.append(request)
            receiver.arrived.set()
            receiver.answering.wait(timeout=120)
            status, answer = receiver.answer(request)
            receiver.statuses.append(status)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            pass

    return Handler


@contextmanager
def _serving(receiver: _HttpReceiver) -> Iterator[_HttpReceiver]:
    receiver.answering.set()
    receiver.port = free_loopback_port()
    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.answering.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class WebhookReceiver(_HttpReceiver):
    """A JSON webhook: 200 to every POST once its planned failures are used up."""


@dataclass
class FakeSlackApi(_HttpReceiver):
    """Slack's Web API as chat.postMessage sees it: a bot token in the Authorization header, `ok` in the answer."""

    token: str = ""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def messages(self) -> list[dict[str, Any]]:
        return [request.body for request in self.received if request.path == "/api/chat.postMessage"]

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}
        if self.failures:
            return self.failures.pop(0), {"ok": False, "error": "service_unavailable"}
        return 200, {"ok": True, "channel": request.body.get("channel"), "ts": f"{len(self.received)}.000100"}


@contextmanager
def webhook_receiver(failures: list[int] | None = None) -> Iterator[WebhookReceiver]:
    with _serving(WebhookReceiver(failures=list(failures or []))) as receiver:
        yield receiver


@contextmanager
def fake_slack_api(token: str) -> Iterator[FakeSlackApi]:
    with _serving(FakeSlackApi(token=token)) as receiver:
        yield receiver


@dataclass
class SmtpInbox:
    """Messages an aiosmtpd server on loopback accepted, and the logins it refused."""

    port: int = 0
    messages: list[Message] = field(default_factory=list)
    refused_logins: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook)
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(
    user: str | None = None, password: str | None = None, tls_context: ssl.SSLContext | None = None
) -> Iterator[SmtpInbox]:
    """A real SMTP server on loopback; with `user`, it requires that login (after STARTTLS with `tls_context`,
    else in plain text), with `tls_context` it requires STARTTLS."""
    inbox = SmtpInbox(port=free_loopback_port())

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            (user or "").encode(),
            (password or "").encode(),
        ):
            return AuthResult(success=True)
        inbox.refused_logins += 1
        return AuthResult(success=False, handled=False)

    options: dict[str, Any] = (
        {"authenticator": authenticate, "auth_require_tls": tls_context is not None} if user else {}
    )
    if tls_context is not None:
        options.update(tls_context=tls_context, require_starttls=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port, **options)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
