"""Sensors: files landing and runs failing, the two events no asset's automation condition can see.

How landed data reaches the detections: `landing_zone_sensor` launches `ingest_job` for new or
changed files; the ingest reports a materialisation of each store day it changed, and declarative
automation (automation.py, evaluated by `automation_condition_sensor`) refreshes those days.
"""

import datetime as dt
import json
import os
import time

import dagster as dg

from anomalens_dagster.assets.alerts import NEXT_DUE_METADATA, NO_TARGETS, TARGETS_METADATA
from anomalens_dagster.assets.landing import ingested_files
from anomalens_dagster.automation import automation_condition_sensor
from anomalens_dagster.constants import ALERT_OUTBOX, DEFAULT_ALERT_RETRY_MAX_SECONDS
from anomalens_dagster.core.landing import list_landing_files
from anomalens_dagster.jobs import deliver_alerts_job, ingest_job
from anomalens_dagster.resources import LandingZone

# Part of the latency from a file landing to its anomaly records (issue: within a minute); listing
# a folder every 5 s costs nothing.
LANDING_SENSOR_INTERVAL_SECONDS = 5


# A sensor, not an automation condition: a file appearing in a folder is outside Dagster's asset graph.
@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=LANDING_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches ingest_job for files that are new or changed (size or modification time) in the landing zone. "
        "Lists the folder only: it never opens DuckDB."
    ),
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult:
    seen: dict[str, list[int]] = json.loads(context.cursor) if context.cursor else {}
    current = {path.name: _signature(path) for path in list_landing_files(landing.path)}
    changed = sorted(name for name, signature in current.items() if seen.get(name) != signature)
    if not changed:
        return dg.SensorResult(skip_reason=f"no new or changed files in {landing.path}", cursor=json.dumps(current))
    run_key = "landing:" + ",".join(f"{name}@{current[name][0]}:{current[name][1]}" for name in changed)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                run_config={"ops": {ingested_files.op.name: {"config": {"files": changed}}}},
                tags={"anomalens/landing_files": ",".join(changed)[:4000]},
            )
        ],
        cursor=json.dumps(current),
    )


def _signature(path: os.PathLike) -> list[int]:
    stat = os.stat(path)
    return [stat.st_mtime_ns, stat.st_size]


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes one clear log entry per failed run: the job, the run id, each failed step and its error.",
)
def run_failure_log_sensor(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    steps = [f"{event.step_key}: {_step_error(event)}" for event in context.get_step_failure_events()]
    context.log.error(
        f"Run {run.run_id} of {run.job_name} failed"
        + (f" at step(s) {'; '.join(steps)}" if steps else f": {context.failure_event.message}")
    )


def _step_error(event: dg.DagsterEvent) -> str:
    """The error that failed a step: the user's exception, not Dagster's "Error occurred while executing op" wrapper."""
    error = event.event_specific_data.error if event.event_specific_data else None
    while error is not None and error.cls_name == "DagsterExecutionStepExecutionError" and error.cause is not None:
        error = error.cause
    return error.message.strip() if error is not None else ""


# Due deliveries are looked for every 15 s; the first retry waits 30 s.
ALERT_SENSOR_INTERVAL_SECONDS = 15
# However the last outbox run ended (even killed before it could report), the outbox runs again
# within the longest backoff: a claimed alert whose run died is due again by then.
ALERT_HEARTBEAT_SECONDS = DEFAULT_ALERT_RETRY_MAX_SECONDS


# A sensor, not an automation condition: when the outbox is next due is data (its earliest retry, or
# the moment the store turns stale), reported in the outbox's last materialisation, which no condition
# reads. It reads Dagster's event log only, never DuckDB.
@dg.sensor(
    job=deliver_alerts_job,
    minimum_interval_seconds=ALERT_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches deliver_alerts_job when a failed alert is due for its retry or the store may have gone stale (the "
        "time the alert outbox's last materialisation reported), and at least hourly. Never opens DuckDB."
    ),
)
def alert_delivery_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    records = context.instance.fetch_materializations(dg.AssetKey(ALERT_OUTBOX), limit=1).records
    if not records:
        return dg.SensorResult(skip_reason="the alert outbox was never materialised: nothing waits")
    (record,) = records
    now = time.time()
    heartbeat = record.timestamp + ALERT_HEARTBEAT_SECONDS
    materialization = record.asset_materialization
    metadata = materialization.metadata if materialization else {}
    targets = metadata.get(TARGETS_METADATA)
    if targets is not None and targets.value == NO_TARGETS:
        return dg.SensorResult(skip_reason="the settings named no alert target at the outbox's last run")
    reported = metadata.get(NEXT_DUE_METADATA)
    due = min(reported.value, heartbeat) if reported is not None else heartbeat
    if now < due:
        when = dt.datetime.fromtimestamp(due, dt.UTC).isoformat(timespec="seconds")
        return dg.SensorResult(skip_reason=f"nothing due before {when}")
    # One run per reported due time; past the heartbeat, one per heartbeat period (a failed run is not repeated
    # every tick, and the daemon re-executes it by itself).
    run_key = (
        f"alerts:{record.storage_id}:{due:.0f}"
        if due < heartbeat
        else f"alerts:heartbeat:{now // ALERT_HEARTBEAT_SECONDS:.0f}"
    )
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key)])


sensors = [landing_zone_sensor, automation_condition_sensor, run_failure_log_sensor, alert_delivery_sensor]
