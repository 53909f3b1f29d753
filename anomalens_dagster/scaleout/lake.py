"""DuckLake storage: the same schemas and tables, with the catalog in PostgreSQL and the data as Parquet.

A DuckDB file lets one process write; DuckLake lets many, each committing its own snapshot to the
catalog database, so several day partitions are written at the same time by separate runs. Every
asset keeps talking to `AnomaLensDuckDB`: this resource only changes what a connection is (an
in-memory DuckDB with the lake attached and in use), so unqualified `schema.table` names, bound
parameters, transactions and `current_database()` mean what they meant on the file.

Measured here (duckdb 1.4.4, ducklake 1.4.4.20260205, PostgreSQL 15): writers of different days all
commit (DuckLake retries a commit whose snapshot moved on); two writers of the same day conflict and
are not retried by DuckLake, so the step is run again (bounded, `write_conflict_retries`); concurrent
CREATE TABLE corrupts a commit about one time in four, so tables are created and migrated by the
first day of a backfill alone, before the other days fan out (see `backfill.py`).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from anomalens_dagster.resources import AnomaLensDuckDB

logger = logging.getLogger(__name__)

LAKE_NAME = "anomalens"
# The registry's packages of DuckDB's extensions, for the pinned duckdb 1.4.4; each installs its
# `.duckdb_extension` under `duckdb_ext/extensions/v1.4.4/<platform>/`, DuckDB's own layout.
EXTENSION_PACKAGES = {"ducklake": "duckdb-ext-ducklake", "postgres": "duckdb-ext-postgres"}
EXTENSION_FOLDER = "duckdb_ext/extensions"
# DuckLake's message when two transactions changed the same rows or files (a same-day rewrite).
CONFLICT_MESSAGE = "conflict"
CONFLICT_RETRY_SECONDS = 1.0


def extension_directory() -> Path:
    """The folder the extension packages installed DuckDB's extensions into (DuckDB's `extension_directory`)."""
    folders = set()
    for extension, package in EXTENSION_PACKAGES.items():
        try:
            distribution = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError as error:
            raise RuntimeError(
                f"DuckLake storage needs the DuckDB extension '{extension}' from the package '{package}' "
                f"(`pip install {package}=={duckdb.__version__}.*`, part of the project's dependencies)"
            ) from error
        folders.add(Path(str(distribution.locate_file(EXTENSION_FOLDER))))
    if len(folders) != 1:
        raise RuntimeError(f"the DuckDB extension packages are installed in different folders: {sorted(folders)}")
    return folders.pop()


def is_write_conflict(error: BaseException) -> bool:
    return isinstance(error, duckdb.TransactionException) and CONFLICT_MESSAGE in str(error).lower()


class AnomaLensDuckLake(AnomaLensDuckDB):
    """DuckLake of the store, features, models and detections: catalog in PostgreSQL, data as Parquet.

    Connections are in-memory DuckDBs with the lake attached as the default database; the DuckDB
    extensions load from their installed packages (no download, autoinstall off). A step whose
    commit conflicts with another writer of the same rows is retried from its start, a bounded
    number of times. `database` is where local by-products (the HTML report) are written.
    """

    catalog: str = Field(description="libpq connection string of the PostgreSQL catalog, without the password.")
    catalog_password: str | None = Field(
        default=None, description="Password of the catalog database (set from an environment variable)."
    )
    data_path: str = Field(description="Folder or S3-compatible URL where the tables' Parquet files are written.")
    write_conflict_retries: int = Field(description="Times a step whose commit conflicted is run again.")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = self._attach(read_only=False)
        try:
            yield conn
        except duckdb.TransactionException as error:
            if not is_write_conflict(error):
                raise
            # Not retried in place: the step's reads were taken before the other writer's commit, so
            # the whole step runs again from a fresh snapshot.
            dg.get_dagster_logger(__name__).warning(
                f"DuckLake write conflicted with another writer of the same rows; the step runs again ({error})"
            )
            raise dg.RetryRequested(
                max_retries=self.write_conflict_retries, seconds_to_wait=CONFLICT_RETRY_SECONDS
            ) from error
        finally:
            conn.close()

    @contextmanager
    def read_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the lake's latest snapshot; writers never block it, it sees whole commits only."""
        conn = self._attach(read_only=True)
        try:
            yield conn
        finally:
            conn.close()

    def _attach(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        config = {
            "custom_user_agent": "dagster",
            "extension_directory": str(extension_directory()),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            **self.connection_config,
        }
        conn = duckdb.connect(":memory:", config=config)
        try:
            for extension in EXTENSION_PACKAGES:
                conn.execute(f"LOAD {extension}")
            if not self.data_path.startswith(("s3://", "gs://", "az://", "abfss://", "r2://", "http")):
                Path(self.data_path).mkdir(parents=True, exist_ok=True)
            # ATTACH takes no bound parameters: the two strings are quoted as SQL literals.
            target = sql_string(f"ducklake:postgres:{self._catalog_dsn()}")
            options = f"DATA_PATH {sql_string(self.data_path)}{', READ_ONLY' if read_only else ''}"
            failure = None
            try:
                conn.execute(f"ATTACH {target} AS {LAKE_NAME} ({options})")
            except duckdb.Error as error:
                failure = type(error), self._redacted(str(error))
            if failure:
                # DuckDB's message quotes the whole connection string: the password must not reach the log,
                # so the error is raised again outside the handler (no chained original).
                kind, message = failure
                raise kind(message)
            conn.execute(f"USE {LAKE_NAME}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _redacted(self, text: str) -> str:
        if not self.catalog_password:
            return text
        return text.replace(_libpq_quoted(self.catalog_password), "***").replace(self.catalog_password, "***")

    def _catalog_dsn(self) -> str:
        if self.catalog_password is None:
            return self.catalog
        return f"{self.catalog} password='{_libpq_quoted(self.catalog_password)}'"


def _libpq_quoted(value: str) -> str:
    """`value` escaped for a single-quoted libpq connection-string value."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def sql_string(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def expire_and_clean(conn: duckdb.DuckDBPyConnection, retention_days: float) -> dict[str, int]:
    """Expire the lake's snapshots older than `retention_days` and delete the files only they used.

    A day rewritten leaves its old Parquet files in place (earlier snapshots still read them) until
    the snapshots that reference them expire; small files of many one-day writes are merged first.
    Returns how many snapshots were expired and files deleted.
    """
    conn.execute(f"CALL ducklake_merge_adjacent_files('{LAKE_NAME}')")
    expired = conn.execute(
        f"CALL ducklake_expire_snapshots('{LAKE_NAME}', older_than => now() - to_seconds($seconds))",
        {"seconds": retention_days * 86400.0},
    ).fetchall()
    # Only files no remaining snapshot reads are scheduled for deletion, so all of them can go.
    deleted = conn.execute(f"CALL ducklake_cleanup_old_files('{LAKE_NAME}', cleanup_all => true)").fetchall()
    return {"snapshots_expired": len(expired), "files_deleted": len(deleted)}
