"""`record_feedback_job` run in process against a tmp DuckDB store with incidents."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.jobs import record_feedback_job
from anomalens_dagster_tests.feedback_support import ACTIVITY_INCIDENT, BURST_IP, write_judgeable_store


@pytest.fixture
def judgeable_store(db_path, duckdb_resource):
    with duckdb.connect(str(db_path)) as conn:
        write_judgeable_store(conn)
    return duckdb_resource


def run_record_feedback(resource, config: dict, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return record_feedback_job.execute_in_process(
        run_config={"ops": {"record_feedback": {"config": config}}},
        resources={"duckdb": resource},
        raise_on_error=raise_on_error,
    )


def test_record_feedback_job_appends_the_verdict_from_its_config(judgeable_store, db_path):
    run_record_feedback(
        judgeable_store,
        {
            "verdict": "dismiss",
            "incident_id": ACTIVITY_INCIDENT,
            "note": "our crawler",
            "by": "ana",
            "allow": "ip",
            "days": 7,
        },
    )
    run_record_feedback(judgeable_store, {"verdict": "confirm", "entity": "activity:2", "by": "bo"})
    with duckdb.connect(str(db_path), read_only=True) as conn:
        rows = conn.execute(
            """SELECT incident_id, entity_type, entity_id, verdict, note, analyst, source, allow_kind, allow_value
               FROM ops.analyst_feedback ORDER BY recorded_at"""
        ).fetchall()
        effective = conn.execute("SELECT entity_id, verdict FROM ops.entity_verdicts ORDER BY entity_id").fetchall()
    assert rows == [
        (ACTIVITY_INCIDENT, None, None, "dismiss", "our crawler", "ana", "job", "ip", BURST_IP),
        (None, "activity", 2, "confirm", None, "bo", "job", None, None),
    ]
    assert effective == [(1, "dismiss"), (2, "confirm")]


def test_record_feedback_job_fails_naming_an_unknown_incident(judgeable_store):
    result = run_record_feedback(judgeable_store, {"verdict": "confirm", "incident_id": "nope"}, raise_on_error=False)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    assert "unknown incident nope" in str(failure.event_specific_data.error.message)
