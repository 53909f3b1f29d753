"""Fixtures of the asset tests: a simulated store, its features and trained models in tmp DuckDB.

Building a store and training its eight models takes seconds, so each is built once per session
in a file of its own, and every test gets a fresh copy of that file in its tmp_path.
"""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from anomalens_dagster.assets.day_summaries import entity_day_summaries
from anomalens_dagster.assets.features import activity_features, order_features
from anomalens_dagster.assets.models import model_assets, model_checks
from anomalens_dagster.assets.store import simulated_store_days, store_catalog, store_checks
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS, SMALL_SIMULATION

DAYS = ("2026-03-01", "2026-03-02")
RANGE_TAGS = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[1]}
EVENT_TABLES = ("orders", "order_items", "user_activities", "simulation_labels")


def materialize_store(duckdb_resource, simulation: dict, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [store_catalog, simulated_store_days, *store_checks],
        resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS},
        run_config={
            "ops": {
                "store_catalog": {"config": simulation},
                "simulated_store_days": {"config": simulation},
            }
        },
        **kwargs,
    )


@pytest.fixture(scope="session")
def store_with_features_file(tmp_path_factory) -> Path:
    """A two-day simulated store with its features, built once per session (copy it, never change it)."""
    path = tmp_path_factory.mktemp("store_with_features") / "anomalens.duckdb"
    resource = AnomaLensDuckDB(database=str(path))
    materialize_store(resource, dict(SMALL_SIMULATION), tags=RANGE_TAGS)
    dg.materialize(
        [entity_day_summaries, activity_features, order_features],
        resources={"duckdb": resource, "settings": DEFAULT_SETTINGS},
        tags=RANGE_TAGS,
    )
    return path


@pytest.fixture
def store_with_features(store_with_features_file, duckdb_resource, db_path):
    shutil.copyfile(store_with_features_file, db_path)
    return duckdb_resource


# Few epochs keep the test fast; on 240 orders a fixed eps is too tight (15 % noise), so DBSCAN
# gets a wider eps, as a user with a small store would set.
FAST_MODELS = {
    "detection": {"autoencoder_epochs": 3, "dbscan_eps": 0.8},
    "training": {"max_training_rows": 2_000},
}


def train_all(duckdb_resource) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*model_assets, *model_checks],
        resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS},
        run_config={"ops": {model.op.name: {"config": FAST_MODELS} for model in model_assets}},
    )


@pytest.fixture(scope="session")
def trained_store_file(store_with_features_file, tmp_path_factory) -> Path:
    """`store_with_features_file` with its eight models trained, built once per session."""
    path = tmp_path_factory.mktemp("trained_store") / "anomalens.duckdb"
    shutil.copyfile(store_with_features_file, path)
    train_all(AnomaLensDuckDB(database=str(path)))
    return path


@pytest.fixture
def trained_store(trained_store_file, duckdb_resource, db_path):
    shutil.copyfile(trained_store_file, db_path)
    return duckdb_resource
