"""Feedback files in the landing zone: each row a verdict appended to ops.analyst_feedback, or rejected with
its reason, by a real ingest run; every row accounted for."""

from __future__ import annotations

import os
import textwrap

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.assets.landing import check_ingest_conserves_rows, ingested_files
from anomalens_dagster.core.landing import STATUS_DUPLICATE, STATUS_PARTIAL, landing_file_kind
from anomalens_dagster.resources import LandingZone
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS
from anomalens_dagster_tests.feedback_support import (
    ACTIVITY_INCIDENT,
    BURST_IP,
    UNFLAGGED_ORDER,
    write_judgeable_store,
)

FEEDBACK_FILE = "feedback-2026-03-02.csv"
FEEDBACK_CSV = textwrap.dedent(
    f"""\
    incident_id,entity_type,entity_id,verdict,note,by,allow,days
    {ACTIVITY_INCIDENT},,,confirm,stuffing,ana,,
    ,order,{UNFLAGGED_ORDER},Confirm,refund fraud,bo,,
    ,order,999,dismiss,,ana,,
    {ACTIVITY_INCIDENT},,,maybe,,ana,,
    ,activity,abc,dismiss,,ana,,
    {ACTIVITY_INCIDENT},,,dismiss,our crawler,ana,ip,5
    """
)


@pytest.fixture
def judgeable_store(db_path, duckdb_resource):
    with duckdb.connect(str(db_path)) as conn:
        write_judgeable_store(conn)
    return duckdb_resource


def ingest(store, landing_dir) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ingested_files, check_ingest_conserves_rows],
        resources={"duckdb": store, "landing": LandingZone(directory=str(landing_dir)), "settings": DEFAULT_SETTINGS},
    )


def test_a_file_named_feedback_is_a_landing_file_of_verdicts():
    assert landing_file_kind("feedback-2026-03-02.csv") == "feedback"
    assert landing_file_kind("Feedback_batch.jsonl") == "feedback"


def test_a_feedback_file_appends_its_good_verdicts_and_rejects_each_bad_row_with_its_reason(
    judgeable_store, db_path, landing_dir
):
    (landing_dir / FEEDBACK_FILE).write_text(FEEDBACK_CSV)
    result = ingest(judgeable_store, landing_dir)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    with duckdb.connect(str(db_path), read_only=True) as conn:
        verdicts = conn.execute(
            """SELECT incident_id, entity_type, entity_id, verdict, note, analyst, source, allow_kind, allow_value
               FROM ops.analyst_feedback ORDER BY feedback_id"""
        ).fetchall()
        rejections = conn.execute(
            'SELECT line, "column", value, reason FROM ops.ingest_rejections ORDER BY line'
        ).fetchall()
        logged = conn.execute(
            "SELECT kind, rows_in, rows_loaded, rows_rejected, status FROM ops.ingested_files"
        ).fetchall()
        effective = conn.execute(
            "SELECT entity_type, entity_id, outcome FROM ops.entity_verdicts ORDER BY 1, 2"
        ).fetchall()
    source = f"landing:{FEEDBACK_FILE}"
    assert verdicts == [
        (ACTIVITY_INCIDENT, None, None, "confirm", "stuffing", "ana", source, None, None),
        (None, "order", UNFLAGGED_ORDER, "confirm", "refund fraud", "bo", source, None, None),
        (ACTIVITY_INCIDENT, None, None, "dismiss", "our crawler", "ana", source, "ip", BURST_IP),
    ]
    assert [(line, column) for line, column, _, _ in rejections] == [(4, "entity_id"), (5, "verdict"), (6, "entity_id")]
    assert "unknown order 999" in rejections[0][3]
    assert "'maybe'" in rejections[1][3]
    assert "entity_id is not an integer" in rejections[2][3]
    assert logged == [("feedback", 6, 3, 3, STATUS_PARTIAL)]
    # The file's last verdict on the incident (dismiss) wins over its first (confirm).
    assert effective == [
        ("activity", 1, "flagged-dismissed"),
        ("activity", 2, "flagged-dismissed"),
        ("order", UNFLAGGED_ORDER, "missed"),
    ]


def test_the_same_feedback_file_delivered_again_appends_nothing(judgeable_store, db_path, landing_dir):
    path = landing_dir / FEEDBACK_FILE
    path.write_text(FEEDBACK_CSV)
    assert ingest(judgeable_store, landing_dir).success
    os.utime(path)  # touched: the sensor sees a change, the bytes are the same
    result = ingest(judgeable_store, landing_dir)
    assert result.success
    with duckdb.connect(str(db_path), read_only=True) as conn:
        ((rows,),) = conn.execute("SELECT count(*) FROM ops.analyst_feedback").fetchall()
        second = conn.execute(
            "SELECT rows_loaded, rows_already_loaded, rows_rejected, status FROM ops.ingested_files "
            "ORDER BY ingested_at DESC LIMIT 1"
        ).fetchall()
    assert rows == 3
    assert second == [(0, 3, 3, STATUS_PARTIAL)]
    assert STATUS_DUPLICATE != second[0][3]  # rejected rows keep it partial, as for store files


def test_a_verdict_may_judge_a_row_delivered_with_it_but_not_allow_what_is_not_stored_yet(
    judgeable_store, db_path, landing_dir
):
    (landing_dir / "user_activities-new.csv").write_text(
        "id,timestamp,action_type,ip_address\n77,2026-03-01T10:05:00,failed_login,10.0.0.9\n"
    )
    (landing_dir / "feedback-new.csv").write_text(
        "entity_type,entity_id,verdict,by,allow,days\nactivity,77,confirm,ana,,\nactivity,77,dismiss,ana,ip,3\n"
    )
    assert ingest(judgeable_store, landing_dir).success
    with duckdb.connect(str(db_path), read_only=True) as conn:
        judged = conn.execute("SELECT entity_id, verdict, outcome FROM ops.entity_verdicts").fetchall()
        (reason,) = conn.execute("SELECT reason FROM ops.ingest_rejections WHERE file = 'feedback-new.csv'").fetchone()
    assert judged == [(77, "confirm", "missed")]
    assert "arrives in this delivery" in reason
