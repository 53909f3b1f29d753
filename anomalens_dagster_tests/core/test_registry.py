"""Model registry round trips through an in-memory DuckDB: versions, digests, feature schemas."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle

import duckdb
import numpy as np
import pandas as pd
import pytest

from anomalens_dagster.core.detectors import IsolationForestDetector, ZScoreDetector, feature_schema
from anomalens_dagster.core.registry import (
    MODEL_REGISTRY_DDL,
    ArtifactIntegrityError,
    FeatureSchemaMismatchError,
    ModelNotFoundError,
    deserialize,
    load_model,
    register_model,
    register_threshold,
    serialize,
    with_threshold,
)

NUMERIC = ["amount", "count"]
CATEGORICAL = ["action_type"]
SCHEMA = feature_schema(NUMERIC, CATEGORICAL)
WINDOW_START = dt.datetime(2026, 1, 1)
WINDOW_END = dt.datetime(2026, 1, 31)
TRAINED_AT = dt.datetime(2026, 2, 1, 3, 0)


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 0.5, n),
            "count": rng.poisson(3.0, n),
            "action_type": rng.choice(["view", "search"], n),
        }
    )


@pytest.fixture
def conn():
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def zscore() -> ZScoreDetector:
    return ZScoreDetector(NUMERIC, CATEGORICAL, z_threshold=2.5).fit(frame(300, seed=1))


@pytest.fixture(scope="module")
def forest() -> IsolationForestDetector:
    return IsolationForestDetector(NUMERIC, CATEGORICAL, n_estimators=30).fit(frame(300, seed=1))


def register(conn, detector, entity_type="activity"):
    return register_model(conn, detector, entity_type, WINDOW_START, WINDOW_END, TRAINED_AT)


def test_registered_detector_loads_back_with_identical_scores_and_its_record(conn, forest):
    record = register(conn, forest)
    loaded, loaded_record = load_model(conn, "isolation_forest", "activity")
    rows = frame(100, seed=2)
    np.testing.assert_array_equal(loaded.score(rows), forest.score(rows))
    assert loaded_record == record
    assert (record.detector, record.entity_type, record.version) == ("isolation_forest", "activity", 1)
    assert (record.trained_at, record.training_start, record.training_end) == (TRAINED_AT, WINDOW_START, WINDOW_END)
    assert record.n_rows == 300
    assert record.feature_schema == SCHEMA
    assert record.params["n_estimators"] == 30
    assert record.params["numeric_features"] == NUMERIC
    assert record.metrics["threshold"] == pytest.approx(forest.threshold_)
    assert record.sha256 == serialize(forest)[1]


def test_versions_increment_per_detector_and_entity_type(conn, zscore, forest):
    assert register(conn, zscore).version == 1
    assert register(conn, zscore).version == 2
    assert register(conn, zscore, entity_type="order").version == 1
    assert register(conn, forest).version == 1
    assert load_model(conn, "zscore", "activity")[1].version == 2
    assert load_model(conn, "zscore", "activity", version=1)[1].version == 1
    assert conn.execute("SELECT count(*) FROM ml.model_registry").fetchone() == (4,)


def test_loading_when_nothing_is_registered_tells_to_materialise_the_model_asset(conn, zscore):
    with pytest.raises(ModelNotFoundError, match="no dbscan model is registered.*model asset activity_dbscan"):
        load_model(conn, "dbscan", "activity")
    register(conn, zscore)
    with pytest.raises(ModelNotFoundError, match="no version 7 of the zscore model is registered for entity type"):
        load_model(conn, "zscore", "activity", version=7)


def test_tampered_artifact_fails_its_digest_check_before_unpickling(conn, zscore):
    register(conn, zscore)
    # Not a pickle at all: unpickling it would raise UnpicklingError, not the integrity error.
    conn.execute("UPDATE ml.model_registry SET artifact = ?::BLOB", [b"not a pickle"])
    with pytest.raises(ArtifactIntegrityError, match="artifact of activity zscore v1 failed its integrity check"):
        load_model(conn, "zscore", "activity")


def test_feature_schema_mismatch_lists_every_difference(conn, zscore):
    register(conn, zscore)
    expected = [("amount", "numeric"), ("count", "categorical"), ("hour", "numeric")]
    with pytest.raises(FeatureSchemaMismatchError) as error:
        load_model(conn, "zscore", "activity", expected_feature_schema=expected)
    message = str(error.value)
    assert "activity zscore v1 was fitted on other features than expected" in message
    assert "expected features the model lacks: ['hour']" in message
    assert "model features not expected: ['action_type']" in message
    assert "feature 'count' is numeric in the model but categorical expected" in message


def test_feature_schema_in_another_order_is_accepted(zscore):
    artifact, sha256 = serialize(zscore)
    detector = deserialize(artifact, sha256, list(reversed(SCHEMA)))
    assert detector.feature_schema_ == SCHEMA


def test_deserialize_checks_the_digest_it_is_given(zscore):
    artifact, sha256 = serialize(zscore)
    assert len(sha256) == 64
    with pytest.raises(ArtifactIntegrityError, match="artifact of order zscore v3 failed"):
        deserialize(artifact, "0" * 64, SCHEMA, model_name="order zscore v3")
    assert isinstance(deserialize(artifact, sha256, SCHEMA), ZScoreDetector)


def test_deserialize_refuses_an_artifact_that_is_not_a_detector():
    artifact = pickle.dumps({"not": "a detector"})
    with pytest.raises(TypeError, match="holds a dict, not a detector"):
        deserialize(artifact, hashlib.sha256(artifact).hexdigest(), SCHEMA)


def test_aware_timestamps_are_stored_as_naive_utc(conn, zscore):
    paris = dt.timezone(dt.timedelta(hours=1))
    record = register_model(
        conn, zscore, "order", dt.date(2026, 1, 1), WINDOW_END, trained_at=dt.datetime(2026, 2, 1, 4, 0, tzinfo=paris)
    )
    stored = conn.execute("SELECT trained_at, training_start FROM ml.model_registry").fetchone()
    assert stored == (dt.datetime(2026, 2, 1, 3, 0), dt.datetime(2026, 1, 1))
    assert record.trained_at == dt.datetime(2026, 2, 1, 3, 0)


def test_register_refuses_unfitted_detectors_and_unknown_entity_types(conn, zscore):
    with pytest.raises(ValueError, match="not fitted"):
        register(conn, ZScoreDetector(NUMERIC))
    with pytest.raises(ValueError, match="unknown entity type 'orders'"):
        register(conn, zscore, entity_type="orders")


def test_registry_ddl_is_idempotent(conn):
    conn.execute(MODEL_REGISTRY_DDL)
    conn.execute(MODEL_REGISTRY_DDL)
    columns = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'ml' AND table_name = 'model_registry' ORDER BY ordinal_position"
    ).fetchall()
    assert columns == [
        ("detector", "VARCHAR"),
        ("entity_type", "VARCHAR"),
        ("version", "INTEGER"),
        ("trained_at", "TIMESTAMP"),
        ("training_start", "TIMESTAMP"),
        ("training_end", "TIMESTAMP"),
        ("n_rows", "BIGINT"),
        ("params", "JSON"),
        ("metrics", "JSON"),
        ("feature_schema", "JSON"),
        ("artifact", "BLOB"),
        ("sha256", "VARCHAR"),
    ]


def test_a_threshold_applied_to_a_model_is_a_new_version_that_says_where_it_came_from(conn, zscore):
    register_model(conn, zscore, "order", WINDOW_START, WINDOW_END, trained_at=TRAINED_AT)
    fitted = float(zscore.threshold_)

    record = register_threshold(conn, "zscore", "order", fitted * 0.8, "calibration", calibration_verdicts=24)
    loaded, loaded_record = load_model(conn, "zscore", "order")

    assert record.version == loaded_record.version == 2
    assert loaded.threshold_ == pytest.approx(fitted * 0.8)
    assert (record.training_start, record.training_end) == (WINDOW_START, WINDOW_END)
    assert record.metrics["threshold"] == pytest.approx(fitted * 0.8)
    assert record.metrics["fitted_threshold"] == pytest.approx(fitted)
    assert record.metrics["threshold_source"] == "calibration"
    assert (record.metrics["calibration_verdicts"], record.metrics["previous_version"]) == (24, 1)
    assert zscore.threshold_ == fitted  # the input detector is not changed
    # Applied again, the fitted threshold is still the one fitting learned.
    again = register_threshold(conn, "zscore", "order", fitted * 0.7, "calibration")
    assert again.metrics["fitted_threshold"] == pytest.approx(fitted)


def test_a_threshold_that_is_not_positive_is_refused(zscore):
    with pytest.raises(ValueError, match="not positive"):
        with_threshold(zscore, 0.0, "calibration")
