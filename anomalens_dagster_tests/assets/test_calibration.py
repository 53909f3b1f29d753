"""threshold_calibration and apply_thresholds_job on a trained, scored store with synthetic verdicts;
the next retraining keeps an applied threshold."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from click.testing import CliRunner

from anomalens_dagster.assets.detections import activity_scores, order_scores
from anomalens_dagster.assets.feedback import threshold_calibration
from anomalens_dagster.assets.models import model_assets
from anomalens_dagster.assets.reports import detector_evaluation
from anomalens_dagster.cli import main
from anomalens_dagster.core.feedback import Verdict, record_verdicts
from anomalens_dagster.jobs import apply_thresholds_job
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile
from anomalens_dagster_tests.assets.conftest import FAST_MODELS, RANGE_TAGS
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS

NOW = dt.datetime.now(dt.UTC).replace(tzinfo=None)
JUDGED_PER_SIDE = 15


@pytest.fixture(scope="module")
def scored_store_file(trained_store_file, tmp_path_factory) -> Path:
    """The trained store with both days scored, built once per module."""
    path = tmp_path_factory.mktemp("scored_store") / "anomalens.duckdb"
    shutil.copyfile(trained_store_file, path)
    resources = {"duckdb": AnomaLensDuckDB(database=str(path)), "settings": DEFAULT_SETTINGS}
    assert dg.materialize([activity_scores, order_scores], resources=resources, tags=RANGE_TAGS).success
    return path


@pytest.fixture
def scored_store(scored_store_file, db_path, duckdb_resource) -> AnomaLensDuckDB:
    shutil.copyfile(scored_store_file, db_path)
    return duckdb_resource


def judge_missed_orders(db_path: Path, per_side: int = JUDGED_PER_SIDE) -> float:
    """Confirm the highest-scoring orders the z-score detector did not flag (misses) and dismiss the
    lowest-scoring ones; return the z-score threshold in force."""
    with duckdb.connect(str(db_path)) as conn:
        unflagged = conn.execute(
            "SELECT order_id, score FROM detections.order_scores WHERE detector = 'zscore' AND NOT is_anomaly "
            "ORDER BY score DESC"
        ).fetchall()
        (threshold,) = conn.execute(
            "SELECT CAST(json_extract(metrics, '$.threshold') AS DOUBLE) FROM ml.model_registry "
            "WHERE detector = 'zscore' AND entity_type = 'order' ORDER BY version DESC LIMIT 1"
        ).fetchone()
        confirmed = [Verdict("confirm", entity_type="order", entity_id=i) for i, _ in unflagged[:per_side]]
        dismissed = [Verdict("dismiss", entity_type="order", entity_id=i) for i, _ in unflagged[-per_side:]]
        record_verdicts(conn, confirmed + dismissed, "cli", NOW)
    return threshold


def calibration_rows(db_path: Path) -> dict[tuple[str, str], dict]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        frame = conn.execute("SELECT * FROM detections.threshold_calibration").df()
    return {(row["entity_type"], row["detector"]): row for row in frame.to_dict("records")}


def test_threshold_calibration_lowers_a_threshold_that_missed_confirmed_rows(scored_store, db_path):
    current = judge_missed_orders(db_path)
    result = dg.materialize([threshold_calibration], resources={"duckdb": scored_store, "settings": DEFAULT_SETTINGS})
    assert result.success
    rows = calibration_rows(db_path)
    zscore = rows[("order", "zscore")]
    assert (zscore["n_verdicts"], zscore["n_confirmed"], zscore["n_missed"]) == (30, 15, 15)
    assert zscore["current_threshold"] == pytest.approx(current)
    assert zscore["proposed_threshold"] < current
    assert zscore["recall_before"] == 0.0 and zscore["f1_after"] > zscore["f1_before"]
    assert zscore["status"] == "proposed"
    # No activity was judged: nothing proposed for activities, and the table says why.
    assert rows[("activity", "zscore")]["status"].startswith("too few verdicts: 0 judged activity rows")
    assert {detector for entity, detector in rows if entity == "order"} >= {"zscore", "ensemble"}
    metadata = result.asset_materializations_for_node("threshold_calibration")[0].metadata
    assert metadata["verdicts"].value == 30
    assert "would change, from 30 judged rows" in metadata["calibration"].value


def test_threshold_calibration_with_too_few_verdicts_proposes_nothing_and_says_so(scored_store, db_path):
    judge_missed_orders(db_path, per_side=5)
    result = dg.materialize([threshold_calibration], resources={"duckdb": scored_store, "settings": DEFAULT_SETTINGS})
    metadata = result.asset_materializations_for_node("threshold_calibration")[0].metadata
    assert "no threshold proposed from 10 judged rows" in metadata["calibration"].value
    assert "too few verdicts: 10 judged order rows, at least 20 needed" in metadata["calibration"].value
    assert all(row["status"].startswith("too few verdicts") for row in calibration_rows(db_path).values())


def test_apply_thresholds_job_registers_a_calibrated_version_and_retraining_keeps_its_threshold(
    scored_store, db_path, tmp_path
):
    judge_missed_orders(db_path)
    settings = SettingsFile(path=str(tmp_path / "settings.yaml"))
    result = apply_thresholds_job.execute_in_process(resources={"duckdb": scored_store, "settings": settings})
    assert result.success
    with duckdb.connect(str(db_path), read_only=True) as conn:
        versions = conn.execute(
            "SELECT version, metrics FROM ml.model_registry WHERE detector = 'zscore' AND entity_type = 'order' "
            "ORDER BY version"
        ).fetchall()
    (_, first_metrics), (latest_version, latest_metrics) = versions[0], versions[-1]
    first, latest = json.loads(first_metrics), json.loads(latest_metrics)
    assert latest_version == versions[0][0] + 1
    assert latest["threshold_source"] == "calibration"
    assert latest["calibration_verdicts"] == 30
    assert latest["threshold"] < first["threshold"] == latest["fitted_threshold"]
    written = yaml.safe_load(Path(settings.path).read_text())["detection"]["thresholds"]
    assert written["order"]["zscore"] == latest["threshold"]
    assert "activity" not in written  # nothing judged there, nothing changed
    model_events = [event.asset_key.to_user_string() for event in result.get_asset_materialization_events()]
    assert "order_zscore" in model_events

    (order_zscore,) = [model for model in model_assets if model.key.to_user_string() == "order_zscore"]
    retrained = dg.materialize(
        [order_zscore],
        resources={"duckdb": scored_store, "settings": settings},
        run_config={"ops": {"order_zscore": {"config": {"training": FAST_MODELS["training"]}}}},
    )
    assert retrained.success
    with duckdb.connect(str(db_path), read_only=True) as conn:
        (metrics,) = conn.execute(
            "SELECT metrics FROM ml.model_registry WHERE detector = 'zscore' AND entity_type = 'order' "
            "ORDER BY version DESC LIMIT 1"
        ).fetchone()
    kept = json.loads(metrics)
    assert kept["threshold"] == written["order"]["zscore"]
    assert kept["threshold_source"] == "settings"


def test_anomalens_thresholds_shows_the_proposals_and_apply_writes_a_registry_version_and_the_settings(
    scored_store, db_path, tmp_path, monkeypatch
):
    judge_missed_orders(db_path)
    settings_path = tmp_path / "settings.yaml"
    settings_path.write_text(yaml.safe_dump({"training": {"training_days": 14}}))
    monkeypatch.setenv("ANOMALENS_SETTINGS", str(settings_path))

    shown = CliRunner().invoke(main, ["thresholds", "--db", str(db_path)])
    assert shown.exit_code == 0, shown.output
    assert "would change, from 30 judged rows" in shown.output
    assert "anomalens thresholds --apply" in shown.output
    assert yaml.safe_load(settings_path.read_text()) == {"training": {"training_days": 14}}  # nothing applied yet

    applied = CliRunner().invoke(main, ["thresholds", "--apply", "--db", str(db_path)])
    assert applied.exit_code == 0, applied.output
    assert "Registered order zscore v2" in applied.output
    settings = yaml.safe_load(settings_path.read_text())
    assert settings["training"] == {"training_days": 14}  # the rest of the file is kept
    with duckdb.connect(str(db_path), read_only=True) as conn:
        (metrics,) = conn.execute(
            "SELECT metrics FROM ml.model_registry WHERE detector = 'zscore' AND entity_type = 'order' AND version = 2"
        ).fetchone()
    assert json.loads(metrics)["threshold_source"] == "calibration"
    assert settings["detection"]["thresholds"]["order"]["zscore"] == json.loads(metrics)["threshold"]


def evaluate(store) -> tuple[dict, list[dict]]:
    result = dg.materialize([detector_evaluation], resources={"duckdb": store})
    metadata = {
        key: value.value
        for key, value in result.asset_materializations_for_node("detector_evaluation")[0].metadata.items()
    }
    with duckdb.connect(str(store.database), read_only=True) as conn:
        rows = conn.execute(
            "SELECT * FROM detections.detector_evaluation WHERE anomaly_kind = 'all' AND split = 'all' ORDER BY entity_type, detector"
        ).df()
    return metadata, rows.to_dict("records")


def test_detector_evaluation_uses_the_verdicts_on_a_store_without_simulation_labels_and_says_so(scored_store, db_path):
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("DELETE FROM store.simulation_labels")
    judge_missed_orders(db_path)
    metadata, rows = evaluate(scored_store)
    assert (metadata["labels_used"], metadata["label_count"]) == ("analyst verdicts", 30)
    assert {row["labels"] for row in rows} == {"analyst verdicts"}
    assert {row["entity_type"] for row in rows} == {"order"}  # only orders were judged
    (zscore,) = [row for row in rows if row["detector"] == "zscore"]
    # The confirmed orders are the z-score detector's misses: judged rows only, recall 0.
    assert (zscore["n_rows"], zscore["n_positive"], zscore["n_normal"]) == (30, 15, 15)
    assert (zscore["true_positives"], zscore["false_negatives"], zscore["recall"]) == (0, 15, 0.0)
    assert metadata["order/zscore/recall"] == 0.0


def test_detector_evaluation_prefers_the_simulation_labels_where_the_days_have_them(scored_store, db_path):
    judge_missed_orders(db_path)
    metadata, rows = evaluate(scored_store)
    assert metadata["labels_used"] == "simulation labels"
    assert metadata["label_count"] > 30
    assert {row["entity_type"] for row in rows} == {"activity", "order"}
