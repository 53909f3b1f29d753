"""Report assets and the clear-anomalies job, through Dagster, after real training and scoring."""

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.assets.detections import activity_scores, anomalies, consolidated_anomalies, order_scores
from anomalens_dagster.assets.reports import (
    activity_timeline,
    anomaly_report,
    anomaly_summary,
    detector_evaluation,
    report_path,
    store_summary,
)
from anomalens_dagster.core.evaluation import NOT_EVALUATED
from anomalens_dagster.jobs import clear_anomalies_job
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster_tests.assets.conftest import DAYS, RANGE_TAGS
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS


@pytest.fixture(scope="module")
def detected_store_file(trained_store_file, tmp_path_factory) -> Path:
    """The trained store scored, with its anomaly records, consolidation and evaluation, built once."""
    path = tmp_path_factory.mktemp("detected_store") / "anomalens.duckdb"
    shutil.copyfile(trained_store_file, path)
    resources = {"duckdb": AnomaLensDuckDB(database=str(path)), "settings": DEFAULT_SETTINGS}
    dg.materialize([activity_scores, order_scores, anomalies], resources=resources, tags=RANGE_TAGS)
    dg.materialize([consolidated_anomalies, detector_evaluation], resources=resources)
    return path


@pytest.fixture
def detected_store(detected_store_file, duckdb_resource, db_path):
    shutil.copyfile(detected_store_file, db_path)
    return duckdb_resource


def query(db_path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def scalar(db_path, sql: str):
    return query(db_path, sql)[0][0]


@pytest.mark.slow
def test_reports_add_up_to_the_stored_tables_and_the_html_report_is_self_contained(detected_store, db_path):
    result = dg.materialize(
        [store_summary, activity_timeline, anomaly_summary, anomaly_report], resources={"duckdb": detected_store}
    )

    summary = dict(query(db_path, "SELECT table_name, rows FROM detections.store_summary"))
    for table in ("categories", "products", "customers", "orders", "order_items", "user_activities"):
        assert summary[table] == query(db_path, f"SELECT count(*) FROM store.{table}")[0][0] > 0
    assert query(db_path, "SELECT sum(landed_rows) FROM detections.store_summary")[0][0] == 0

    ((actions, flagged),) = query(db_path, "SELECT sum(actions), sum(flagged) FROM detections.activity_timeline")
    assert actions == summary["user_activities"]
    ensemble_flags = "SELECT count(*) FROM detections.activity_scores WHERE detector = 'ensemble' AND is_anomaly"
    assert flagged == scalar(db_path, ensemble_flags)
    assert scalar(db_path, "SELECT sum(anomalies) FROM detections.anomaly_summary") == scalar(
        db_path, "SELECT count(*) FROM detections.anomalies"
    )

    html = report_path(detected_store.database).read_text()
    assert html.startswith("<!DOCTYPE html>") and "Detector agreement" in html
    assert 'src="http' not in html and "<script src=" not in html
    report_event = result.asset_materializations_for_node("anomaly_report")[0]
    assert report_event.metadata["path"].value == str(report_path(detected_store.database))


@pytest.mark.slow
def test_clearing_a_day_deletes_only_its_anomalies_and_clearing_all_empties_both_tables(detected_store, db_path):
    def per_day() -> dict:
        return dict(
            query(db_path, "SELECT event_timestamp::DATE::VARCHAR, count(*) FROM detections.anomalies GROUP BY 1")
        )

    before = per_day()
    assert set(before) == set(DAYS)

    result = clear_anomalies_job.execute_in_process(
        resources={"duckdb": detected_store, "settings": DEFAULT_SETTINGS},
        run_config={"ops": {"clear_anomalies": {"config": {"day": DAYS[0]}}}},
    )

    assert per_day() == {DAYS[1]: before[DAYS[1]]}
    consolidated_days = {
        day
        for (day,) in query(
            db_path, "SELECT DISTINCT event_timestamp::DATE::VARCHAR FROM detections.consolidated_anomalies"
        )
    }
    assert consolidated_days == {DAYS[1]}
    cleared = [event for event in result.get_asset_materialization_events() if event.asset_key.path == ["anomalies"]]
    assert cleared[0].partition == DAYS[0]
    assert cleared[0].materialization.metadata["deleted_records"].value == before[DAYS[0]]
    # The incidents are regrouped from the records left: none starts on the cleared day.
    assert {
        day for (day,) in query(db_path, "SELECT DISTINCT first_seen::DATE::VARCHAR FROM detections.incidents")
    } == {DAYS[1]}

    clear_anomalies_job.execute_in_process(resources={"duckdb": detected_store, "settings": DEFAULT_SETTINGS})

    assert per_day() == {}
    assert query(db_path, "SELECT count(*) FROM detections.consolidated_anomalies")[0][0] == 0
    assert query(db_path, "SELECT count(*) FROM detections.incidents")[0][0] == 0


def test_clearing_a_malformed_day_fails_with_the_expected_format(duckdb_resource):
    with pytest.raises(dg.Failure, match="not a date like 2026-11-20"):
        clear_anomalies_job.execute_in_process(
            resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS},
            run_config={"ops": {"clear_anomalies": {"config": {"day": "yesterday"}}}},
        )


def test_an_unlabelled_store_is_not_evaluated_its_metrics_are_null_and_its_metadata_says_so(detected_store, db_path):
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("DELETE FROM store.simulation_labels")  # a real store's days: no labels

    result = dg.materialize([detector_evaluation], resources={"duckdb": detected_store})

    metadata = result.asset_materializations_for_node("detector_evaluation")[0].metadata
    assert metadata["evaluation"].value == NOT_EVALUATED
    assert NOT_EVALUATED in metadata["preview"].value
    assert not [key for key in metadata if key.endswith("/precision")]
    metrics = "precision, recall, f1, pr_auc, episode_recall, normal_flag_rate"
    assert scalar(db_path, "SELECT count(*) FROM detections.detector_evaluation") > 0
    assert (
        scalar(db_path, f"SELECT count(*) FROM detections.detector_evaluation WHERE coalesce({metrics}) IS NOT NULL")
        == 0
    )
