"""Resources: the DuckDB file every asset reads and writes, and the landing zone files arrive in."""

from __future__ import annotations

import logging
import os
import re
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
# Waits between a writer's connect attempts on a locked file: bounded, about 90 s in all, like the
# base class's backoff, but capped per wait so a freed file is noticed within 15 s.
LOCK_RETRY_DELAYS_SECONDS = tuple(min(0.25 * 2**retry, 15.0) for retry in range(11))
# Waits between a reader's connect attempts: runs hold the file only while they read or write one
# day, so a reader polls often (every 0.5 s at most) to slip in between, for at most about 60 s.
READ_RETRY_DELAYS_SECONDS = tuple(min(0.05 * 2**retry, 0.5) for retry in range(124))
# DuckDB's message when the file's storage version is newer than this DuckDB reads (1.4.4 on a file
# written by 2.0: "Trying to read a database file with version number 999, but we can only read
# versions between 64 and 67. The database file was created with an newer version of DuckDB.").
NEWER_STORAGE_ERROR = re.compile(r"created with an? newer version of DuckDB", re.IGNORECASE)


class AnomaLensDuckDB(DuckDBResource):
    """DuckDB file of the store, features, models and detections.

    Same as `DuckDBResource`, but it creates the file's folder on first use, so a fresh checkout
    needs no set-up step; it closes the connection when the block raises too (the base class only
    closes on success, which keeps the file open, and locked, after a failed step); its connect
    retry on a file locked by another process is logged to the run and retries nothing else; and a
    file written by a newer DuckDB fails with what to do. The `duckdb` concurrency pool is what
    keeps writers apart; a logged retry says that something outside the pool (another program, a
    step without the pool) held the file.

    `read_connection` is for readers outside runs (the command line, benchmarks): read-only, so it
    never takes the write lock, and retried while a run holds the file for one of its short writes.
    """

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            check_database_name(self.database)
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect_when_unlocked(read_only=False)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def read_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection, retried (bounded, logged) while another process writes the file."""
        if self.database == ":memory:":
            with self.get_connection() as conn:  # private to this process: nothing to share
                yield conn
            return
        if not Path(self.database).exists():
            # Created empty, as a writer would, so that reading it says which table is missing.
            with self.get_connection():
                pass
        conn = self._connect_when_unlocked(read_only=True)
        try:
            yield conn
        finally:
            conn.close()

    def _connect_when_unlocked(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        config = {"custom_user_agent": "dagster", **self.connection_config}
        all_delays = READ_RETRY_DELAYS_SECONDS if read_only else LOCK_RETRY_DELAYS_SECONDS
        delays = iter(all_delays)
        attempt = 1
        while True:
            try:
                return duckdb.connect(self.database, read_only=read_only, config=config)
            except duckdb.IOException as error:
                if NEWER_STORAGE_ERROR.search(str(error)):
                    raise duckdb.IOException(
                        f"DuckDB file '{self.database}' was written by a newer DuckDB than the {duckdb.__version__} "
                        "this project pins, which cannot read it. Delete it and rebuild it: for the demo file, "
                        f"`make clean && make demo`; otherwise remove '{self.database}' and run `anomalens run` "
                        f"again ({error})"
                    ) from error
                if LOCK_ERROR not in str(error):
                    raise
                delay = next(delays, None)
                if delay is None:
                    message = _still_locked_message(self.database, read_only, attempt, all_delays, error)
                    raise duckdb.IOException(message) from error
                message = (
                    f"DuckDB file '{self.database}' is locked by another process; retry {attempt} of "
                    f"{len(all_delays)} in {delay:g} s ({error})"
                )
                # A reader polls many times while a run writes: its first wait is worth a warning, the rest is noise.
                level = logging.DEBUG if read_only and attempt > 1 else logging.WARNING
                dg.get_dagster_logger(__name__).log(level, message)
                time.sleep(delay)
                attempt += 1


def _still_locked_message(
    database: str, read_only: bool, attempts: int, delays: tuple[float, ...], error: Exception
) -> str:
    held = (
        f"DuckDB file '{database}' stayed locked by another process through {attempts} attempts over "
        f"{sum(delays):g} s ({error})."
    )
    if read_only:
        # Runs hold the file for one day's read or write at a time, so this is another kind of program.
        return f"{held} Stop the program that holds it (runs hold it only for seconds at a time)."
    return (
        f"{held} Stop the program that holds it, and keep every asset that opens it in the '{DUCKDB_POOL}' "
        "concurrency pool of an instance that limits that pool to 1 (see instance.py)."
    )


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
