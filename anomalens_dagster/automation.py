"""Declarative automation: when derived assets refresh by themselves.

The daemon's `automation_condition_sensor` evaluates these conditions every few seconds and
launches the runs; no hand-written sensor decides which days to refresh. What triggers what:

- a store day changes (simulated, or a landed file: `ingested_files` reports the days it changed)
  -> that day's entity summaries, features (and the neighbouring days', whose windows reach into it),
  scores and anomaly records, as one run per day;
- a day's entity summaries are written -> the features (then scores and records) of the
  `DEFAULT_BASELINE_DAYS` days after it, whose baselines read it, once it is written (see
  `features_refresh`);
- a detector gets a new version -> the scores and records of the last `DEFAULT_RESCORE_DAYS` days;
- new anomaly records -> the consolidated anomalies, the incidents and the reports, once the days
  are written (one run: an unpartitioned asset never shares a run with a day's partition);
- Mondays -> the detectors retrain (and as soon as features exist, when a detector was never trained);
- incidents written -> the alert outbox adds and sends their alerts (its retries: sensors.py).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from anomalens_dagster.constants import (
    CUSTOMER_ACCESS_DAY_SUMMARIES,
    CUSTOMER_DAY_SUMMARIES,
    DEFAULT_RESCORE_DAYS,
    IP_DAY_SUMMARIES,
    MODELS_GROUP,
    PRODUCT_DAY_SUMMARIES,
    STORE_DAY_SUMMARIES,
    STORE_GROUP,
    UNATTENDED_RUN_TAGS,
    WEEKLY_TRAINING_CRON,
)

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
_day_inputs_changed = (
    AutomationCondition.any_deps_updated().ignore(MODELS)
    | (
        AutomationCondition.any_deps_updated().allow(MODELS)
        & AutomationCondition.in_latest_time_window(dt.timedelta(days=DEFAULT_RESCORE_DAYS))
    )
).since_last_handled()

day_summaries_refresh = (_day_inputs_changed & _idle()).with_label("summarise the day when its store rows change")

DAY_SUMMARIES = dg.AssetSelection.assets(
    CUSTOMER_DAY_SUMMARIES, CUSTOMER_ACCESS_DAY_SUMMARIES, IP_DAY_SUMMARIES, PRODUCT_DAY_SUMMARIES, STORE_DAY_SUMMARIES
)

# The window rule. A day's baselines read the summaries of the DEFAULT_BASELINE_DAYS days before it
# (the feature assets map them), so a day whose summaries change makes the following days' features
# stale, and they refresh -- each as its own one-day run, like any other day. The summaries count
# once *written* (by a run that did not also write the features of the day evaluated), not when
# requested: a day's features must read its predecessors' new summaries, and a run per day would
# otherwise race the run writing them. Cost: days after today do not exist yet, so the day being
# filled (today, yesterday) refreshes at most today's features; only a late day refreshes its
# following window, each day of it once however many of its earlier days changed together; a range
# run that writes summaries and features together refreshes nothing more.
_earlier_summaries_written = (
    AutomationCondition.any_deps_match(
        AutomationCondition.newly_updated() & ~AutomationCondition.executed_with_root_target()
    )
    .allow(DAY_SUMMARIES)
    .with_label("an earlier day's summaries were written")
)
_store_days_changed = AutomationCondition.any_deps_updated().ignore(DAY_SUMMARIES)

# Only days whose features exist refresh for an earlier day's summaries: a day never computed (no
# data of its own yet) is computed when its rows arrive, and a backfill of old days would otherwise
# queue a run for each of the 30 empty days after it.
features_refresh = (
    (_store_days_changed | (_earlier_summaries_written & ~AutomationCondition.missing())).since_last_handled() & _idle()
).with_label("refresh the day when its store rows or an earlier day's summaries change")

# A new model re-scores only days that have features: the days of the window with no data stay unscored.
scores_refresh = (_day_inputs_changed & ~AutomationCondition.any_deps_missing() & _idle()).with_label(
    "score the day when its features or the models change"
)

# A day with activities but no orders has no order scores: records are written from what was scored.
records_refresh = (
    _day_inputs_changed
    & ~AutomationCondition.all_deps_match(
        AutomationCondition.missing() & ~AutomationCondition.will_be_requested()
    ).with_label("nothing scored")
    & _idle()
).with_label("write the day's records when its scores change")

STORE = dg.AssetSelection.groups(STORE_GROUP)

# Store days always flow on into the scores and records, so reports that read those wait for them
# instead of running on the store change alone (before any score exists).
detection_summary_refresh = (_deps_written().ignore(STORE).since_last_handled() & _idle()).with_label(
    "refresh after the days it summarises are scored"
)
store_summary_refresh = (_deps_written().since_last_handled() & _idle()).with_label("refresh after the store changes")

model_retraining = (
    (
        AutomationCondition.on_cron(WEEKLY_TRAINING_CRON)
        | (AutomationCondition.missing() & _deps_written()).with_label("never trained, features just written")
    )
    & _idle()
).with_label("retrain weekly")

# Incidents requested in the same tick count, so a new High incident is sent by the run that writes it.
alert_outbox_refresh = (AutomationCondition.any_deps_updated().since_last_handled() & _idle()).with_label(
    "send alerts when incidents are written"
)

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    name="automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=AUTOMATION_SENSOR_INTERVAL_SECONDS,
    run_tags=UNATTENDED_RUN_TAGS,
    # Backfills wait for the backfill daemon's 30-s loop; one run per day starts within seconds.
    emit_backfills=False,
    description=(
        "Refreshes features, scores and anomaly records of every day whose store rows or models changed, then the "
        "consolidated anomalies, incidents and reports; retrains the detectors weekly."
    ),
)
