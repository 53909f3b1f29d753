"""Resources: the DuckDB file every asset reads and writes, and the landing zone files arrive in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from anomalens_dagster.constants import (
    ALL_SCHEMAS,
    DEFAULT_DUCKDB_PATH,
    DEFAULT_LANDING_DIR,
    DUCKDB_PATH_ENV_VAR,
    LANDING_DIR_ENV_VAR,
)


class AnomaLensDuckDB(DuckDBResource):
    """DuckDB file of the store, features, models and detections.

    Same as `DuckDBResource` (including its bounded connect retry on a locked file), but it
    creates the file's folder on first use, so a fresh checkout needs no set-up step, and it closes
    the connection when the block raises too: the base class only closes on success, which keeps
    the file open (and locked) after a failed step.
    """

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            check_database_name(self.database)
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as conn:
            try:
                yield conn
            finally:
                conn.close()


def check_database_name(database: str) -> None:
    """Refuse a file whose name DuckDB would confuse with one of our schemas.

    DuckDB names the catalog after the file: `store.duckdb` makes `store.orders` ambiguous
    between the catalog `store` and the schema `store`.
    """
    stem = Path(database).stem
    if stem in ALL_SCHEMAS:
        raise ValueError(
            f"DuckDB file '{database}' is named like the schema '{stem}', which makes table names ambiguous "
            f"in DuckDB; choose another file name (schemas: {', '.join(ALL_SCHEMAS)})"
        )


def duckdb_resource() -> AnomaLensDuckDB:
    """The resource as the code location configures it.

    `ANOMALENS_DUCKDB_PATH`, when set, is read through `dg.EnvVar` at run time (the UI shows the
    variable, not its value); otherwise the file is `data/anomalens.duckdb` under the working folder.
    """
    database = dg.EnvVar(DUCKDB_PATH_ENV_VAR) if os.environ.get(DUCKDB_PATH_ENV_VAR) else DEFAULT_DUCKDB_PATH
    return AnomaLensDuckDB(database=database)


class LandingZone(dg.ConfigurableResource):
    """The folder where store files (orders, order items, user activities) arrive to be ingested."""

    directory: str = Field(description="Landing folder; unreadable files move to its `quarantine/` subfolder.")

    @property
    def path(self) -> Path:
        return Path(self.directory)


def landing_zone_resource() -> LandingZone:
    """The landing zone as the code location configures it: `ANOMALENS_LANDING_DIR`, else `data/landing`."""
    directory = dg.EnvVar(LANDING_DIR_ENV_VAR) if os.environ.get(LANDING_DIR_ENV_VAR) else DEFAULT_LANDING_DIR
    return LandingZone(directory=directory)
