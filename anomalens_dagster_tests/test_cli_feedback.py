"""`anomalens feedback` on a tmp DuckDB store with incidents and anomaly records."""

from __future__ import annotations

import duckdb
import pytest
from click.testing import CliRunner

from anomalens_dagster.cli import main
from anomalens_dagster_tests.feedback_support import (
    ACTIVITY_INCIDENT,
    BURST_IP,
    UNFLAGGED_ORDER,
    write_judgeable_store,
)


@pytest.fixture
def store_db(tmp_path):
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        write_judgeable_store(conn)
    return path


def feedback_rows(path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(
            """SELECT incident_id, entity_type, entity_id, verdict, note, analyst, source, allow_kind, allow_value
               FROM ops.analyst_feedback ORDER BY recorded_at, feedback_id, allow_value"""
        ).fetchall()


def test_feedback_on_an_incident_records_the_verdict_note_and_analyst(store_db):
    result = CliRunner().invoke(
        main, ["feedback", ACTIVITY_INCIDENT, "confirm", "--note", "stuffing", "--by", "ana", "--db", str(store_db)]
    )
    assert result.exit_code == 0, result.output
    assert f"Recorded confirm on incident {ACTIVITY_INCIDENT}" in result.output
    assert feedback_rows(store_db) == [(ACTIVITY_INCIDENT, None, None, "confirm", "stuffing", "ana", "cli", None, None)]


def test_feedback_on_an_unflagged_entity_says_it_recorded_a_miss(store_db):
    result = CliRunner().invoke(
        main, ["feedback", "--entity", f"order:{UNFLAGGED_ORDER}", "confirm", "--by", "ana", "--db", str(store_db)]
    )
    assert result.exit_code == 0, result.output
    assert "recorded as a miss" in result.output
    with duckdb.connect(str(store_db), read_only=True) as conn:
        assert conn.execute("SELECT outcome FROM ops.entity_verdicts").fetchall() == [("missed",)]


def test_feedback_dismiss_with_allow_allows_the_incidents_ip_for_the_given_days(store_db):
    result = CliRunner().invoke(
        main,
        ["feedback", ACTIVITY_INCIDENT, "dismiss", "--allow", "ip", "--days", "30", "--db", str(store_db)],
    )
    assert result.exit_code == 0, result.output
    assert f"Allowed ip {BURST_IP}" in result.output
    with duckdb.connect(str(store_db), read_only=True) as conn:
        ((kind, value, days),) = conn.execute(
            "SELECT allow_kind, allow_value, date_diff('day', allowed_from, allow_until) FROM ops.active_allow_rules"
        ).fetchall()
    assert (kind, value, days) == ("ip", BURST_IP, 30)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["no-such-incident", "confirm"], "unknown incident no-such-incident"),
        (["--entity", "activity:404", "dismiss"], "unknown activity 404"),
        (["--entity", "session:4", "dismiss"], "session:4"),
        ([ACTIVITY_INCIDENT, "perhaps"], "'perhaps'"),
        (["confirm"], "give INCIDENT_ID and a verdict"),
        ([ACTIVITY_INCIDENT, "dismiss", "--allow", "ip"], "--allow and --days go together"),
        ([ACTIVITY_INCIDENT, "confirm", "--allow", "ip", "--days", "3"], "goes with dismiss"),
    ],
)
def test_feedback_refuses_a_bad_target_or_verdict_naming_it_and_writes_nothing(store_db, arguments, message):
    result = CliRunner().invoke(main, ["feedback", *arguments, "--db", str(store_db)])
    assert result.exit_code != 0
    assert message in result.output
    with duckdb.connect(str(store_db), read_only=True) as conn:
        exists = conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ops' AND table_name = 'analyst_feedback'"
        ).fetchone()[0]
    assert not exists or feedback_rows(store_db) == []
