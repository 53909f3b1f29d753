"""The code location loads, and every job, schedule, sensor and check resolves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from anomalens_dagster.constants import DUCKDB_RUN_TAG
from anomalens_dagster.definitions import OPS_BY_SETTINGS_SECTION, defs

REPO = Path(__file__).resolve().parents[1]


def test_every_job_resolves_and_the_issue_jobs_exist():
    job_names = {job.name for job in defs.jobs}
    assert {
        "simulate_job",
        "ingest_job",
        "train_job",
        "detect_job",
        "clear_anomalies_job",
        "full_pipeline_job",
        "record_feedback_job",
        "apply_thresholds_job",
        "deliver_alerts_job",
    } <= job_names
    for name in job_names:
        assert defs.resolve_job_def(name) is not None


def test_every_schedule_and_sensor_resolves_and_targets_a_defined_job():
    repository = defs.get_repository_def()
    job_names = {job.name for job in repository.get_all_jobs()}
    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}
    sensors = {sensor.name: sensor for sensor in repository.sensor_defs}

    assert set(schedules) == {"daily_simulation_schedule"}
    assert set(sensors) == {
        "landing_zone_sensor",
        "automation_condition_sensor",
        "run_failure_log_sensor",
        "alert_delivery_sensor",
    }
    for schedule in schedules.values():
        assert schedule.job_name in job_names
    for sensor in sensors.values():
        assert all(target.job_name in job_names for target in sensor.targets if target.has_job_def)


def test_every_derived_asset_refreshes_by_an_automation_condition():
    asset_graph = defs.get_repository_def().asset_graph
    derived = [
        key
        for key in asset_graph.get_all_asset_keys()
        if asset_graph.get(key).group_name in {"features", "models", "detections", "reports"}
    ]
    assert (
        len(derived) == 27
    )  # 19 + incidents, threshold_calibration, the alert outbox and the five entity day summaries
    assert all(asset_graph.get(key).automation_condition is not None for key in derived)


def test_every_job_runs_in_one_process_and_is_tagged_as_a_duckdb_writer():
    for job in defs.get_repository_def().get_all_jobs():
        assert job.executor_def.name == "in_process", job.name
        if not job.name.startswith("__"):
            assert job.tags.get(DUCKDB_RUN_TAG) == "writer", job.name


def test_every_asset_check_targets_a_defined_asset():
    repository = defs.get_repository_def()
    asset_keys = set(repository.asset_graph.get_all_asset_keys())
    check_keys = list(repository.asset_graph.asset_check_keys)
    assert check_keys
    assert all(key.asset_key in asset_keys for key in check_keys)


def test_every_asset_touching_duckdb_is_in_the_duckdb_pool():
    repository = defs.get_repository_def()
    for assets_def in repository.asset_graph.assets_defs:
        if assets_def.is_executable:
            assert assets_def.op.pool == "duckdb", assets_def.key


def test_every_asset_has_a_description_the_ui_can_show():
    repository = defs.get_repository_def()
    for key in repository.asset_graph.get_all_asset_keys():
        spec = repository.asset_graph.get(key)
        assert spec.description, key


def test_settings_sections_name_ops_that_exist():
    op_names = {assets_def.op.name for assets_def in defs.get_repository_def().asset_graph.assets_defs}
    for ops in OPS_BY_SETTINGS_SECTION.values():
        assert {op_name for op_name, _ in ops} <= op_names


def test_dagster_definitions_validate_accepts_the_workspace():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_loading_the_code_location_does_not_import_tensorflow():
    probe = "import sys, anomalens_dagster.definitions; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
