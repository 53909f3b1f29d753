"""Model assets: all eight detectors trained through Dagster and versioned in ml.model_registry."""

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.assets.models import model_assets
from anomalens_dagster.core.registry import load_model
from anomalens_dagster_tests.assets.conftest import train_all
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS


@pytest.mark.slow
def test_training_registers_eight_models_that_pass_their_checks_and_version_up_on_retraining(
    store_with_features, db_path
):
    first = train_all(store_with_features)
    second = train_all(store_with_features)

    assert first.success and second.success
    evaluations = second.get_asset_check_evaluations()
    assert len(evaluations) == 8
    assert all(e.passed for e in evaluations), [(e.asset_key, e.metadata) for e in evaluations if not e.passed]
    with duckdb.connect(str(db_path), read_only=True) as conn:
        versions = conn.execute(
            "SELECT entity_type, detector, max(version), count(*) FROM ml.model_registry GROUP BY ALL"
        ).fetchall()
        model, record = load_model(conn, "autoencoder", "activity")
    assert sorted((entity, detector) for entity, detector, _, _ in versions) == sorted(
        (entity, detector)
        for entity in ("activity", "order")
        for detector in ("zscore", "isolation_forest", "dbscan", "autoencoder")
    )
    assert all(latest == 2 and count == 2 for _, _, latest, count in versions)
    assert record.n_rows == 2_000
    assert record.training_start.isoformat() == "2026-02-01T00:00:00"  # 30 days ending 2026-03-02


def test_model_metadata_shows_version_window_rows_and_threshold(store_with_features):
    zscore = next(model for model in model_assets if model.key == dg.AssetKey("order_zscore"))

    result = dg.materialize([zscore], resources={"duckdb": store_with_features, "settings": DEFAULT_SETTINGS})

    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["version"].value == 1
    assert metadata["threshold"].value == 5.0
    assert metadata["training_rows"].value > 0
    assert metadata["params"].value["z_threshold"] == 5.0
    assert "training/training_anomaly_rate" in metadata


def test_training_without_features_fails_with_a_message_saying_what_to_materialise(duckdb_resource):
    zscore = next(model for model in model_assets if model.key == dg.AssetKey("activity_zscore"))

    with pytest.raises(Exception, match="materialise activity_features"):
        dg.materialize([zscore], resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS})
