"""Runs that share the DuckDB file at the same time, on a real Dagster instance.

DuckDB allows one writing process per file. The instance's `duckdb` concurrency pool (limit 1,
from instance.py) must keep every step that opens the file apart, within a run and across runs,
so that no step ever meets the lock; the resource's connect retry is only a logged safety net.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from anomalens_dagster import resources
from anomalens_dagster.assets.store import simulated_store_days, store_catalog, store_checks
from anomalens_dagster.constants import (
    CATEGORIES,
    CUSTOMERS,
    DUCKDB_PATH_ENV_VAR,
    DUCKDB_POOL,
    ORDER_ITEMS,
    ORDERS,
    PRODUCTS,
    SIMULATION_LABELS,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.definitions import defs
from anomalens_dagster.instance import DAGSTER_HOME_ENV_VAR, ensure_dagster_home
from anomalens_dagster.resources import LOCK_ERROR, AnomaLensDuckDB
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS, SMALL_SIMULATION
from anomalens_dagster_tests.e2e_support import dagster_service, poll

REPO = Path(__file__).resolve().parents[1]
FIRST_DAY, LAST_DAY = "2026-03-01", "2026-03-14"
BACKFILL_DAYS = [f"2026-03-{day:02d}" for day in range(1, 15)]
DAY_TABLES = (ORDERS, ORDER_ITEMS, USER_ACTIVITIES, SIMULATION_LABELS)
CATALOG_TABLES = (CATEGORIES, PRODUCTS, CUSTOMERS)
LOCK_MESSAGES = (LOCK_ERROR, "Conflicting lock")
CLI_TIMEOUT_SECONDS = 240
# Runs execute in one process now, so a small store is written in about a second: a busier one keeps
# the first run writing while the second starts.
BUSY_SIMULATION = {**SMALL_SIMULATION, "activities_per_day": 20_000, "orders_per_day": 1_000}


@pytest.fixture
def instance(tmp_path, monkeypatch) -> Iterator[dg.DagsterInstance]:
    """A fresh persistent instance (the project's dagster.yaml) and a DuckDB file, both in tmp_path."""
    monkeypatch.setenv(DAGSTER_HOME_ENV_VAR, str(tmp_path / "dagster_home"))
    monkeypatch.setenv(DUCKDB_PATH_ENV_VAR, str(tmp_path / "shop.duckdb"))
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        yield instance


def start_materialize(log_path: Path, select: tuple[str, ...], op_name: str, *partition_args: str) -> subprocess.Popen:
    """`dagster asset materialize` in its own process (and session), as a user starts it."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    run_config = {"ops": {op_name: {"config": BUSY_SIMULATION}}}
    with log_path.open("w") as log:
        return subprocess.Popen(
            [dagster, "asset", "materialize", "-m", "anomalens_dagster.definitions", "--select", ",".join(select)]
            + [*partition_args, "--config-json", json.dumps(run_config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def started_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """A run of the instance that is executing now, if any."""
    return next(iter(instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))), None)


def wait_all(processes: dict[str, subprocess.Popen], deadline: float) -> None:
    """Wait for every process; on a timeout or an error, stop them and their step processes."""
    try:
        for process in processes.values():
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """When each step of the run started and succeeded (every step must have done both)."""
    starts, ends = {}, {}
    for event in instance.all_logs(run_id):
        if event.dagster_event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = event.timestamp
        elif event.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS:
            ends[event.step_key] = event.timestamp
    assert starts.keys() == ends.keys(), f"run {run_id}: steps started {sorted(starts)}, succeeded {sorted(ends)}"
    return {step: (starts[step], ends[step]) for step in starts}


def event_texts(instance: dg.DagsterInstance, run_id: str) -> Iterator[str]:
    """Every message of the run, and the data (errors included) of every Dagster event."""
    for event in instance.all_logs(run_id):
        yield event.user_message
        if event.dagster_event is not None:
            yield repr(event.dagster_event.event_specific_data)


def store_rows(database: str | Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {STORE_SCHEMA}.{table} ORDER BY ALL").fetchall()
            for table in (*CATALOG_TABLES, *DAY_TABLES)
        }


def single_process_store(database: Path) -> dict[str, list[tuple]]:
    """The same catalog and days, built by one in-process run with nothing else running."""
    simulation = {"config": BUSY_SIMULATION}
    result = dg.materialize(
        [store_catalog, simulated_store_days],
        resources={"duckdb": AnomaLensDuckDB(database=str(database)), "settings": DEFAULT_SETTINGS},
        run_config={"ops": {store_catalog.op.name: simulation, simulated_store_days.op.name: simulation}},
        tags={"dagster/asset_partition_range_start": FIRST_DAY, "dagster/asset_partition_range_end": LAST_DAY},
    )
    assert result.success
    return store_rows(database)


@pytest.mark.slow
@pytest.mark.timeout(CLI_TIMEOUT_SECONDS + 60)
def test_a_14_day_backfill_and_a_run_started_with_it_share_duckdb_without_a_lock_failure(instance, tmp_path):
    # The backfill is one run over the 14 days, as the UI launches it (the daily store assets have a
    # single-run backfill policy), executed in its process step after step. Once it has started, a
    # second run rebuilds the catalog and checks it, in this test's process: a second `dagster`
    # process would take longer to start than the backfill takes to write the small store.
    processes = {
        "backfill": start_materialize(
            tmp_path / "backfill.log",
            DAY_TABLES,
            simulated_store_days.op.name,
            "--partition-range",
            f"{FIRST_DAY}...{LAST_DAY}",
        )
    }
    poll("the backfill run to start", lambda: started_run(instance), CLI_TIMEOUT_SECONDS)
    catalog = dg.materialize(
        [store_catalog, *store_checks],
        selection=list(store_catalog.keys),
        resources={"duckdb": AnomaLensDuckDB(database=os.environ[DUCKDB_PATH_ENV_VAR]), "settings": DEFAULT_SETTINGS},
        run_config={"ops": {store_catalog.op.name: {"config": BUSY_SIMULATION}}},
        instance=instance,
    )
    assert catalog.success
    wait_all(processes, deadline=time.monotonic() + CLI_TIMEOUT_SECONDS)
    for name, process in processes.items():
        assert process.returncode == 0, (tmp_path / f"{name}.log").read_text()[-4_000:]

    records = instance.get_run_records()
    assert len(records) == 2
    assert {record.dagster_run.status for record in records} == {dg.DagsterRunStatus.SUCCESS}
    run_ids = [record.dagster_run.run_id for record in records]
    (backfill,) = [r for r in records if r.dagster_run.tags.get("dagster/asset_partition_range_end") == LAST_DAY]
    assert backfill.dagster_run.tags["dagster/asset_partition_range_start"] == FIRST_DAY
    for run_id in run_ids:
        assert any(text.startswith("Executing steps in process") for text in event_texts(instance, run_id))

    # No step failed, was retried or waited on the file's lock (the resource logs every wait).
    for run_id in run_ids:
        failures = instance.get_records_for_run(
            run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY}
        ).records
        assert not failures, f"run {run_id}: {[f.event_log_entry.user_message for f in failures]}"
        met_lock = [text for text in event_texts(instance, run_id) if any(m in text for m in LOCK_MESSAGES)]
        assert not met_lock, f"run {run_id} met the DuckDB lock: {met_lock[:3]}"

    # The runs were in progress at the same time...
    (first_start, first_end), (second_start, second_end) = [(r.start_time, r.end_time) for r in records]
    assert first_start < second_end and second_start < first_end

    # ...and the pool, not luck, kept their DuckDB steps apart: every step is in the pool, no two
    # steps (of one run or of both) ever ran at the same time, and some had to wait for the slot.
    pools = {node.name: node.definition.pool for node in defs.resolve_implicit_global_asset_job_def().graph.nodes}
    intervals = sorted(
        (start, end, run_id, step)
        for run_id in run_ids
        for step, (start, end) in step_intervals(instance, run_id).items()
    )
    steps = [step for *_, step in intervals]
    assert {simulated_store_days.op.name, store_catalog.op.name} < set(steps)  # and the checks of both
    assert {pools[step] for step in steps} == {DUCKDB_POOL}
    for earlier, later in zip(intervals, intervals[1:], strict=False):
        assert later[0] >= earlier[1], f"steps {earlier[2:]} and {later[2:]} had DuckDB open at the same time"
    waits = [
        text
        for run_id in run_ids
        for text in event_texts(instance, run_id)
        if text.startswith(f"Step blocked by limit for pool {DUCKDB_POOL}")
    ]
    assert waits
    pool = instance.event_log_storage.get_concurrency_info(DUCKDB_POOL)
    assert (pool.slot_count, pool.active_slot_count, pool.pending_step_count) == (1, 0, 0)

    # Every day is in the store exactly once, row for row as one process alone builds it.
    written = store_rows(os.environ[DUCKDB_PATH_ENV_VAR])
    with duckdb.connect(os.environ[DUCKDB_PATH_ENV_VAR], read_only=True) as conn:
        days = conn.execute(
            f"SELECT DISTINCT CAST(created_at AS DATE)::VARCHAR FROM {STORE_SCHEMA}.{ORDERS} ORDER BY 1"
        )
        assert [day for (day,) in days.fetchall()] == BACKFILL_DAYS
    expected = single_process_store(tmp_path / "reference.duckdb")
    for table in (*CATALOG_TABLES, *DAY_TABLES):
        assert len(written[table]) == len(expected[table]) > 0, table
        assert written[table] == expected[table], f"{STORE_SCHEMA}.{table} differs from a single-process build"


QUEUED_DAYS = ("2026-03-01", "2026-03-14")
CLI_DAYS = ("2026-03-15", "2026-03-21")


def range_tags(days: tuple[str, str]) -> str:
    return json.dumps({"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[1]})


# e2e: the daemon's queued run and the CLI run must overlap in time, which a machine busy with other
# tests can prevent, so `make test` runs it in its pass alone.
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(CLI_TIMEOUT_SECONDS + 120)
def test_a_queued_run_and_a_cli_run_at_the_same_time_meet_no_lock(instance, tmp_path):
    # The queued run goes through the instance's run queue and the daemon's run worker, as the UI
    # and automation launch runs; `dagster job execute` bypasses the queue, as `anomalens run` does.
    def simulation(config: dict) -> str:
        return json.dumps(
            {"ops": {op: {"config": config} for op in (store_catalog.op.name, simulated_store_days.op.name)}}
        )

    # The queued run writes three times as much, so it still writes when the CLI run's process has started.
    queued_simulation = simulation({**BUSY_SIMULATION, "activities_per_day": 60_000, "orders_per_day": 3_000})
    config_file = tmp_path / "simulation.json"  # `dagster job execute` reads config from files only
    config_file.write_text(simulation(BUSY_SIMULATION))
    dagster = str(Path(sys.executable).with_name("dagster"))
    env = {**os.environ, DAGSTER_HOME_ENV_VAR: str(instance.root_directory)}
    with dagster_service("dagster-daemon", ["run", "-w", "workspace.yaml"], env, tmp_path) as daemon:
        launch = subprocess.run(
            [dagster, "job", "launch", "-w", "workspace.yaml", "-j", "simulate_job"]
            + ["--tags", range_tags(QUEUED_DAYS), "--config-json", queued_simulation],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert launch.returncode == 0, launch.stdout + launch.stderr
        poll("the queued run to start", lambda: started_run(instance), CLI_TIMEOUT_SECONDS)
        cli = subprocess.run(
            [dagster, "job", "execute", "-m", "anomalens_dagster.definitions", "-j", "simulate_job"]
            + ["--tags", range_tags(CLI_DAYS), "--config", str(config_file)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
        )
        assert cli.returncode == 0, cli.stdout[-4000:] + cli.stderr[-4000:]

        def both_finished() -> list | None:
            records = [r for r in instance.get_run_records() if r.dagster_run.job_name == "simulate_job"]
            done = len(records) == 2 and all(r.dagster_run.is_finished for r in records)
            return records if done else None

        records = poll("the queued and the CLI run to finish", both_finished, CLI_TIMEOUT_SECONDS)
        every_run = [record.dagster_run.run_id for record in instance.get_run_records()]

    statuses = {
        record.dagster_run.tags["dagster/asset_partition_range_start"]: record.dagster_run.status for record in records
    }
    assert statuses == {QUEUED_DAYS[0]: dg.DagsterRunStatus.SUCCESS, CLI_DAYS[0]: dg.DagsterRunStatus.SUCCESS}, (
        daemon.log_tail()
    )
    (queued,) = [r for r in records if r.dagster_run.tags["dagster/asset_partition_range_start"] == QUEUED_DAYS[0]]
    assert queued.dagster_run.tags.get("anomalens/duckdb") == "writer"  # the tag the run queue limits
    (first_start, first_end), (second_start, second_end) = [(r.start_time, r.end_time) for r in records]
    assert first_start < second_end and second_start < first_end, "the runs did not overlap"
    # Neither run, nor any run automation started meanwhile, waited on the file's lock.
    for run_id in every_run:
        met_lock = [text for text in event_texts(instance, run_id) if any(m in text for m in LOCK_MESSAGES)]
        assert not met_lock, f"run {run_id} met the DuckDB lock: {met_lock[:3]}"
    with duckdb.connect(os.environ[DUCKDB_PATH_ENV_VAR], read_only=True) as conn:
        (days,) = conn.execute(
            f"SELECT count(DISTINCT CAST(created_at AS DATE)) FROM {STORE_SCHEMA}.{ORDERS}"
        ).fetchone()
    assert days == 21


# --- The resource's connect retry -----------------------------------------------------------------


HOLD_FILE_OPEN = """
import sys, time, duckdb
with duckdb.connect(sys.argv[1]):
    print("open", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def file_held_by_another_process(db_path) -> Iterator[str]:
    """The DuckDB file, kept open for 1.5 s by another process, as another writer would."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_FILE_OPEN, str(db_path), "1.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        yield str(db_path)
    finally:
        holder.wait(timeout=60)


def test_a_locked_file_is_retried_with_a_warning_in_the_run_log_until_it_is_free(file_held_by_another_process):
    @dg.asset
    def reads_the_file(duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
        with duckdb.get_connection() as conn:
            return dg.MaterializeResult(metadata={"answer": conn.execute("SELECT 42").fetchone()[0]})

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [reads_the_file],
            resources={"duckdb": AnomaLensDuckDB(database=file_held_by_another_process)},
            instance=instance,
        )
        messages = [event.user_message for event in instance.all_logs(result.run_id)]

    assert result.success
    retries = [message for message in messages if LOCK_ERROR in message]
    assert retries and retries[0].startswith(f"DuckDB file '{file_held_by_another_process}' is locked"), messages
    assert "retry 1 of" in retries[0]


def test_a_file_locked_for_longer_than_the_retries_fails_with_what_to_do(file_held_by_another_process, monkeypatch):
    monkeypatch.setattr(resources, "LOCK_RETRY_DELAYS_SECONDS", (0.1, 0.1))

    with pytest.raises(duckdb.IOException, match=f"(?s)through 3 attempts.*'{DUCKDB_POOL}' concurrency pool"):
        with AnomaLensDuckDB(database=file_held_by_another_process).get_connection():
            pass


def test_a_reader_waits_for_a_writer_then_reads_without_taking_the_write_lock(file_held_by_another_process):
    with AnomaLensDuckDB(database=file_held_by_another_process).read_connection() as conn:
        assert conn.execute("SELECT 42").fetchone()[0] == 42
        with pytest.raises(duckdb.Error, match="read-only"):
            conn.execute("CREATE TABLE t (i INTEGER)")


def test_a_reader_locked_out_for_longer_than_its_retries_fails_saying_so(file_held_by_another_process, monkeypatch):
    monkeypatch.setattr(resources, "READ_RETRY_DELAYS_SECONDS", (0.1, 0.1))

    with pytest.raises(duckdb.IOException, match="stayed locked by another process through 3 attempts"):
        with AnomaLensDuckDB(database=file_held_by_another_process).read_connection():
            pass
