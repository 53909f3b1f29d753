"""Resources: the DuckDB file every asset reads and writes, and the landing zone files arrive in."""

from __future__ import annotations

import os
import time
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
    DUCKDB_POOL,
    LANDING_DIR_ENV_VAR,
)

# DuckDB's message when another process holds the file (duckdb 1.x and 2.0).
LOCK_ERROR = "Could not set lock on file"
# Waits between connect attempts on a locked file: bounded, about 90 s in all, like the base
# class's backoff, but capped per wait so a freed file is noticed within 15 s.
LOCK_RETRY_DELAYS_SECONDS = tuple(min(0.25 * 2**retry, 15.0) for retry in range(11))


class AnomaLensDuckDB(DuckDBResource):
    """DuckDB file of the store, features, models and detections.

    Same as `DuckDBResource`, but it creates the file's folder on first use, so a fresh checkout
    needs no set-up step; it closes the connection when the block raises too (the base class only
    closes on success, which keeps the file open, and locked, after a failed step); and its connect
    retry on a file locked by another process is logged to the run and retries nothing else. The
    `duckdb` concurrency pool is what keeps writers apart; a logged retry says that something
    outside the pool (another program, a step without the pool) held the file.
    """

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            check_database_name(self.database)
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect_when_unlocked()
        try:
            yield conn
        finally:
            conn.close()

    def _connect_when_unlocked(self) -> duckdb.DuckDBPyConnection:
        config = {"custom_user_agent": "dagster", **self.connection_config}
        delays = iter(LOCK_RETRY_DELAYS_SECONDS)
        attempt = 1
        while True:
            try:
                return duckdb.connect(self.database, read_only=False, config=config)
            except duckdb.IOException as error:
                if LOCK_ERROR not in str(error):
                    raise
                delay = next(delays, None)
                if delay is None:
                    raise duckdb.IOException(
                        f"DuckDB file '{self.database}' stayed locked by another process through {attempt} "
                        f"attempts over {sum(LOCK_RETRY_DELAYS_SECONDS):g} s ({error}). Stop the program that "
                        f"holds it, and keep every asset that opens it in the '{DUCKDB_POOL}' concurrency pool "
                        "of an instance that limits that pool to 1 (see instance.py)."
                    ) from error
                dg.get_dagster_logger(__name__).warning(
                    f"DuckDB file '{self.database}' is locked by another process; retry {attempt} of "
                    f"{len(LOCK_RETRY_DELAYS_SECONDS)} in {delay:g} s ({error})"
                )
                time.sleep(delay)
                attempt += 1


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
