"""What the settings file's `storage` and `execution` sections choose, as Dagster definitions.

- The `duckdb` resource: the DuckDB file (default) or DuckLake (`AnomaLensDuckLake`).
- The executor of every job: in-process (default) or dagster-celery's, configured with the broker.
- With DuckLake, a backfill of the daily assets is one run per day (`BackfillPolicy.multi_run(1)`),
  so the run queue can run several days at once; on the file it stays one run for the range.
- The phase jobs a backfill runs in order (`backfill.py`): per-day jobs hold only daily assets, so
  no unpartitioned table is rewritten by several day runs at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from anomalens_dagster import constants as c
from anomalens_dagster.constants import (
    DETECTIONS_GROUP,
    DUCKDB_WRITER_TAGS,
    FEATURES_GROUP,
    REPORTS_GROUP,
    STORE_GROUP,
)
from anomalens_dagster.resources import AnomaLensDuckDB, duckdb_resource
from anomalens_dagster.scaleout.settings import ExecutionConfig, StorageConfig, execution_settings, storage_settings

# The folder a local `database` path names for DuckLake's by-products (the HTML report).
LAKE_DATABASE_NAME = "anomalens.ducklake"

CATALOG_JOB = "lake_catalog_job"
SUMMARIES_JOB = "lake_summaries_job"


# The daily phase of the entity day summaries (features group), before the features that read them.
DAY_SUMMARIES_PHASE = "day_summaries"
DAY_SUMMARY_TABLES = (
    c.CUSTOMER_DAY_SUMMARIES,
    c.CUSTOMER_ACCESS_DAY_SUMMARIES,
    c.IP_DAY_SUMMARIES,
    c.PRODUCT_DAY_SUMMARIES,
    c.STORE_DAY_SUMMARIES,
)


def days_job_name(group: str) -> str:
    return f"{group}_days_job"


def job_for_name(job_name: str) -> dg.JobDefinition:
    """The code location's job `job_name`: what a backfill's run process and every Celery worker reconstruct."""
    from anomalens_dagster.definitions import defs

    return defs.resolve_job_def(job_name)


def storage_resource(settings: StorageConfig | None = None) -> AnomaLensDuckDB:
    """The `duckdb` resource the settings file's `storage` section chooses."""
    from anomalens_dagster.scaleout.lake import AnomaLensDuckLake

    settings = settings or storage_settings()
    if settings.backend == "duckdb":
        return duckdb_resource()
    if not settings.catalog:
        raise ValueError(
            "settings `storage.backend: ducklake` needs `storage.catalog` (a PostgreSQL connection string)"
        )
    password = dg.EnvVar(settings.catalog_password_env) if os.environ.get(settings.catalog_password_env) else None
    local = "://" not in settings.data_path
    return AnomaLensDuckLake(
        database=str(Path(settings.data_path) / LAKE_DATABASE_NAME) if local else LAKE_DATABASE_NAME,
        catalog=settings.catalog,
        catalog_password=password,
        data_path=settings.data_path,
        write_conflict_retries=settings.write_conflict_retries,
    )


def step_executor(settings: ExecutionConfig | None = None) -> dg.ExecutorDefinition:
    """The executor the settings file's `execution` section chooses for every job."""
    settings = settings or execution_settings()
    if settings.executor == "in_process":
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": settings.broker, "backend": settings.backend})


def for_storage(assets: Sequence[dg.AssetsDefinition], settings: StorageConfig | None = None) -> list:
    """`assets` as the storage backend runs them: with DuckLake, daily assets backfill one run per day."""
    settings = settings or storage_settings()
    if settings.backend == "duckdb":
        return list(assets)
    return [
        asset.with_attributes(backfill_policy=dg.BackfillPolicy.multi_run(1)) if asset.partitions_def else asset
        for asset in assets
    ]


def phase_jobs(assets: Sequence[dg.AssetsDefinition]) -> list[dg.UnresolvedAssetJobDefinition]:
    """Jobs of a backfill's phases: the catalog, each group's daily assets, then the summaries.

    Derived from the assets' groups and partitions, so a table another module adds to a group is in
    its phase without a change here.
    """

    def keys(groups: Sequence[str], daily: bool) -> list[dg.AssetKey]:
        return [
            key
            for asset in assets
            for key in asset.keys
            if asset.group_names_by_key.get(key) in groups and bool(asset.partitions_def) == daily
        ]

    jobs = [
        dg.define_asset_job(
            CATALOG_JOB,
            selection=dg.AssetSelection.assets(*keys([STORE_GROUP], daily=False)),
            description="A backfill's set-up: the store's catalog tables (categories, products, customers).",
            tags=DUCKDB_WRITER_TAGS,
        )
    ]
    # A day's baselines read the entity summaries of the days before it: every day's summaries are
    # written in a phase of their own before any day's features.
    summary_keys = [key for key in keys([FEATURES_GROUP], daily=True) if key.path[-1] in DAY_SUMMARY_TABLES]
    for group in (STORE_GROUP, DAY_SUMMARIES_PHASE, FEATURES_GROUP, DETECTIONS_GROUP):
        selected = (
            summary_keys
            if group == DAY_SUMMARIES_PHASE
            else [key for key in keys([group], daily=True) if key not in summary_keys]
        )
        jobs.append(
            dg.define_asset_job(
                days_job_name(group),
                # Without the asset checks: on Celery every check is a task of its own, which more than
                # doubled a day's run (the checks of a day run with `dagster asset check` or the UI).
                selection=dg.AssetSelection.assets(*selected).without_checks(),
                description=f"The daily assets of the {group} group for one day, without their checks: a backfill "
                "runs several days at once.",
                tags=DUCKDB_WRITER_TAGS,
            )
        )
    jobs.append(
        dg.define_asset_job(
            SUMMARIES_JOB,
            selection=dg.AssetSelection.assets(*keys([DETECTIONS_GROUP, REPORTS_GROUP], daily=False)),
            description="A backfill's end: the tables over every day (consolidated anomalies, reports).",
            tags=DUCKDB_WRITER_TAGS,
        )
    )
    return jobs
