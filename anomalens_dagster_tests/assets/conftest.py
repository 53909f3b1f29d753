"""Fixtures of the asset tests: a simulated store, its features and trained models in tmp DuckDB."""

import dagster as dg
import pytest

from anomalens_dagster.assets.features import activity_features, order_features
from anomalens_dagster.assets.models import model_assets, model_checks
from anomalens_dagster.assets.store import simulated_store_days, store_catalog, store_checks
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS

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


@pytest.fixture
def store_with_features(duckdb_resource, small_simulation):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    dg.materialize(
        [activity_features, order_features],
        resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS},
        tags=RANGE_TAGS,
    )
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


@pytest.fixture
def trained_store(store_with_features):
    train_all(store_with_features)
    return store_with_features
