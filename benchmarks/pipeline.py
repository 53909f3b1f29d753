"""Benchmark: the whole pipeline (full_pipeline_job) on the 30-day, ≈1M-activity / 100k-order store.

Usage: .venv/bin/python -m benchmarks.pipeline [--days 30] [--workdir DIR]
Runs the job in this process (in-process executor, a temporary Dagster instance and DuckDB file),
exactly as `anomalens run --days 30` does with the benchmark store's size, and prints per asset
step the seconds between STEP_START and STEP_SUCCESS, the rows it wrote and rows/s, then the wall
time of the run and this process's peak RSS (the whole pipeline runs in it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os

from anomalens_dagster.constants import DUCKDB_PATH_ENV_VAR
from benchmarks.common import benchmark_folder, peak_rss_mb, print_table, stopwatch
from benchmarks.simulate import BENCHMARK_SETTINGS, FIRST_DAY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workdir", default=None, help="Keep the DuckDB file and instance here (default: temp).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with benchmark_folder(args.workdir) as folder:
        os.environ[DUCKDB_PATH_ENV_VAR] = str(folder / "anomalens.duckdb")
        os.environ["DAGSTER_HOME"] = str(folder / "dagster_home")
        run(args.days)


def run(days: int) -> None:
    import dagster as dg

    from anomalens_dagster.cli import RANGE_END_TAG, RANGE_START_TAG, run_config_for
    from anomalens_dagster.definitions import defs
    from anomalens_dagster.instance import ensure_dagster_home
    from anomalens_dagster.jobs import full_pipeline_job

    ensure_dagster_home()
    simulation = dataclasses.asdict(BENCHMARK_SETTINGS)  # the fields of SimulationConfig
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    run_config = run_config_for({"simulation": simulation})
    run_config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    instance = dg.DagsterInstance.get()
    with stopwatch() as wall:
        result = defs.resolve_job_def(full_pipeline_job.name).execute_in_process(
            run_config=run_config,
            instance=instance,
            tags={RANGE_START_TAG: FIRST_DAY.isoformat(), RANGE_END_TAG: last.isoformat()},
        )
    rows = []
    for step, seconds, written in step_timings(result, instance):
        rows.append((step, seconds, written, written / seconds if written and seconds else ""))
    print(
        f"\nWhole pipeline, {days} days from {FIRST_DAY} ({BENCHMARK_SETTINGS.activities_per_day:,} activities and "
        f"{BENCHMARK_SETTINGS.orders_per_day:,} orders a day), one range run, in-process executor:\n"
    )
    print_table(["step", "seconds", "rows written", "rows/s"], rows)
    print(
        f"\nTotal wall time {wall[0]:,.1f} s; sum of steps {sum(r[1] for r in rows):,.1f} s; "
        f"peak RSS {peak_rss_mb():,.0f} MiB"
    )


def step_timings(result, instance) -> list[tuple[str, float, int]]:
    """(step, seconds from start to end, rows written) per step, in execution order."""
    # A range run reports one materialisation per partition, each with the rows of the whole range
    # (`rows_in_range`; `dagster/row_count` for unpartitioned assets): count each asset once.
    written: dict[str, dict[str, int]] = {}
    for event in result.get_asset_materialization_events():
        metadata = event.materialization.metadata
        row_count = metadata.get("rows_in_range") or metadata.get("dagster/row_count")
        per_asset = written.setdefault(event.step_key, {})
        per_asset[event.asset_key.to_user_string()] = int(row_count.value) if row_count else 0
    stats = sorted(instance.get_run_step_stats(result.run_id), key=lambda stat: stat.start_time or 0)
    return [
        (stat.step_key, (stat.end_time or 0) - (stat.start_time or 0), sum(written.get(stat.step_key, {}).values()))
        for stat in stats
    ]


if __name__ == "__main__":
    main()
