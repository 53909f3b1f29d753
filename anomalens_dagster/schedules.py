"""Schedules: simulate yesterday's traffic, for a demo only (times in UTC).

A real store must never get simulated rows, so the daily simulation requests a run only when the
settings file says `simulation: {schedule: true}` (the demo's settings do); otherwise each tick is
skipped with the reason. It reads the file through the `settings` resource when the tick is
evaluated, so `anomalens settings set simulation.schedule true` takes effect on the next tick.
`ANOMALENS_DEMO_MODE=0` still stops the schedule altogether (its default status).

Detection and retraining need no schedule: declarative automation (automation.py) refreshes a day
when its store rows change and retrains the detectors on Mondays.
"""

import datetime as dt
import os

import dagster as dg

from anomalens_dagster.configs import SIMULATION_SECTION, SettingsFileError
from anomalens_dagster.constants import DEMO_MODE_ENV_VAR
from anomalens_dagster.jobs import simulate_job
from anomalens_dagster.settings import SettingsFile


def _demo_mode() -> bool:
    return os.environ.get(DEMO_MODE_ENV_VAR, "1") != "0"


@dg.schedule(
    job=simulate_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    description=(
        "Simulates yesterday's store traffic when the settings file says `simulation: {schedule: true}` (a demo); "
        f"skips otherwise. Stopped by default when {DEMO_MODE_ENV_VAR}=0."
    ),
    default_status=dg.DefaultScheduleStatus.RUNNING if _demo_mode() else dg.DefaultScheduleStatus.STOPPED,
)
def daily_simulation_schedule(
    context: dg.ScheduleEvaluationContext, settings: SettingsFile
) -> dg.RunRequest | dg.SkipReason:
    try:
        simulation = settings.sections().get(SIMULATION_SECTION) or {}
    except SettingsFileError as error:
        return dg.SkipReason(f"not simulating: {error}")
    if not simulation.get("schedule", False):
        return dg.SkipReason(
            f"not simulating: {settings.path} does not set simulation.schedule to true (a real store's data comes "
            "from the landing zone; for a demo: `anomalens settings set simulation.schedule true`)"
        )
    yesterday = (context.scheduled_execution_time - dt.timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"simulate:{yesterday}", partition_key=yesterday)


schedules = [daily_simulation_schedule]
