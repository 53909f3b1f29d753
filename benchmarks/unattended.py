"""Benchmark: the unattended path against the same work in one process, and fresh data to anomalies.

Usage: .venv/bin/python -m benchmarks.unattended [--repeats 3] [--workdir DIR]

Builds the 7-day demo store in a temporary DuckDB file and Dagster instance (`anomalens run`'s
pipeline), then times a one-day `detect_job`, launch to success, three ways (median of `--repeats`):
in this process with the code location already imported; through `dagster job execute` (a new
process: import included); and through GraphQL against a running dagster-webserver and
dagster-daemon (code location loaded, run queued, launched by the daemon, run worker). Then, with
the daemon still running, drops a delivery of landing files for a day `--repeats` times and measures
how long until that day's anomaly records are written (the `anomalies` partition materialised).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from benchmarks.common import benchmark_folder, print_table

DETECT_DAY_OFFSET = 2  # the day detect_job scores: two days before today, inside the demo's 7 days
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="Keep the DuckDB file and instance here (default: temp).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with benchmark_folder(args.workdir) as folder:
        run(folder, args.repeats)


def run(workdir: Path, repeats: int) -> None:
    from anomalens_dagster.constants import DUCKDB_PATH_ENV_VAR, LANDING_DIR_ENV_VAR
    from anomalens_dagster.instance import DAGSTER_HOME_ENV_VAR, ensure_dagster_home

    os.environ[DUCKDB_PATH_ENV_VAR] = str(workdir / "anomalens.duckdb")
    os.environ[LANDING_DIR_ENV_VAR] = str(workdir / "landing")
    (workdir / "landing").mkdir(exist_ok=True)
    home = ensure_dagster_home(workdir / "dagster_home")
    os.environ[DAGSTER_HOME_ENV_VAR] = str(home)
    today = dt.datetime.now(dt.UTC).date()
    day = (today - dt.timedelta(days=DETECT_DAY_OFFSET)).isoformat()

    import dagster as dg

    from anomalens_dagster.cli import RANGE_END_TAG, RANGE_START_TAG
    from anomalens_dagster.definitions import defs
    from anomalens_dagster.jobs import detect_job, full_pipeline_job

    print("Building the 7-day demo store (the full pipeline, in process)...", flush=True)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with dg.DagsterInstance.get() as instance:
        built = defs.resolve_job_def(full_pipeline_job.name).execute_in_process(
            run_config=quiet,
            instance=instance,
            tags={
                RANGE_START_TAG: (today - dt.timedelta(days=7)).isoformat(),
                RANGE_END_TAG: str(today - dt.timedelta(days=1)),
            },
        )
        assert built.success
        in_process = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = defs.resolve_job_def(detect_job.name).execute_in_process(
                run_config=quiet, instance=instance, partition_key=day
            )
            in_process.append(time.perf_counter() - start)
            assert result.success

    job_execute = []
    dagster = str(Path(sys.executable).with_name("dagster"))
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [dagster, "job", "execute", "-m", "anomalens_dagster.definitions", "-j", detect_job.name]
            + ["--tags", json.dumps({"dagster/partition": day})],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        job_execute.append(time.perf_counter() - start)

    graphql, landing = through_the_daemon(home, workdir, day, today, repeats)

    base = statistics.median(in_process)
    print(f"\nOne-day detect_job ({day}, demo size), launch to success, median of {repeats}:\n")
    print_table(
        ["launched by", "runs (s)", "median s", "x in-process"],
        [
            ("in process (code location imported)", _list(in_process), base, 1.0),
            (
                "dagster job execute",
                _list(job_execute),
                statistics.median(job_execute),
                statistics.median(job_execute) / base,
            ),
            (
                "GraphQL, webserver + daemon",
                _list(graphql),
                statistics.median(graphql),
                statistics.median(graphql) / base,
            ),
        ],
    )
    print(f"\nA delivery landed -> its day's anomaly records written, daemon running, {repeats} drops:\n")
    print_table(["day landed", "seconds to ingested", "seconds to anomalies written"], landing)
    print(
        f"\nmedian {statistics.median(row[2] for row in landing):.1f} s, worst {max(row[2] for row in landing):.1f} s"
    )


def through_the_daemon(home: Path, workdir: Path, day: str, today: dt.date, repeats: int):
    """Times of GraphQL-launched detect_job runs, then of landed deliveries, with webserver and daemon up."""
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    from anomalens_dagster.core.landing import write_landing_sample
    from anomalens_dagster.jobs import detect_job
    from anomalens_dagster_tests.e2e_support import Webserver, dagster_service, free_loopback_port, poll

    dg.DagsterInstance.from_config(str(home)).dispose()  # storage created once, before both services start
    server = Webserver(free_loopback_port())
    env = dict(os.environ)
    web_args = ["-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(server.port)]
    with (
        dagster_service("dagster-daemon", ["run", "-w", "workspace.yaml"], env, workdir) as daemon,
        dagster_service("dagster-webserver", web_args, env, workdir),
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        poll("the webserver", server.server_info, 120)
        poll("the code location", server.loaded_locations, 120)
        poll("the daemon's heartbeat", lambda: instance.get_daemon_heartbeats() or None, 120)
        client = DagsterGraphQLClient("127.0.0.1", port_number=server.port)
        graphql = []
        for _ in range(repeats):
            wait_until_idle(instance, poll)
            start = time.time()
            run_id = client.submit_job_execution(detect_job.name, tags={"dagster/partition": day})
            record = poll(f"run {run_id}", partial(_finished, instance, run_id), 600, interval=0.2)
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, daemon.log_tail()
            graphql.append(record.end_time - start)

        landing = []
        for offset in range(repeats):
            landed_day = today - dt.timedelta(days=offset)
            wait_until_idle(instance, poll)
            staging = workdir / f"staging-{offset}"
            paths = write_landing_sample(staging, [landed_day])
            start = time.time()
            for path in paths:
                path.rename(workdir / "landing" / path.name)
            ingested = poll(
                "the ingest", partial(_materialized_after, instance, "ingested_files", None, start), 300, 0.2
            )
            written = poll(
                f"anomalies of {landed_day}",
                partial(_materialized_after, instance, "anomalies", landed_day.isoformat(), start),
                300,
                interval=0.2,
            )
            landing.append((landed_day.isoformat(), ingested - start, written - start))
    return graphql, landing


def wait_until_idle(instance, poll) -> None:
    """Until no run is queued or in progress for 12 s (automation may still be refreshing days)."""
    import dagster as dg

    active = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}
    quiet = {"since": None}

    def idle():
        if any(run.status in active for run in instance.get_runs(limit=50)):
            quiet["since"] = None
            return None
        quiet["since"] = quiet["since"] or time.monotonic()
        return True if time.monotonic() - quiet["since"] >= 12 else None

    poll("the instance to be idle", idle, 900, interval=1)


def _finished(instance, run_id: str):
    import dagster as dg

    record = instance.get_run_record_by_id(run_id)
    terminal = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    return record if record and record.dagster_run.status in terminal and record.end_time else None


def _materialized_after(instance, asset: str, partition: str | None, after: float) -> float | None:
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None, after_timestamp=after
        ),
        limit=1,
    ).records
    return records[0].timestamp if records else None


def _list(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


if __name__ == "__main__":
    main()
