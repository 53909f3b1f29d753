"""The AnomaLens code location: one `dg.Definitions` with every asset, check, job and resource."""

from __future__ import annotations

import dagster as dg

from anomalens_dagster.assets.features import activity_features, feature_checks, order_features
from anomalens_dagster.assets.store import simulated_store_days, store_catalog, store_checks
from anomalens_dagster.jobs import jobs
from anomalens_dagster.resources import duckdb_resource

# Which ops take each section of a settings file (`anomalens run --settings`).
OPS_BY_SETTINGS_SECTION: dict[str, list[str]] = {
    "simulation": [store_catalog.op.name, simulated_store_days.op.name],
}

defs = dg.Definitions(
    assets=[store_catalog, simulated_store_days, activity_features, order_features],
    asset_checks=[*store_checks, *feature_checks],
    jobs=jobs,
    resources={"duckdb": duckdb_resource()},
)
