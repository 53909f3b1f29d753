"""Declarative automation: when derived assets refresh by themselves.

The daemon's `automation_condition_sensor` evaluates these conditions every few seconds and
launches the runs; no hand-written sensor decides which days to refresh. What triggers what:

- a store day changes (simulated, or a landed file: `ingested_files` reports the days it changed)
  -> that day's features (and the neighbouring days', whose windows reach into it), scores and
  anomaly records, as one run per day;
- a detector gets a new version -> the scores and records of the last `DEFAULT_RESCORE_DAYS` days;
- new anomaly records -> the consolidated anomalies and the reports, once the days are written;
- Mondays -> the detectors retrain (and as soon as features exist, when a detector was never trained).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from anomalens_dagster.constants import DEFAULT_RESCORE_DAYS, DUCKDB_RUN_TAG, MODELS_GROUP, WEEKLY_TRAINING_CRON

AutomationCondition = dg.AutomationCondition
MODELS = dg.AssetSelection.groups(MODELS_GROUP)
AUTOMATION_SENSOR_INTERVAL_SECONDS = 5


def _deps_written() -> dg.AutomationCondition:
    """A dependency was written since the last tick by a run that did not also write this asset.

    Unlike `any_deps_updated`, a dependency merely requested in the same tick does not count, so
    an asset that reads every day waits for the day runs instead of racing them.
    """
    return AutomationCondition.any_deps_match(
        AutomationCondition.newly_updated() & ~AutomationCondition.executed_with_root_target()
    ).with_label("any_deps_written")


def _idle() -> dg.AutomationCondition:
    return ~AutomationCondition.in_progress() & ~AutomationCondition.any_deps_in_progress()


# Any day, not only the latest: a file of events three days old re-scores that day. A dependency
# requested in the same tick counts, so a day's features, scores and records run together.
day_refresh = (
    (
        AutomationCondition.any_deps_updated().ignore(MODELS)
        | (
            AutomationCondition.any_deps_updated().allow(MODELS)
            & AutomationCondition.in_latest_time_window(dt.timedelta(days=DEFAULT_RESCORE_DAYS))
        )
    ).since_last_handled()
    & ~AutomationCondition.any_deps_missing().allow(MODELS)
    & _idle()
).with_label("refresh the day when its inputs change")

summary_refresh = (_deps_written().since_last_handled() & _idle()).with_label(
    "refresh after the days it summarises are written"
)

model_retraining = (
    (
        AutomationCondition.on_cron(WEEKLY_TRAINING_CRON)
        | (AutomationCondition.missing() & _deps_written()).with_label("never trained, features just written")
    )
    & _idle()
).with_label("retrain weekly")

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    name="automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=AUTOMATION_SENSOR_INTERVAL_SECONDS,
    run_tags={DUCKDB_RUN_TAG: "writer", "dagster/max_retries": "2"},
    # Backfills wait for the backfill daemon's 30-s loop; one run per day starts within seconds.
    emit_backfills=False,
    description=(
        "Refreshes features, scores and anomaly records of every day whose store rows or models changed, then the "
        "consolidated anomalies and reports; retrains the detectors weekly."
    ),
)
