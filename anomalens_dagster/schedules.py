"""Schedules: simulate yesterday's traffic in demo mode (times in UTC).

Detection and retraining need no schedule: declarative automation (automation.py) refreshes a day
when its store rows change and retrains the detectors on Mondays.
"""

import datetime as dt
import os

import dagster as dg

from anomalens_dagster.constants import DEMO_MODE_ENV_VAR
from anomalens_dagster.jobs import simulate_job


def _demo_mode() -> bool:
    return os.environ.get(DEMO_MODE_ENV_VAR, "1") != "0"


@dg.schedule(
    job=simulate_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    description=f"Simulates yesterday's store traffic. Demo mode: off by default when {DEMO_MODE_ENV_VAR}=0.",
    default_status=dg.DefaultScheduleStatus.RUNNING if _demo_mode() else dg.DefaultScheduleStatus.STOPPED,
)
def daily_simulation_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    yesterday = (context.scheduled_execution_time - dt.timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"simulate:{yesterday}", partition_key=yesterday)


schedules = [daily_simulation_schedule]
