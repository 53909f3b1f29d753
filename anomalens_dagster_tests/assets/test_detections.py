"""Detection scores and the evaluation report, through Dagster, after real training."""

import logging

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.assets.detections import activity_scores, anomalies, consolidated_anomalies, order_scores
from anomalens_dagster.assets.reports import detector_evaluation
from anomalens_dagster_tests.assets.conftest import DAYS, RANGE_TAGS
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS

DETECTORS = {"zscore", "isolation_forest", "dbscan", "autoencoder", "ensemble"}


def scores_of(db_path, table: str) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM detections.{table} ORDER BY ALL").fetchall()


@pytest.mark.slow
def test_every_row_is_scored_by_every_detector_and_rescoring_a_day_replaces_it(trained_store, db_path):
    assets = [activity_scores, order_scores]
    result = dg.materialize(assets, resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS}, tags=RANGE_TAGS)
    assert result.success
    before = {table: scores_of(db_path, table) for table in ("activity_scores", "order_scores")}

    dg.materialize(assets, resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS}, partition_key=DAYS[1])

    with duckdb.connect(str(db_path), read_only=True) as conn:
        activities = conn.execute("SELECT count(*) FROM store.user_activities").fetchone()[0]
        detectors = {d for (d,) in conn.execute("SELECT DISTINCT detector FROM detections.activity_scores").fetchall()}
        per_row = conn.execute(
            "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM detections.activity_scores GROUP BY activity_id)"
        ).fetchone()
    assert detectors == DETECTORS
    assert per_row == (5, 5)
    assert len(before["activity_scores"]) == 5 * activities
    assert {table: scores_of(db_path, table) for table in before} == before
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["anomalies/ensemble"].value >= 0 and "anomaly_rate/dbscan" in metadata


@pytest.mark.slow
def test_the_evaluation_reports_every_detector_and_plots_headline_numbers(trained_store, db_path):
    dg.materialize(
        [activity_scores, order_scores],
        resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS},
        tags=RANGE_TAGS,
    )

    result = dg.materialize([detector_evaluation], resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS})

    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert 0.0 <= metadata["activity/ensemble/recall"].value <= 1.0
    assert "order/ensemble/f1" in metadata
    with duckdb.connect(str(db_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT entity_type, detector FROM detections.detector_evaluation WHERE anomaly_kind = 'all' AND split = 'all'"
        ).fetchall()
        splits = conn.execute("SELECT DISTINCT split FROM detections.detector_evaluation ORDER BY split").fetchall()
    assert sorted(rows) == sorted((entity, detector) for entity in ("activity", "order") for detector in DETECTORS)
    # The models were trained on the very days they scored: every row is in-sample, none out of time.
    assert splits == [("all",), ("in_sample",)]
    assert "in_sample/activity/ensemble/recall" in metadata and "out_of_time/activity/ensemble/recall" not in metadata


@pytest.mark.slow
def test_anomaly_records_are_replaced_on_rerun_and_consolidate_with_session_context(trained_store, db_path):
    dg.materialize(
        [activity_scores, order_scores],
        resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS},
        tags=RANGE_TAGS,
    )
    dg.materialize([anomalies], resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS}, tags=RANGE_TAGS)
    ids_before = {row[0] for row in scores_of(db_path, "anomalies")}

    dg.materialize(
        [anomalies], resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS}, partition_key=DAYS[0]
    )
    result = dg.materialize([consolidated_anomalies], resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS})

    records = scores_of(db_path, "anomalies")
    assert records and {row[0] for row in records} == ids_before
    assert len(records) == len(ids_before)  # a rerun replaced the day's records, it added none
    with duckdb.connect(str(db_path), read_only=True) as conn:
        flagged = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT entity_type, entity_id FROM detections.anomalies)"
        ).fetchone()[0]
        consolidated = conn.execute(
            "SELECT entity_type, session_actions, overall_severity FROM detections.consolidated_anomalies"
        ).fetchall()
        descriptions = conn.execute("SELECT count(*) FROM detections.anomalies WHERE description = ''").fetchone()[0]
    assert len(consolidated) == flagged
    assert all(actions.startswith("[{") for kind, actions, _ in consolidated if kind == "activity")
    assert {severity for _, _, severity in consolidated} <= {"Low", "Medium", "High"}
    assert descriptions == 0
    assert result.get_asset_materialization_events()[0].materialization.metadata["dagster/row_count"].value == flagged


@pytest.mark.slow
def test_a_day_whose_features_miss_a_detector_column_is_not_scored_and_the_error_names_the_rebuild(
    trained_store, db_path
):
    # As after a migration added the feature and only the first day was rebuilt.
    with duckdb.connect(str(db_path)) as conn:
        conn.execute(
            "UPDATE features.order_features SET amount_to_items_log_ratio = NULL WHERE created_at >= $day",
            {"day": DAYS[1]},
        )

    result = dg.materialize(
        [order_scores],
        resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS},
        tags=RANGE_TAGS,
        raise_on_error=False,
    )

    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    # The two small days are read and written as one group of days, which the missing feature fails as a whole.
    rebuild = f"run `anomalens rebuild order_features --from {DAYS[0]} --to {DAYS[1]}`"
    assert rebuild in str(failure.step_failure_data.error)
    with duckdb.connect(str(db_path), read_only=True) as conn:  # the group's transaction never began: nothing written
        assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'order_scores'").fetchone() == (0,)


def test_scoring_a_day_without_features_succeeds_and_says_so_in_the_metadata_and_the_log(trained_store):
    instance = dg.DagsterInstance.ephemeral()
    empty_day = "2026-03-03"  # the store holds 2026-03-01 and 03-02

    result = dg.materialize(
        [activity_scores, order_scores, anomalies],
        resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS},
        partition_key=empty_day,
        instance=instance,
    )

    assert result.success
    events = result.get_asset_materialization_events()
    assert len(events) == 3
    for event in events:
        assert event.materialization.metadata["empty_days"].value == [empty_day]
        assert event.materialization.metadata["dagster/row_count"].value == 0
    logs = instance.all_logs(result.run_id)
    warnings = sorted(entry.user_message for entry in logs if entry.level == logging.WARNING)
    assert [message.split(":")[0] for message in warnings] == [
        f"no rows in detections.activity_scores or detections.order_scores for {empty_day}",
        f"no rows in features.activity_features for {empty_day}",
        f"no rows in features.order_features for {empty_day}",
    ]
