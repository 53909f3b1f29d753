"""Sensors and schedules: evaluated directly, on a real ephemeral instance where they read one."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os

import dagster as dg
import duckdb
import pytest

from anomalens_dagster import schedules as schedules_module
from anomalens_dagster.assets.landing import check_ingest_conserves_rows, ingested_files
from anomalens_dagster.constants import DEFAULT_RESCORE_DAYS, DEMO_MODE_ENV_VAR
from anomalens_dagster.definitions import defs
from anomalens_dagster.jobs import full_pipeline_job, ingest_job, train_job
from anomalens_dagster.resources import LandingZone
from anomalens_dagster.sensors import (
    MODEL_KEYS,
    landing_zone_sensor,
    refresh_after_ingest_sensor,
    rescore_after_new_model_sensor,
    run_failure_log_sensor,
)

# --- landing_zone_sensor ---------------------------------------------------------------------------


def landing_tick(directory, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, resources={"landing": LandingZone(directory=str(directory))})
    return landing_zone_sensor(context)


def requested_files(result: dg.SensorResult) -> list[str]:
    (request,) = result.run_requests
    return request.run_config["ops"][ingested_files.op.name]["config"]["files"]


@pytest.fixture
def landing_dir(tmp_path):
    directory = tmp_path / "landing"
    directory.mkdir()
    return directory


@pytest.fixture
def no_duckdb(monkeypatch):
    """Fails the test if anything opens a DuckDB database while it is active."""

    def refuse(*args, **kwargs):
        raise AssertionError("the landing sensor opened DuckDB")

    monkeypatch.setattr(duckdb, "connect", refuse)


def test_the_landing_sensor_launches_ingest_job():
    assert landing_zone_sensor.job_name == ingest_job.name


def test_the_first_tick_requests_one_ingest_of_exactly_the_landed_files(landing_dir, no_duckdb):
    (landing_dir / "orders-1.csv").write_text("id\n1\n")
    (landing_dir / "user_activities-1.jsonl").write_text("{}\n")
    (landing_dir / ".orders-2.csv.part").write_text("id\n")  # hidden: still being copied
    (landing_dir / "quarantine").mkdir()
    (landing_dir / "quarantine" / "orders-0.csv").write_text("\x00")

    result = landing_tick(landing_dir)

    assert requested_files(result) == ["orders-1.csv", "user_activities-1.jsonl"]
    assert sorted(json.loads(result.cursor)) == ["orders-1.csv", "user_activities-1.jsonl"]
    assert result.run_requests[0].tags["anomalens/landing_files"] == "orders-1.csv,user_activities-1.jsonl"


def test_a_tick_with_nothing_new_skips_and_keeps_the_files_in_the_cursor(landing_dir, no_duckdb):
    (landing_dir / "orders-1.csv").write_text("id\n1\n")
    first = landing_tick(landing_dir)

    second = landing_tick(landing_dir, cursor=first.cursor)

    assert not second.run_requests
    assert second.skip_reason is not None
    assert json.loads(second.cursor) == json.loads(first.cursor)


def test_a_new_file_is_requested_alone(landing_dir, no_duckdb):
    (landing_dir / "orders-1.csv").write_text("id\n1\n")
    first = landing_tick(landing_dir)
    (landing_dir / "order_items-1.csv").write_text("id\n1\n")

    second = landing_tick(landing_dir, cursor=first.cursor)

    assert requested_files(second) == ["order_items-1.csv"]
    assert sorted(json.loads(second.cursor)) == ["order_items-1.csv", "orders-1.csv"]


def test_a_rewritten_file_is_requested_again_under_a_new_run_key(landing_dir, no_duckdb):
    path = landing_dir / "orders-1.csv"
    path.write_text("id\n1\n")
    first = landing_tick(landing_dir)
    path.write_text("id\n1\n2\n")

    second = landing_tick(landing_dir, cursor=first.cursor)

    assert requested_files(second) == ["orders-1.csv"]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_a_file_touched_with_the_same_size_is_requested_again_under_a_new_run_key(landing_dir, no_duckdb):
    path = landing_dir / "orders-1.csv"
    path.write_text("id\n1\n")
    first = landing_tick(landing_dir)
    stat = os.stat(path)
    path.write_text("id\n2\n")  # same size, new content: only the modification time tells
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    second = landing_tick(landing_dir, cursor=first.cursor)

    assert requested_files(second) == ["orders-1.csv"]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_an_identical_evaluation_gives_the_same_run_key_so_dagster_dedupes_it(landing_dir, no_duckdb):
    (landing_dir / "orders-1.csv").write_text("id\n1\n")

    first, again = landing_tick(landing_dir), landing_tick(landing_dir)

    assert first.run_requests[0].run_key == again.run_requests[0].run_key


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_an_empty_or_missing_landing_zone_skips(tmp_path, no_duckdb, state):
    directory = tmp_path / "landing"
    if state == "empty":
        directory.mkdir()

    result = landing_tick(directory, cursor=json.dumps({"orders-1.csv": [1, 1]}))

    assert not result.run_requests
    assert str(directory) in result.skip_reason.skip_message


# --- refresh_after_ingest_sensor -------------------------------------------------------------------


def write_activities(path, timestamps: list[str]) -> None:
    rows = [
        {"id": number, "session_id": f"s-{number}", "timestamp": timestamp, "action_type": "view_page"}
        for number, timestamp in enumerate(timestamps, start=1)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def run_ingest_job(instance, duckdb_resource, landing_dir) -> dg.ExecuteInProcessResult:
    ingest_defs = dg.Definitions(
        assets=[ingested_files],
        asset_checks=[check_ingest_conserves_rows],
        jobs=[ingest_job],
        resources={"duckdb": duckdb_resource, "landing": LandingZone(directory=str(landing_dir))},
    )
    return ingest_defs.resolve_job_def(ingest_job.name).execute_in_process(instance=instance)


def run_status_context(instance, result, event_type: dg.DagsterEventType) -> dg.RunStatusSensorContext:
    (record,) = instance.get_records_for_run(result.run_id, of_type=event_type).records
    return dg.build_run_status_sensor_context(
        sensor_name="sensor_under_test",
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
    )


@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


def test_the_refresh_sensor_launches_detect_job():
    assert refresh_after_ingest_sensor.job_name == "detect_job"


def test_a_successful_ingest_refreshes_its_day_and_the_day_before(instance, duckdb_resource, landing_dir):
    write_activities(landing_dir / "user_activities-1.jsonl", ["2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z"])
    result = run_ingest_job(instance, duckdb_resource, landing_dir)

    requests = refresh_after_ingest_sensor(run_status_context(instance, result, dg.DagsterEventType.RUN_SUCCESS))

    assert [request.partition_key for request in requests] == ["2026-03-01", "2026-03-02"]
    assert len({request.run_key for request in requests}) == 2
    assert all(result.run_id in request.run_key for request in requests)


def test_an_ingest_of_several_days_refreshes_each_once_and_not_before_the_first_partition(
    instance, duckdb_resource, landing_dir
):
    write_activities(
        landing_dir / "user_activities-1.jsonl",
        ["2026-01-01T08:00:00Z", "2026-03-02T10:00:00Z", "2026-03-03T10:00:00Z"],
    )
    result = run_ingest_job(instance, duckdb_resource, landing_dir)

    requests = refresh_after_ingest_sensor(run_status_context(instance, result, dg.DagsterEventType.RUN_SUCCESS))

    assert [request.partition_key for request in requests] == ["2026-01-01", "2026-03-01", "2026-03-02", "2026-03-03"]


def test_an_ingest_that_loaded_nothing_skips(instance, duckdb_resource, landing_dir):
    write_activities(landing_dir / "user_activities-1.jsonl", ["2026-03-02T10:00:00Z"])
    run_ingest_job(instance, duckdb_resource, landing_dir)
    again = run_ingest_job(instance, duckdb_resource, landing_dir)  # same content: a duplicate

    outcome = refresh_after_ingest_sensor(run_status_context(instance, again, dg.DagsterEventType.RUN_SUCCESS))

    assert isinstance(outcome, dg.SkipReason)
    assert again.run_id in outcome.skip_message


# --- rescore_after_new_model_sensor ----------------------------------------------------------------


def record_model_version(instance, job_name: str) -> dg.ExecuteInProcessResult:
    """A new version of the first model, materialised by a stand-in job of that name (no training)."""

    @dg.asset(key=MODEL_KEYS[0])
    def model_version() -> None:
        return None

    stand_in = dg.Definitions(assets=[model_version], jobs=[dg.define_asset_job(job_name, selection=[MODEL_KEYS[0]])])
    return stand_in.resolve_job_def(job_name).execute_in_process(instance=instance)


def test_a_model_version_from_train_job_rescores_the_last_days_then_the_next_tick_skips(instance):
    record_model_version(instance, train_job.name)

    first = rescore_after_new_model_sensor(dg.build_sensor_context(instance=instance))
    second = rescore_after_new_model_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))

    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    expected = [(yesterday - dt.timedelta(days=offset)).isoformat() for offset in reversed(range(DEFAULT_RESCORE_DAYS))]
    assert [request.partition_key for request in first.run_requests] == expected
    assert len({request.run_key for request in first.run_requests}) == DEFAULT_RESCORE_DAYS
    assert int(first.cursor) > 0
    assert not second.run_requests and second.skip_reason is not None
    assert second.cursor == first.cursor


def test_a_model_version_reported_from_outside_any_run_rescores(instance):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=MODEL_KEYS[-1]))

    result = rescore_after_new_model_sensor(dg.build_sensor_context(instance=instance))

    assert len(result.run_requests) == DEFAULT_RESCORE_DAYS


def test_a_model_version_from_the_full_pipeline_does_not_rescore_but_moves_the_cursor(instance):
    record_model_version(instance, full_pipeline_job.name)

    result = rescore_after_new_model_sensor(dg.build_sensor_context(instance=instance))

    assert not result.run_requests and result.skip_reason is not None
    assert int(result.cursor) > 0


# --- run_failure_log_sensor ------------------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_failed_run_is_logged_with_its_id_job_step_and_error(instance):
    @dg.asset
    def broken_table() -> None:
        raise ValueError("the upstream export was empty")

    failed = dg.materialize([broken_table], instance=instance, raise_on_error=False)
    context = run_status_context(instance, failed, dg.DagsterEventType.RUN_FAILURE).for_run_failure()
    handler = ListHandler()
    context.log.addHandler(handler)

    run_failure_log_sensor(context)

    (message,) = handler.messages
    assert failed.run_id in message
    assert failed.dagster_run.job_name in message
    assert "broken_table: " in message
    assert "the upstream export was empty" in message


# --- schedules -------------------------------------------------------------------------------------


def schedule_def(name: str) -> dg.ScheduleDefinition:
    return defs.get_repository_def().get_schedule_def(name)


def evaluate_schedule(name: str, at: dt.datetime) -> list[dg.RunRequest]:
    schedule = schedule_def(name)
    context = dg.build_schedule_context(scheduled_execution_time=at, repository_def=defs.get_repository_def())
    return list(schedule.evaluate_tick(context).run_requests)


@pytest.mark.parametrize(
    ("name", "job_name", "at"),
    [
        ("daily_simulation_schedule", "simulate_job", dt.datetime(2026, 3, 5, 0, 15, tzinfo=dt.UTC)),
        ("daily_detection_schedule", "detect_job", dt.datetime(2026, 3, 5, 1, 0, tzinfo=dt.UTC)),
    ],
)
def test_a_daily_schedule_requests_the_day_that_just_ended(name, job_name, at):
    (request,) = evaluate_schedule(name, at)

    assert request.partition_key == "2026-03-04"
    assert schedule_def(name).job_name == job_name


def test_the_daily_simulation_runs_before_the_daily_detection():
    simulation = schedule_def("daily_simulation_schedule")
    detection = schedule_def("daily_detection_schedule")

    assert (simulation.cron_schedule, detection.cron_schedule) == ("15 0 * * *", "0 1 * * *")
    assert simulation.execution_timezone == detection.execution_timezone == "UTC"


def test_the_weekly_training_schedule_trains_on_mondays():
    schedule = schedule_def("weekly_training_schedule")
    monday = dt.datetime(2026, 3, 2, 0, 30, tzinfo=dt.UTC)

    (request,) = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=monday)).run_requests

    assert schedule.job_name == train_job.name
    assert schedule.cron_schedule == "30 0 * * 1" and schedule.execution_timezone == "UTC"
    assert request.partition_key is None


@pytest.fixture
def reloaded_schedules(monkeypatch):
    """The schedules module re-imported under the test's environment, re-imported again afterwards."""
    yield lambda: importlib.reload(schedules_module)
    monkeypatch.undo()
    importlib.reload(schedules_module)


@pytest.mark.parametrize(
    ("demo_mode", "status"),
    [
        ("0", dg.DefaultScheduleStatus.STOPPED),
        ("1", dg.DefaultScheduleStatus.RUNNING),
        (None, dg.DefaultScheduleStatus.RUNNING),
    ],
)
def test_the_daily_simulation_is_off_by_default_only_outside_demo_mode(
    monkeypatch, reloaded_schedules, demo_mode, status
):
    if demo_mode is None:
        monkeypatch.delenv(DEMO_MODE_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(DEMO_MODE_ENV_VAR, demo_mode)

    module = reloaded_schedules()

    assert module.daily_simulation_schedule.default_status == status
    assert module.daily_detection_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
