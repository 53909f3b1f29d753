"""Schedules: simulate yesterday (demo mode), detect yesterday, retrain weekly (times in UTC)."""

import os

import dagster as dg

from anomalens_dagster.constants import DEMO_MODE_ENV_VAR
from anomalens_dagster.jobs import detect_job, simulate_job, train_job


def _demo_mode() -> bool:
    return os.environ.get(DEMO_MODE_ENV_VAR, "1") != "0"


# Each run targets the day that just ended: a daily partitioned schedule launches the previous
# day's partition.
daily_simulation_schedule = dg.build_schedule_from_partitioned_job(
    simulate_job,
    name="daily_simulation_schedule",
    hour_of_day=0,
    minute_of_hour=15,
    description=f"Simulates yesterday's store traffic. Demo mode: off by default when {DEMO_MODE_ENV_VAR}=0.",
    default_status=dg.DefaultScheduleStatus.RUNNING if _demo_mode() else dg.DefaultScheduleStatus.STOPPED,
)

daily_detection_schedule = dg.build_schedule_from_partitioned_job(
    detect_job,
    name="daily_detection_schedule",
    hour_of_day=1,
    minute_of_hour=0,
    description="Features, scores and anomalies of yesterday, then the consolidated anomalies and the reports.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

weekly_training_schedule = dg.ScheduleDefinition(
    name="weekly_training_schedule",
    job=train_job,
    cron_schedule="30 0 * * 1",
    execution_timezone="UTC",
    description="Retrains the eight detectors every Monday at 00:30 UTC on the latest training window.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

schedules = [daily_simulation_schedule, daily_detection_schedule, weekly_training_schedule]
