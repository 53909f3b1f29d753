"""Each sender against a real server on loopback: a webhook, a fake of Slack's Web API, an SMTP server."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from slack_sdk import WebClient

from anomalens_dagster.core.alert_delivery import DeliveryError, EmailSender, SlackSender, WebhookSender
from anomalens_dagster.core.alerts import message_id
from anomalens_dagster_tests.alert_receivers import fake_slack_api, smtp_server, webhook_receiver

PAYLOAD = {
    "kind": "incident",
    "incident_id": "activity-123",
    "entity_type": "activity",
    "severity": "High",
    "summary": "14 failed logins for jo***@example.com from 1 IP within 40 s",
    "idempotency_key": "activity-123:x",
}
TOKEN = "xoxb-test-secret-token"
PASSWORD = "smtp-secret-password"


def test_the_webhook_receives_the_payload_as_json_with_its_idempotency_key_and_token_header():
    with webhook_receiver() as receiver:
        WebhookSender(receiver.url + "/hook", 5, {"Authorization": f"Bearer {TOKEN}"}).send(PAYLOAD)
    (request,) = receiver.received
    assert request.path == "/hook"
    assert request.body == PAYLOAD
    assert request.headers["idempotency-key"] == "activity-123:x"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_a_webhook_answering_an_error_raises_naming_the_status_but_not_the_token():
    with webhook_receiver(failures=[503]) as receiver:
        with pytest.raises(DeliveryError, match="HTTP 503") as raised:
            WebhookSender(receiver.url, 5, {"Authorization": f"Bearer {TOKEN}"}).send(PAYLOAD)
    assert TOKEN not in str(raised.value)


def test_an_unreachable_webhook_raises():
    with webhook_receiver() as receiver:
        url = receiver.url
    with pytest.raises(DeliveryError, match="unreachable"):
        WebhookSender(url, 2).send(PAYLOAD)


def test_slack_gets_the_alert_text_and_its_key_in_the_message_metadata_through_a_redirected_api_url():
    with fake_slack_api(TOKEN) as slack:
        SlackSender(WebClient(TOKEN, base_url=slack.api_url), "#fraud").send(PAYLOAD)
    (message,) = slack.messages()
    assert message["channel"] == "#fraud"
    assert "activity-123" in message["text"] and "jo***@example.com" in message["text"]
    assert message["metadata"]["event_payload"]["idempotency_key"] == "activity-123:x"


def test_slack_refusing_the_token_raises_with_slacks_reason_and_not_the_token():
    with fake_slack_api(TOKEN) as slack:
        with pytest.raises(DeliveryError, match="invalid_auth") as raised:
            SlackSender(WebClient("xoxb-wrong-token", base_url=slack.api_url), "#fraud").send(PAYLOAD)
    assert "xoxb-wrong-token" not in str(raised.value)


def _sender(port: int, password: str = PASSWORD, starttls: bool = False) -> EmailSender:
    return EmailSender(
        host="127.0.0.1",
        port=port,
        sender="anomalens@shop.example",
        recipients=("fraud@shop.example", "oncall@shop.example"),
        starttls=starttls,
        timeout_seconds=5,
        user="alerts",
        password=password,
    )


def test_the_email_carries_a_message_id_derived_from_the_idempotency_key_after_logging_in():
    with smtp_server(user="alerts", password=PASSWORD) as inbox:
        _sender(inbox.port).send(PAYLOAD)
        _sender(inbox.port).send(PAYLOAD)
    first, resent = inbox.messages
    assert first["Message-ID"] == resent["Message-ID"] == message_id("activity-123:x")
    assert first["X-Idempotency-Key"] == "activity-123:x"
    assert first["To"] == "fraud@shop.example, oncall@shop.example"
    assert "jo***@example.com" in first.get_payload()


def test_a_refused_smtp_login_raises_without_the_password():
    with smtp_server(user="alerts", password=PASSWORD) as inbox:
        with pytest.raises(DeliveryError, match="refused the login") as raised:
            _sender(inbox.port, password="wrong-secret").send(PAYLOAD)
    assert inbox.refused_logins >= 1 and inbox.messages == []  # smtplib tries each mechanism offered
    assert "wrong-secret" not in str(raised.value)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_the_email_is_sent_after_starttls_to_a_server_whose_certificate_is_trusted(tmp_path, monkeypatch):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the sender trusts the system's store, here this certificate
    with smtp_server(user="alerts", password=PASSWORD, tls_context=context) as inbox:
        _sender(inbox.port, starttls=True).send(PAYLOAD)
    assert len(inbox.messages) == 1
