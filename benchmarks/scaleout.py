"""Benchmark: a 14-day build on one DuckDB file against DuckLake with 1, 2 and 4 Celery workers.

Usage: .venv/bin/python -m benchmarks.scaleout [--sizes demo,3m] [--workers 1,2,4] [--days 14]

`demo` is the demo's traffic (10k activities and 1k orders a day, 3k customers); `3m` is 3 million
activities over the 14 days (214k a day, 21k orders). The one-file build is `anomalens run` (one
process, steps one after the other); each DuckLake build is `anomalens_dagster.scaleout.backfill`
with N day runs at a time and N Celery workers of one process each, on a PostgreSQL and a Redis
started here (the services and workers start before the clock does).
Wall seconds are the whole command (its imports and every run process included): what an operator waits for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.common import benchmark_folder, print_table

FIRST_DAY = dt.date(2026, 3, 2)
SIZES = {
    "demo": {"num_customers": 3_000, "orders_per_day": 1_000, "activities_per_day": 10_000},
    "3m": {"num_customers": 30_000, "orders_per_day": 21_000, "activities_per_day": 214_286},
}
SCALEOUT_YAML = Path(__file__).resolve().parents[1] / "anomalens_dagster" / "scaleout" / "dagster.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="demo,3m", help=f"Comma-separated, of {', '.join(SIZES)}.")
    parser.add_argument("--workers", default="1,2,4", help="Comma-separated worker counts for DuckLake.")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--workdir", default=None, help="Keep files here (default: a temporary folder).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with benchmark_folder(args.workdir) as folder:
        for size in args.sizes.split(","):
            rows += measure_size(folder / size, size, args.days, [int(w) for w in args.workers.split(",")])
    print(f"\n{args.days} days, {os.cpu_count()} cores (wall seconds of the whole command):\n")
    print_table(["size", "storage", "workers", "wall s", "vs one file"], rows)


def measure_size(folder: Path, size: str, days: int, worker_counts: list[int]) -> list[list[object]]:
    from anomalens_dagster.scaleout.local import celery_workers, local_postgres, local_redis

    folder.mkdir(parents=True, exist_ok=True)
    simulation = {**SIZES[size]}
    one_file = time_one_file(folder, simulation, days)
    rows: list[list[object]] = [[size, "one DuckDB file", 1, one_file, 1.0]]
    print(f"{size}: one file {one_file:.1f} s", flush=True)
    password = secrets.token_hex(16)
    catalogs = [f"lake_{workers}" for workers in worker_counts]
    with local_postgres([*catalogs, "dagster"], password) as postgres, local_redis() as redis_url:
        for workers, catalog in zip(worker_counts, catalogs, strict=True):
            run_folder = folder / f"ducklake-{workers}"
            env = ducklake_env(run_folder, simulation, postgres, catalog, password, redis_url)
            with celery_workers(workers, 1, f"{redis_url}/0", f"{redis_url}/1", env, run_folder / "celery"):
                seconds = time_backfill(env, days, workers)
            rows.append([size, "DuckLake", workers, seconds, one_file / seconds])
            print(f"{size}: DuckLake, {workers} workers {seconds:.1f} s", flush=True)
    return rows


def time_one_file(folder: Path, simulation: dict, days: int) -> float:
    settings = folder / "one-file-settings.yaml"
    settings.write_text(yaml.safe_dump({"simulation": simulation}))
    database = folder / "one.duckdb"
    env = {
        **os.environ,
        "ANOMALENS_SETTINGS": str(settings),
        "ANOMALENS_DUCKDB_PATH": str(database),
        "DAGSTER_HOME": str(folder / "one_home"),
    }
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    command = [str(Path(sys.executable).with_name("anomalens")), "run", "--days", str(days), "--end-date"]
    command += [last.isoformat(), "--db", str(database), "--settings", str(settings)]
    started = time.perf_counter()
    with open(folder / "one-file.log", "w") as log:
        subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=folder)
    return time.perf_counter() - started


def ducklake_env(folder: Path, simulation: dict, postgres, catalog: str, password: str, redis_url: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "simulation": simulation,
                "storage": {"backend": "ducklake", "catalog": postgres.dsn(catalog), "data_path": str(folder / "lake")},
                "execution": {"executor": "celery", "broker": f"{redis_url}/0", "backend": f"{redis_url}/1"},
            }
        )
    )
    home = folder / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(SCALEOUT_YAML, home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "ANOMALENS_SETTINGS": str(settings),
        "ANOMALENS_CATALOG_PASSWORD": password,
        "ANOMALENS_DAGSTER_PG_HOST": postgres.host,
        "ANOMALENS_DAGSTER_PG_PORT": str(postgres.port),
        "ANOMALENS_DAGSTER_PG_USER": postgres.user,
        "ANOMALENS_DAGSTER_PG_PASSWORD": password,
        "ANOMALENS_DAGSTER_PG_DB": "dagster",
    }


def time_backfill(env: dict, days: int, workers: int) -> float:
    """The backfill in a process of its own, so its spawned runs get `env` and a fresh import."""
    command = [sys.executable, "-m", "anomalens_dagster.scaleout.backfill", "--first", FIRST_DAY.isoformat()]
    command += ["--days", str(days), "--parallel", str(workers), "--run-timeout", "3600"]
    started = time.perf_counter()
    log_path = Path(env["DAGSTER_HOME"]).parent / "backfill.log"
    with open(log_path, "w") as log:
        subprocess.run(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
