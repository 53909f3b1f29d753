"""Sensors: new landing files, ingested days, new model versions and failed runs.

How landed data reaches the detections: `landing_zone_sensor` launches `ingest_job` for new or
changed files; when that run succeeds, `refresh_after_ingest_sensor` launches `detect_job` for every
day the ingest changed and the day before it (a day's activity features look 15 minutes into the
next day). A sensor rather than declarative automation, because the days come from the ingest's
own metadata: Dagster cannot see which partitions a landed file touched.
"""

import datetime as dt
import json
import os

import dagster as dg

from anomalens_dagster.assets.landing import INGESTED_DAYS_METADATA, ingested_files
from anomalens_dagster.assets.models import model_assets
from anomalens_dagster.constants import DEFAULT_RESCORE_DAYS
from anomalens_dagster.core.landing import list_landing_files
from anomalens_dagster.jobs import detect_job, full_pipeline_job, ingest_job
from anomalens_dagster.partitions import daily_partitions
from anomalens_dagster.resources import LandingZone

LANDING_SENSOR_INTERVAL_SECONDS = 30


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


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[ingest_job],
    request_job=detect_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a successful ingest, re-computes features, scores and anomalies of the days it changed.",
)
def refresh_after_ingest_sensor(context: dg.RunStatusSensorContext):
    days = ingested_days(context.instance, context.dagster_run.run_id)
    if not days:
        return dg.SkipReason(f"ingest run {context.dagster_run.run_id} loaded no rows")
    affected = sorted({day for ingested in days for day in (ingested - dt.timedelta(days=1), ingested)})
    valid = set(daily_partitions.get_partition_keys())
    return [
        dg.RunRequest(run_key=f"{context.dagster_run.run_id}:{day}", partition_key=day.isoformat())
        for day in affected
        if day.isoformat() in valid
    ]


def ingested_days(instance: dg.DagsterInstance, run_id: str) -> list[dt.date]:
    """The days whose store rows the ingest run changed, from its materialisation metadata."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    days: set[dt.date] = set()
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is None or materialization.asset_key != ingested_files.key:
            continue
        value = materialization.metadata.get(INGESTED_DAYS_METADATA)
        days.update(dt.date.fromisoformat(day) for day in (value.value if value is not None else []))
    return sorted(days)


MODEL_KEYS = [model.key for model in model_assets]


@dg.sensor(
    job=detect_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        f"When a model gets a new version outside the full pipeline (train_job, the UI), re-scores the last "
        f"{DEFAULT_RESCORE_DAYS} days with it."
    ),
)
def rescore_after_new_model_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    after = int(context.cursor) if context.cursor else 0
    newest, trained = after, []
    for key in MODEL_KEYS:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1, ascending=False
        ).records
        for record in records:
            newest = max(newest, record.storage_id)
            run = context.instance.get_run_by_id(record.run_id)
            if run is None or run.job_name != full_pipeline_job.name:
                trained.append(key.to_user_string())
    if not trained:
        return dg.SensorResult(skip_reason="no new model version since the last tick", cursor=str(newest))
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    days = [yesterday - dt.timedelta(days=offset) for offset in range(DEFAULT_RESCORE_DAYS)]
    context.log.info(f"new versions of {sorted(trained)}: re-scoring {days[-1]} .. {days[0]}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"rescore:{newest}:{day}", partition_key=day.isoformat()) for day in sorted(days)
        ],
        cursor=str(newest),
    )


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


sensors = [landing_zone_sensor, refresh_after_ingest_sensor, rescore_after_new_model_sensor, run_failure_log_sensor]
