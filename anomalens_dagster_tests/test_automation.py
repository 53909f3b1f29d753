"""Sensors, schedules and automation conditions: evaluated directly, on a real ephemeral instance."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import warnings

import dagster as dg
import duckdb
import pytest
import yaml

from anomalens_dagster import schedules as schedules_module
from anomalens_dagster.assets.landing import check_ingest_conserves_rows, ingested_files
from anomalens_dagster.assets.models import model_assets
from anomalens_dagster.constants import (
    ACTIVITY_FEATURES,
    ACTIVITY_SCORES,
    ANOMALIES,
    ANOMALY_SUMMARY,
    CONSOLIDATED_ANOMALIES,
    DEFAULT_BASELINE_DAYS,
    DEFAULT_RESCORE_DAYS,
    DEMO_MODE_ENV_VAR,
    DUCKDB_RUN_TAG,
    ORDER_FEATURES,
    ORDER_SCORES,
    USER_ACTIVITIES,
)
from anomalens_dagster.definitions import defs
from anomalens_dagster.jobs import ingest_job
from anomalens_dagster.resources import LandingZone
from anomalens_dagster.sensors import landing_zone_sensor, run_failure_log_sensor
from anomalens_dagster.settings import SettingsFile
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS

MODEL_KEYS = [model.key for model in model_assets]

# --- landing_zone_sensor ---------------------------------------------------------------------------


def landing_tick(directory, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, resources={"landing": LandingZone(directory=str(directory))})
    return landing_zone_sensor(context)


def requested_files(result: dg.SensorResult) -> list[str]:
    (request,) = result.run_requests
    return request.run_config["ops"][ingested_files.op.name]["config"]["files"]


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


# --- declarative automation: what refreshes when ---------------------------------------------------


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
        resources={
            "duckdb": duckdb_resource,
            "landing": LandingZone(directory=str(landing_dir)),
            "settings": DEFAULT_SETTINGS,
        },
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


class AutomationTicks:
    """Successive evaluations of the code location's automation conditions, as the daemon's sensor makes them."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor = None

    def tick(self) -> dg.EvaluateAutomationConditionsResult:
        result = dg.evaluate_automation_conditions(defs=defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return result


def requested_days(result, asset: str) -> list[str]:
    return sorted(result.get_requested_partitions(dg.AssetKey(asset)))


def days_ago(days: int) -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)


@pytest.fixture
def ticks_with_trained_models(instance) -> AutomationTicks:
    """Automation ticks on an instance where every detector has a version, and nothing is pending."""
    for key in MODEL_KEYS:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
    ticks = AutomationTicks(instance)
    ticks.tick()
    assert ticks.tick().total_requested == 0
    return ticks


def test_a_file_of_events_three_days_old_refreshes_that_day_and_its_neighbours_only(
    instance, ticks_with_trained_models, duckdb_resource, landing_dir
):
    day = days_ago(3)
    write_activities(landing_dir / "user_activities-1.jsonl", [f"{day}T10:00:00Z", f"{day}T11:00:00Z"])
    run_ingest_job(instance, duckdb_resource, landing_dir)

    result = ticks_with_trained_models.tick()

    neighbours = [(day + dt.timedelta(days=offset)).isoformat() for offset in (-1, 0, 1)]
    assert requested_days(result, USER_ACTIVITIES) == []
    assert requested_days(result, ACTIVITY_FEATURES) == neighbours
    assert requested_days(result, ACTIVITY_SCORES) == neighbours
    assert requested_days(result, ANOMALIES) == neighbours
    assert requested_days(result, ORDER_FEATURES) == []
    assert result.get_num_requested(dg.AssetKey(CONSOLIDATED_ANOMALIES)) == 0  # waits for the days to be written
    (store_day,) = instance.fetch_materializations(dg.AssetKey(USER_ACTIVITIES), limit=10).records
    assert store_day.partition_key == day.isoformat()  # the ingest reported the day it changed, naming the file
    assert store_day.asset_materialization.metadata["file"].value == "user_activities-1.jsonl"
    assert ticks_with_trained_models.tick().total_requested == 0


def test_todays_events_are_scored_today(instance, ticks_with_trained_models, duckdb_resource, landing_dir):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None) - dt.timedelta(minutes=1)
    write_activities(landing_dir / "user_activities-1.jsonl", [now.isoformat() + "Z"])
    run_ingest_job(instance, duckdb_resource, landing_dir)

    result = ticks_with_trained_models.tick()

    assert now.date().isoformat() in requested_days(result, ANOMALIES)


def test_a_new_model_version_rescores_the_recent_days_that_have_features_once(instance, ticks_with_trained_models):
    model = MODEL_KEYS[-1]
    entity = model.path[0].split("_")[0]
    features, scores = (ACTIVITY_FEATURES, ACTIVITY_SCORES) if entity == "activity" else (ORDER_FEATURES, ORDER_SCORES)
    featured = [days_ago(offset).isoformat() for offset in (DEFAULT_RESCORE_DAYS + 3, 5, 2, 1)]
    for day in featured:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=features, partition=day))
    ticks_with_trained_models.tick()  # the feature days themselves re-score, as a landed file would
    assert ticks_with_trained_models.tick().total_requested == 0  # the daemon ticks every few seconds
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=model))

    first = ticks_with_trained_models.tick()

    # Of the last DEFAULT_RESCORE_DAYS days, those with features; days without data stay unscored.
    assert requested_days(first, scores) == sorted(featured[1:])
    assert requested_days(first, ANOMALIES) == sorted(featured[1:])
    assert ticks_with_trained_models.tick().total_requested == 0


def test_written_anomaly_records_refresh_the_consolidation_and_reports_on_the_next_tick(
    instance, ticks_with_trained_models
):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=ANOMALIES, partition=days_ago(1).isoformat()))

    result = ticks_with_trained_models.tick()

    assert result.get_num_requested(dg.AssetKey(CONSOLIDATED_ANOMALIES)) == 1
    assert result.get_num_requested(dg.AssetKey(ANOMALY_SUMMARY)) == 1
    assert result.get_num_requested(dg.AssetKey("incidents")) == 1


def test_detectors_never_trained_are_trained_once_features_are_written(instance):
    ticks = AutomationTicks(instance)
    ticks.tick()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=ACTIVITY_FEATURES, partition=days_ago(1).isoformat())
    )

    result = ticks.tick()

    trained = {key for key in MODEL_KEYS if result.get_num_requested(key)}
    assert trained == {key for key in MODEL_KEYS if key.path[0].startswith("activity")}


def test_the_automation_sensor_runs_by_default_and_tags_its_runs_as_duckdb_writers():
    sensor = defs.resolve_sensor_def("automation_condition_sensor")

    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.run_tags[DUCKDB_RUN_TAG] == "writer"
    assert sensor.minimum_interval_seconds <= 10


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


def simulation_settings(tmp_path, simulation: dict | None) -> SettingsFile:
    """The settings resource over a file holding `simulation` as its simulation section (None: no file)."""
    path = tmp_path / "settings.yaml"
    if simulation is not None:
        path.write_text(yaml.safe_dump({"simulation": simulation}))
    return SettingsFile(path=str(path))


def test_the_daily_simulation_simulates_the_day_that_just_ended_when_the_settings_say_so(tmp_path):
    schedule = schedule_def("daily_simulation_schedule")
    at = dt.datetime(2026, 3, 5, 0, 15, tzinfo=dt.UTC)

    context = dg.build_schedule_context(
        scheduled_execution_time=at,
        repository_def=defs.get_repository_def(),
        resources={"settings": simulation_settings(tmp_path, {"schedule": True})},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (request,) = schedule.evaluate_tick(context).run_requests

    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]  # no deprecated schedule builder

    assert request.partition_key == "2026-03-04"
    assert schedule.job_name == "simulate_job"
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("15 0 * * *", "UTC")


@pytest.mark.parametrize("simulation", [None, {}, {"schedule": False, "seed": 3}])
def test_the_daily_simulation_skips_with_the_reason_unless_the_settings_file_turns_it_on(tmp_path, simulation):
    schedule = schedule_def("daily_simulation_schedule")
    settings = simulation_settings(tmp_path, simulation)
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2026, 3, 5, 0, 15, tzinfo=dt.UTC), resources={"settings": settings}
    )

    result = schedule.evaluate_tick(context)

    assert not result.run_requests
    assert "does not set simulation.schedule to true" in result.skip_message


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


# --- the baseline window rule: a day's summaries refresh the features of the days after it ----------

SUMMARY_KEYS = [
    "customer_day_summaries",
    "customer_access_day_summaries",
    "ip_day_summaries",
    "product_day_summaries",
    "store_day_summaries",
]


def write_summaries(instance, day: dt.date) -> None:
    """As a run of `entity_day_summaries` for `day` reports it: the five tables together."""
    for key in SUMMARY_KEYS:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=day.isoformat()))


def write_features(instance, days: list[str]) -> None:
    """As earlier runs left them: the days' features exist (only those refresh for an earlier day)."""
    for key in (ACTIVITY_FEATURES, ORDER_FEATURES):
        for day in days:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=day))


def days_between(first: dt.date, last: dt.date) -> list[str]:
    return [(first + dt.timedelta(days=k)).isoformat() for k in range((last - first).days + 1)]


def test_a_changed_store_day_is_summarised_and_the_following_days_refresh_once_its_summaries_are_written(
    instance, ticks_with_trained_models
):
    day = days_ago(3)
    write_features(instance, days_between(day - dt.timedelta(days=1), days_ago(0)))
    ticks_with_trained_models.tick()  # the refreshes those writes start themselves
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=USER_ACTIVITIES, partition=day.isoformat()))

    landed = ticks_with_trained_models.tick()

    assert all(requested_days(landed, key) == [day.isoformat()] for key in SUMMARY_KEYS)
    # The following days wait for the summaries to be written (a run per day would race them).
    assert requested_days(landed, ACTIVITY_FEATURES) == days_between(
        day - dt.timedelta(days=1), day + dt.timedelta(days=1)
    )
    assert requested_days(landed, ORDER_FEATURES) == []
    assert ticks_with_trained_models.tick().total_requested == 0  # the daemon ticks every few seconds
    write_summaries(instance, day)

    summarised = ticks_with_trained_models.tick()

    following = days_between(day + dt.timedelta(days=1), days_ago(0))
    assert requested_days(summarised, ACTIVITY_FEATURES) == following
    assert requested_days(summarised, ORDER_FEATURES) == following
    assert requested_days(summarised, ACTIVITY_SCORES) == following  # features flow on into scores and records
    assert all(requested_days(summarised, key) == [] for key in SUMMARY_KEYS)
    assert ticks_with_trained_models.tick().total_requested == 0


def test_a_late_day_refreshes_exactly_the_days_whose_baseline_window_holds_it(instance, ticks_with_trained_models):
    late = days_ago(40)
    window = days_between(late + dt.timedelta(days=1), late + dt.timedelta(days=DEFAULT_BASELINE_DAYS))
    never_computed = window.pop(5)  # a day whose rows never arrived: it has no features to refresh
    write_features(instance, window)
    ticks_with_trained_models.tick()  # the refreshes those writes start themselves
    ticks_with_trained_models.tick()

    write_summaries(instance, late)
    result = ticks_with_trained_models.tick()

    assert never_computed not in requested_days(result, ORDER_FEATURES)
    assert requested_days(result, ORDER_FEATURES) == window
    assert requested_days(result, ACTIVITY_FEATURES) == window
    assert requested_days(result, ORDER_SCORES) == window
