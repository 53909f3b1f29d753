"""The outbox `ops.alerts` in a DuckDB file: what is added, what is due, what each attempt records."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from anomalens_dagster.core.alert_outbox import (
    Outcome,
    alerts_for,
    claim_due,
    enqueue,
    ensure_alerts_table,
    incidents_to_notify,
    last_arrival,
    next_due,
    outbox_keys,
    record_outcomes,
)
from anomalens_dagster.core.alerts import RetryPolicy
from anomalens_dagster.core.landing import ensure_ops_tables
from anomalens_dagster.core.privacy import FORGOTTEN_TEXT, forget_customer
from anomalens_dagster.core.warehouse import ensure_store_tables
from anomalens_dagster_tests.incident_rows import incident, replace_incidents

NOW = dt.datetime(2026, 3, 2, 12, 0)
SINCE = NOW - dt.timedelta(days=2)
TARGETS = ("webhook", "email")
POLICY = RetryPolicy(initial_seconds=30, max_seconds=3600)


@pytest.fixture
def conn(tmp_path):
    with duckdb.connect(str(tmp_path / "outbox.duckdb")) as connection:
        ensure_alerts_table(connection)
        yield connection


def _add_new_alerts(conn, now=NOW):
    payloads = incidents_to_notify(conn, ("High",), SINCE)
    return enqueue(conn, alerts_for(payloads, TARGETS, outbox_keys(conn)), now)


def test_each_new_high_unsuppressed_recent_incident_gets_one_row_per_target(conn):
    replace_incidents(
        conn,
        [
            incident("high", NOW - dt.timedelta(hours=1)),
            incident("medium", NOW - dt.timedelta(hours=1), severity="Medium"),
            incident("suppressed", NOW - dt.timedelta(hours=1), suppressed=True),
            incident("old", NOW - dt.timedelta(days=5)),
        ],
    )
    assert _add_new_alerts(conn) == 2
    rows = conn.execute(
        "SELECT incident_id, target, idempotency_key, attempts, next_attempt_at FROM ops.alerts"
    ).fetchall()
    assert sorted(rows) == [
        ("high", "email", "high:email", 0, NOW),
        ("high", "webhook", "high:webhook", 0, NOW),
    ]
    (payload,) = conn.execute("SELECT payload FROM ops.alerts WHERE target = 'email'").fetchone()
    assert "jo***@example.com" in json.loads(payload)["summary"]


def test_an_incident_already_in_the_outbox_is_never_added_again_even_delivered_or_rescored(conn):
    replace_incidents(conn, [incident("high", NOW - dt.timedelta(hours=1))])
    _add_new_alerts(conn)
    record_outcomes(conn, [Outcome("high:webhook", "webhook", None)], NOW)
    replace_incidents(conn, [incident("high", NOW - dt.timedelta(minutes=5))])  # re-scored: grew, same id
    assert _add_new_alerts(conn, NOW + dt.timedelta(hours=1)) == 0
    assert conn.execute("SELECT count(*) FROM ops.alerts").fetchone() == (2,)


def test_a_claim_counts_the_attempt_and_moves_the_next_one_a_backoff_ahead_before_anything_is_sent(conn):
    replace_incidents(conn, [incident("high", NOW - dt.timedelta(hours=1))])
    _add_new_alerts(conn)
    claimed = claim_due(conn, NOW, POLICY, TARGETS)
    assert sorted(alert.key for alert in claimed) == ["high:email", "high:webhook"]
    assert all(alert.payload["idempotency_key"] == alert.key for alert in claimed)
    assert conn.execute("SELECT DISTINCT attempts, next_attempt_at FROM ops.alerts").fetchall() == [
        (1, NOW + dt.timedelta(seconds=30))
    ]
    # A run that died while sending leaves both due again only after the backoff.
    assert claim_due(conn, NOW + dt.timedelta(seconds=29), POLICY, TARGETS) == []
    again = claim_due(conn, NOW + dt.timedelta(seconds=30), POLICY, TARGETS)
    assert {alert.attempts for alert in again} == {2}
    assert next_due(conn, TARGETS) == NOW + dt.timedelta(seconds=90)


def test_a_failure_keeps_the_row_due_with_its_error_and_a_delivered_row_is_never_claimed_again(conn):
    replace_incidents(conn, [incident("high", NOW - dt.timedelta(hours=1))])
    _add_new_alerts(conn)
    claim_due(conn, NOW, POLICY, TARGETS)
    record_outcomes(
        conn,
        [Outcome("high:webhook", "webhook", "DeliveryError: HTTP 503"), Outcome("high:email", "email", None)],
        NOW,
    )
    rows = dict(conn.execute("SELECT target, last_error FROM ops.alerts WHERE delivered_at IS NULL").fetchall())
    assert rows == {"webhook": "DeliveryError: HTTP 503"}
    later = NOW + dt.timedelta(days=1)
    assert [alert.key for alert in claim_due(conn, later, POLICY, TARGETS)] == ["high:webhook"]


def test_an_incident_suppressed_after_it_was_queued_is_not_sent(conn):
    replace_incidents(conn, [incident("high", NOW - dt.timedelta(hours=1))])
    _add_new_alerts(conn)
    replace_incidents(conn, [incident("high", NOW - dt.timedelta(hours=1), suppressed=True)])
    assert claim_due(conn, NOW, POLICY, TARGETS) == []


def test_rows_for_a_target_no_longer_configured_wait_unclaimed(conn):
    replace_incidents(conn, [incident("high", NOW - dt.timedelta(hours=1))])
    _add_new_alerts(conn)
    assert [alert.key for alert in claim_due(conn, NOW, POLICY, ("email",))] == ["high:email"]
    assert next_due(conn, ("email",)) == NOW + dt.timedelta(seconds=30)
    assert outbox_keys(conn) == {"high:email", "high:webhook"}


def test_the_last_arrival_is_the_latest_landed_file_with_rows_or_the_newest_simulated_row(conn):
    assert last_arrival(conn) is None
    ensure_store_tables(conn)
    ensure_ops_tables(conn)
    assert last_arrival(conn) is None
    conn.execute(
        "INSERT INTO store.user_activities (id, timestamp, action_type, source) VALUES "
        "(1, TIMESTAMP '2026-03-01 23:59:00', 'login', 'simulator'), "
        "(2, TIMESTAMP '2026-03-05 00:00:00', 'login', 'activities-x.jsonl')"
    )
    assert last_arrival(conn) == dt.datetime(2026, 3, 1, 23, 59)
    conn.execute(
        "INSERT INTO ops.ingested_files (file, sha256, rows_in, rows_loaded, rows_rejected, status, ingested_at) VALUES "
        "('a.jsonl', 'x', 5, 5, 0, 'loaded', TIMESTAMP '2026-03-02 08:00:00'), "
        "('a-again.jsonl', 'x', 5, 0, 0, 'duplicate', TIMESTAMP '2026-03-03 08:00:00')"
    )
    assert last_arrival(conn) == dt.datetime(2026, 3, 2, 8, 0)


def test_forgetting_a_customer_replaces_their_ips_and_masked_email_in_the_outbox_payloads(conn):
    ensure_store_tables(conn)
    conn.execute(
        "INSERT INTO store.customers VALUES (7, 'john.doe@example.com', 'John', 'Doe', TIMESTAMP '2026-01-01')"
    )
    conn.execute(
        "INSERT INTO store.user_activities (id, customer_id, timestamp, action_type, ip_address, source) "
        "VALUES (1, 7, TIMESTAMP '2026-03-02 10:00', 'login', '203.0.113.9', 'simulator')"
    )
    replace_incidents(conn, [incident("high", NOW - dt.timedelta(hours=1))])
    _add_new_alerts(conn)
    forget_customer(conn, 7, NOW)
    payloads = [json.loads(payload) for (payload,) in conn.execute("SELECT payload FROM ops.alerts").fetchall()]
    assert len(payloads) == 2
    for payload in payloads:
        assert payload["ip_addresses"] == [FORGOTTEN_TEXT]
        assert "jo***@example.com" not in payload["summary"] and FORGOTTEN_TEXT in payload["summary"]
