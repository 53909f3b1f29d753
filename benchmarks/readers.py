"""Benchmark: can a reader open the DuckDB file while `anomalens run` writes it?

Usage: .venv/bin/python -m benchmarks.readers [--days 30] [--every 5]
Starts a 30-day `anomalens run` at the demo's default size in a subprocess (a temporary DuckDB file
and Dagster instance) and, every `--every` seconds while it runs, opens a read-only connection the
way the command line does (`AnomaLensDuckDB.read_connection`, which retries a locked file for a
bounded time), counts the activities and closes it. Prints each attempt's wait for the connection,
then attempts, failures, median and longest wait. Target: no failure, no wait above 5 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from anomalens_dagster.constants import DUCKDB_PATH_ENV_VAR, STORE_SCHEMA, USER_ACTIVITIES
from anomalens_dagster.instance import DAGSTER_HOME_ENV_VAR
from anomalens_dagster.resources import AnomaLensDuckDB
from benchmarks.common import print_table

TARGET_LONGEST_WAIT_SECONDS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every", type=float, default=5.0, help="Seconds between two reads.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dagster").setLevel(logging.WARNING)  # each reader's first wait only, not every poll
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "anomalens.duckdb"
        log = Path(scratch) / "run.log"
        env = {**os.environ, DUCKDB_PATH_ENV_VAR: str(database), DAGSTER_HOME_ENV_VAR: str(Path(scratch) / "home")}
        anomalens = str(Path(sys.executable).with_name("anomalens"))
        started = time.perf_counter()
        with log.open("w") as output:
            run = subprocess.Popen([anomalens, "run", "--days", str(args.days)], env=env, stdout=output, stderr=output)
            attempts = read_while_running(run, AnomaLensDuckDB(database=str(database)), args.every)
        run_seconds = time.perf_counter() - started
        if run.returncode != 0:
            print(log.read_text()[-3000:])
            raise SystemExit(f"anomalens run failed with exit code {run.returncode}")
    report(attempts, args.days, run_seconds)


def read_while_running(run: subprocess.Popen, resource: AnomaLensDuckDB, every: float) -> list[tuple[float, str]]:
    """(seconds waited for the connection, error or "") of each read while `run` lives."""
    attempts = []
    next_read = time.perf_counter()
    while run.poll() is None:
        time.sleep(max(0.0, next_read - time.perf_counter()))
        next_read += every
        if run.poll() is not None:
            break
        if not Path(resource.database).exists():
            continue  # the run has not created the file yet: nothing to read
        attempts.append(timed_read(resource))
    return attempts


def timed_read(resource: AnomaLensDuckDB) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        with resource.read_connection() as conn:
            waited = time.perf_counter() - started
            try:
                conn.execute(f"SELECT count(*) FROM {STORE_SCHEMA}.{USER_ACTIVITIES}").fetchone()
            except duckdb.CatalogException:
                pass  # the store is not written yet; the connection is what is measured
    except duckdb.Error as error:
        return time.perf_counter() - started, str(error).splitlines()[0]
    return waited, ""


def report(attempts: list[tuple[float, str]], days: int, run_seconds: float) -> None:
    waits = [waited for waited, _ in attempts]
    failures = [error for _, error in attempts if error]
    print(f"\nReaders during a {days}-day `anomalens run` at the demo's default size ({run_seconds:,.0f} s):\n")
    print_table(
        ["attempts", "failures", "median wait (s)", "longest wait (s)"],
        [(len(attempts), len(failures), statistics.median(waits) if waits else 0.0, max(waits, default=0.0))],
    )
    for error in failures:
        print(f"failed: {error}")
    met = not failures and max(waits, default=0.0) <= TARGET_LONGEST_WAIT_SECONDS
    print(f"\nTarget (no failure, longest wait <= {TARGET_LONGEST_WAIT_SECONDS:g} s): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
