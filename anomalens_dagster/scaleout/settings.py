"""The settings file's `storage` and `execution` sections: where tables live and what runs the steps.

Unlike the other sections they are read when the code location loads, not when a run starts: the
storage backend is the `duckdb` resource's class and the executor is part of every job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import yaml
from pydantic import Field, ValidationError

from anomalens_dagster.constants import DEFAULT_SETTINGS_PATH, SETTINGS_ENV_VAR

STORAGE_SECTION = "storage"
EXECUTION_SECTION = "execution"
DEFAULT_CATALOG_PASSWORD_ENV_VAR = "ANOMALENS_CATALOG_PASSWORD"
DEFAULT_LAKE_DATA_PATH = "data/lake"
DEFAULT_SNAPSHOT_RETENTION_DAYS = 7
DEFAULT_WRITE_CONFLICT_RETRIES = 5
DEFAULT_CELERY_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_CELERY_BACKEND = "redis://127.0.0.1:6379/1"


class StorageConfig(dg.Config):
    """Where the tables live: the embedded DuckDB file (default) or DuckLake (catalog in PostgreSQL)."""

    backend: Literal["duckdb", "ducklake"] = Field(
        default="duckdb",
        description="`duckdb`: one DuckDB file, one writing process (ANOMALENS_DUCKDB_PATH). `ducklake`: catalog "
        "in PostgreSQL, table data as Parquet under `data_path`, day partitions written by several processes.",
    )
    catalog: str | None = Field(
        default=None,
        description="DuckLake only: libpq connection string of the PostgreSQL catalog database, without the "
        "password, e.g. `dbname=anomalens_lake host=127.0.0.1 port=5432 user=anomalens`.",
    )
    catalog_password_env: str = Field(
        default=DEFAULT_CATALOG_PASSWORD_ENV_VAR,
        description="DuckLake only: environment variable holding the catalog's password (never the file).",
    )
    data_path: str = Field(
        default=DEFAULT_LAKE_DATA_PATH,
        description="DuckLake only: folder (shared by every worker) or S3-compatible URL (`s3://bucket/prefix/`, "
        "credentials through a DuckDB secret) where the Parquet files of every table are written.",
    )
    snapshot_retention_days: float = Field(
        default=DEFAULT_SNAPSHOT_RETENTION_DAYS,
        ge=0,
        description="DuckLake only: snapshots older than this are expired by lake_maintenance_job, and the "
        "Parquet files only they used are deleted (time travel reaches back this far).",
    )
    write_conflict_retries: int = Field(
        default=DEFAULT_WRITE_CONFLICT_RETRIES,
        ge=0,
        description="DuckLake only: times a step whose commit conflicts with another writer of the same rows is "
        "run again (from its reads, so it writes over the other's commit).",
    )


class ExecutionConfig(dg.Config):
    """What executes the steps of every run: this process (default) or Celery workers."""

    executor: Literal["in_process", "celery"] = Field(
        default="in_process",
        description="`in_process`: each run's steps in its own process, one after the other. `celery`: each step "
        "sent to Celery workers (`dagster-celery worker start`) through `broker`.",
    )
    broker: str = Field(default=DEFAULT_CELERY_BROKER, description="Celery only: URL of the broker (Redis).")
    backend: str = Field(default=DEFAULT_CELERY_BACKEND, description="Celery only: URL of the result backend.")


def settings_path() -> Path:
    return Path(os.environ.get(SETTINGS_ENV_VAR) or DEFAULT_SETTINGS_PATH)


def load_section(config_class: type[dg.Config], section: str, path: Path | None = None) -> Any:
    """The validated `section` of the settings file (defaults when the file or section is missing).

    Only this section is validated here: a mistake elsewhere in the file fails the runs that read
    it (with its own message), not the loading of the code location.
    """
    path = path or settings_path()
    if not path.is_file():
        return config_class()
    try:
        parsed = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return config_class()  # every run will fail naming the file's syntax error
    values = parsed.get(section) if isinstance(parsed, dict) else None
    try:
        return config_class(**(values or {}))
    except (ValidationError, TypeError) as error:
        raise ValueError(f"{path}: invalid section '{section}': {error}") from error


def storage_settings(path: Path | None = None) -> StorageConfig:
    return load_section(StorageConfig, STORAGE_SECTION, path)


def execution_settings(path: Path | None = None) -> ExecutionConfig:
    return load_section(ExecutionConfig, EXECUTION_SECTION, path)
