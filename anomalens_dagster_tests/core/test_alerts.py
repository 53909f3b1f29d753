"""Alert payloads, idempotency keys, the stale-store rule and the retry backoff (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from anomalens_dagster.core.alerts import (
    RetryPolicy,
    idempotency_key,
    incident_payload,
    message_id,
    redact,
    severities_at_least,
    stale_since,
    stale_store_incident_id,
    stale_store_payload,
    text,
    with_key,
)

T0 = dt.datetime(2026, 3, 2, 12, 0)

INCIDENT = {
    "incident_id": "activity-123",
    "entity_type": "activity",
    "first_seen": dt.datetime(2026, 3, 2, 10, 0),
    "last_seen": dt.datetime(2026, 3, 2, 10, 1),
    "row_count": 14,
    "customer_ids": [7],
    "ip_addresses": ["203.0.113.9"],
    "session_ids": ["s-1"],
    "order_ids": [],
    "max_severity": "High",
    "ensemble_score": 3.25,
    "top_features": ["actions_in_last_5min_ip"],
    "suppressed": False,
    "summary": "14 failed logins for john.doe@example.com from 1 IP within 40 s",
}


def test_the_backoff_waits_30_s_then_doubles_and_never_exceeds_an_hour():
    policy = RetryPolicy(initial_seconds=30, max_seconds=3600)
    waits = [policy.delay(attempt).total_seconds() for attempt in range(1, 10)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert policy.delay(10_000) == dt.timedelta(hours=1)


def test_a_retry_policy_whose_first_wait_exceeds_its_longest_is_refused():
    with pytest.raises(ValueError, match="initial"):
        RetryPolicy(initial_seconds=60, max_seconds=30)


def test_the_idempotency_key_names_incident_and_target_and_the_message_id_follows_it():
    key = idempotency_key("activity-123", "email")
    assert key == "activity-123:email"
    assert message_id(key) == message_id("activity-123:email")
    assert message_id(key) != message_id(idempotency_key("activity-123", "webhook"))
    assert message_id(key).startswith("<") and message_id(key).endswith("@alerts.anomalens>")


def test_an_incident_payload_masks_email_addresses_and_keeps_what_an_analyst_needs():
    payload = incident_payload(INCIDENT)
    assert "john.doe@example.com" not in str(payload)
    assert payload["summary"] == "14 failed logins for jo***@example.com from 1 IP within 40 s"
    assert payload["incident_id"] == "activity-123"
    assert payload["severity"] == "High"
    assert payload["first_seen"] == "2026-03-02T10:00:00"
    assert payload["customer_ids"] == [7] and payload["ip_addresses"] == ["203.0.113.9"]


def test_the_text_of_an_alert_ends_with_its_idempotency_key():
    body = text(with_key(incident_payload(INCIDENT), "activity-123:slack"))
    assert body.splitlines()[-1] == "idempotency key: activity-123:slack"
    assert "jo***@example.com" in body


def test_a_store_is_stale_once_nothing_arrived_for_the_set_time_and_never_when_it_never_had_data():
    after = dt.timedelta(hours=26)
    assert stale_since(T0, T0 + dt.timedelta(hours=25), after) is None
    assert stale_since(T0, T0 + dt.timedelta(hours=27), after) == T0 + after
    assert stale_since(None, T0, after) is None


def test_each_quiet_period_has_its_own_stale_store_alert():
    later = T0 + dt.timedelta(days=3)
    assert stale_store_incident_id(T0) != stale_store_incident_id(later)
    payload = stale_store_payload(T0, T0 + dt.timedelta(hours=30), dt.timedelta(hours=26))
    assert payload["incident_id"] == stale_store_incident_id(T0)
    assert "30.0 h" in payload["summary"]


def test_severities_at_least_medium_are_medium_and_high():
    assert severities_at_least("Medium") == ("Medium", "High")
    with pytest.raises(ValueError, match="unknown severity"):
        severities_at_least("Critical")


def test_redact_replaces_every_secret_even_one_inside_another():
    assert redact("token s3cret-long and s3cret", ["s3cret", "s3cret-long", None, ""]) == "token *** and ***"
