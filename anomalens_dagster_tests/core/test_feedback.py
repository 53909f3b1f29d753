"""Analyst verdicts: validation, append-only history, last verdict wins, misses, allow rules and the views."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from anomalens_dagster.core.feedback import (
    FeedbackError,
    Verdict,
    checked_verdict,
    entity_verdicts,
    parse_entity,
    record_verdicts,
)
from anomalens_dagster.core.privacy import FORGOTTEN_TEXT, forget_customer
from anomalens_dagster.core.warehouse import ensure_store_tables
from anomalens_dagster_tests.feedback_support import (
    ACTIVITY_INCIDENT,
    BURST_IP,
    FLAGGED_ORDER,
    ORDER_INCIDENT,
    UNFLAGGED_ACTIVITY,
    UNFLAGGED_ORDER,
    write_judgeable_store,
)

NOW = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


@pytest.fixture
def conn():
    with duckdb.connect() as connection:
        write_judgeable_store(connection)
        yield connection


def verdicts_by_entity(conn) -> dict[tuple[str, int], tuple[str, str]]:
    frame = entity_verdicts(conn)
    return {(row.entity_type, row.entity_id): (row.verdict, row.outcome) for row in frame.itertuples()}


def test_an_entity_is_parsed_from_type_and_id_and_anything_else_is_named_in_the_error():
    assert parse_entity("activity:12") == ("activity", 12)
    assert parse_entity(" Order:7 ") == ("order", 7)
    for bad in ("session:1", "activity", "order:x"):
        with pytest.raises(FeedbackError, match=bad):
            parse_entity(bad)


def test_a_verdict_is_confirm_or_dismiss_on_an_incident_or_an_entity_not_both():
    assert checked_verdict(Verdict(" Confirm ", incident_id="i1")).verdict == "confirm"
    with pytest.raises(FeedbackError, match="'maybe'"):
        checked_verdict(Verdict("maybe", incident_id="i1"))
    with pytest.raises(FeedbackError, match="not both"):
        checked_verdict(Verdict("confirm", incident_id="i1", entity_type="order", entity_id=1))
    with pytest.raises(FeedbackError, match="needs an incident id"):
        checked_verdict(Verdict("confirm"))


def test_an_allow_rule_needs_a_kind_positive_days_and_a_dismissal():
    with pytest.raises(FeedbackError, match="'subnet'"):
        checked_verdict(Verdict("dismiss", incident_id="i1", allow_kind="subnet", allow_days=3))
    with pytest.raises(FeedbackError, match="positive number of days"):
        checked_verdict(Verdict("dismiss", incident_id="i1", allow_kind="ip", allow_days=0))
    with pytest.raises(FeedbackError, match="goes with dismiss"):
        checked_verdict(Verdict("confirm", incident_id="i1", allow_kind="ip", allow_days=3))


def test_an_unknown_incident_or_entity_is_refused_naming_it_and_nothing_is_written(conn):
    good = Verdict("confirm", incident_id=ACTIVITY_INCIDENT)
    with pytest.raises(FeedbackError, match="unknown incident no-such-incident"):
        record_verdicts(conn, [good, Verdict("confirm", incident_id="no-such-incident")], "cli", NOW)
    with pytest.raises(FeedbackError, match="unknown order 999"):
        record_verdicts(conn, [Verdict("dismiss", entity_type="order", entity_id=999)], "cli", NOW)
    assert conn.execute("SELECT count(*) FROM ops.analyst_feedback").fetchone()[0] == 0


def test_an_incident_verdict_applies_to_each_of_its_rows_and_confirms_them(conn):
    record_verdicts(conn, [Verdict("confirm", incident_id=ACTIVITY_INCIDENT, note="credential stuffing")], "cli", NOW)
    assert verdicts_by_entity(conn) == {
        ("activity", 1): ("confirm", "flagged-confirmed"),
        ("activity", 2): ("confirm", "flagged-confirmed"),
    }
    confirmed = conn.execute("SELECT * FROM ops.confirmed_anomalies ORDER BY entity_id").fetchall()
    assert confirmed == [("activity", 1), ("activity", 2)]


def test_the_last_verdict_wins_and_every_verdict_stays_in_the_history(conn):
    record_verdicts(conn, [Verdict("confirm", incident_id=ORDER_INCIDENT)], "cli", NOW)
    record_verdicts(conn, [Verdict("dismiss", incident_id=ORDER_INCIDENT)], "job", NOW + dt.timedelta(minutes=1))
    assert verdicts_by_entity(conn) == {("order", FLAGGED_ORDER): ("dismiss", "flagged-dismissed")}
    history = conn.execute("SELECT verdict, source FROM ops.analyst_feedback ORDER BY recorded_at").fetchall()
    assert history == [("confirm", "cli"), ("dismiss", "job")]
    # Within one call (a landing file), the later row on a target wins.
    record_verdicts(
        conn,
        [Verdict("dismiss", incident_id=ORDER_INCIDENT), Verdict("confirm", incident_id=ORDER_INCIDENT)],
        "landing:feedback.csv",
        NOW + dt.timedelta(minutes=2),
    )
    assert verdicts_by_entity(conn) == {("order", FLAGGED_ORDER): ("confirm", "flagged-confirmed")}


def test_an_entity_verdict_overrides_its_incidents_verdict_whichever_came_first(conn):
    record_verdicts(conn, [Verdict("dismiss", entity_type="activity", entity_id=2)], "cli", NOW)
    record_verdicts(conn, [Verdict("confirm", incident_id=ACTIVITY_INCIDENT)], "cli", NOW + dt.timedelta(minutes=1))
    assert verdicts_by_entity(conn) == {
        ("activity", 1): ("confirm", "flagged-confirmed"),
        ("activity", 2): ("dismiss", "flagged-dismissed"),
    }
    assert conn.execute("SELECT entity_id FROM ops.confirmed_anomalies").fetchall() == [(1,)]


def test_confirming_an_entity_no_detector_flagged_records_a_miss(conn):
    recorded = record_verdicts(
        conn,
        [
            Verdict("confirm", entity_type="activity", entity_id=UNFLAGGED_ACTIVITY),
            Verdict("dismiss", entity_type="order", entity_id=UNFLAGGED_ORDER),
        ],
        "cli",
        NOW,
    )
    assert [item.is_miss for item in recorded] == [True, False]
    assert verdicts_by_entity(conn) == {
        ("activity", UNFLAGGED_ACTIVITY): ("confirm", "missed"),
        ("order", UNFLAGGED_ORDER): ("dismiss", "unflagged-dismissed"),
    }


def test_an_allow_rule_allows_the_incidents_ips_until_its_days_are_over(conn):
    (recorded,) = record_verdicts(
        conn, [Verdict("dismiss", incident_id=ACTIVITY_INCIDENT, allow_kind="ip", allow_days=7)], "cli", NOW
    )
    assert recorded.allowed_values == (BURST_IP,)
    rules = conn.execute("SELECT * FROM ops.active_allow_rules").fetchall()
    assert rules == [("ip", BURST_IP, NOW, NOW + dt.timedelta(days=7))]
    # A rule recorded 8 days ago for 7 days is over.
    record_verdicts(
        conn,
        [Verdict("dismiss", incident_id=ORDER_INCIDENT, allow_kind="customer", allow_days=7)],
        "cli",
        NOW - dt.timedelta(days=8),
    )
    assert conn.execute("SELECT allow_kind FROM ops.active_allow_rules").fetchall() == [("ip",)]


def test_an_allow_rule_on_something_without_that_value_is_refused(conn):
    with pytest.raises(FeedbackError, match="has no IP address to allow"):
        record_verdicts(
            conn,
            [Verdict("dismiss", entity_type="order", entity_id=FLAGGED_ORDER, allow_kind="ip", allow_days=1)],
            "cli",
            NOW,
        )


def test_the_views_work_before_any_incident_or_anomaly_exists():
    with duckdb.connect() as conn:
        ensure_store_tables(conn)
        conn.execute("INSERT INTO store.orders VALUES (5, 1, '2026-03-01', 1.0, 'pending', 'landed')")
        record_verdicts(conn, [Verdict("confirm", entity_type="order", entity_id=5)], "cli", NOW)
        assert verdicts_by_entity(conn) == {("order", 5): ("confirm", "missed")}
        with pytest.raises(FeedbackError, match="no incidents are stored yet"):
            record_verdicts(conn, [Verdict("confirm", incident_id="i1")], "cli", NOW)


def test_forgetting_a_customer_clears_their_ip_from_allow_rules_and_notes_and_keeps_the_verdicts(conn):
    record_verdicts(
        conn,
        [
            Verdict(
                "dismiss",
                incident_id=ACTIVITY_INCIDENT,
                note=f"crawler at {BURST_IP}",
                allow_kind="ip",
                allow_days=7,
            )
        ],
        "cli",
        NOW,
    )
    changed = forget_customer(conn, 1, NOW)  # customer 1's activities come from BURST_IP

    assert changed["ops.analyst_feedback"] == 1
    rows = conn.execute("SELECT verdict, note, allow_value FROM ops.analyst_feedback").fetchall()
    assert rows == [("dismiss", f"crawler at {FORGOTTEN_TEXT}", FORGOTTEN_TEXT)]
    assert BURST_IP not in {
        value for (value,) in conn.execute("SELECT allow_value FROM ops.active_allow_rules").fetchall()
    }
