"""Jobs: named selections of assets that schedules, sensors, the CLI and the UI launch."""

from __future__ import annotations

import dagster as dg

from anomalens_dagster.assets.detections import clear_anomalies
from anomalens_dagster.assets.feedback import apply_thresholds, record_feedback
from anomalens_dagster.constants import (
    ALERT_OUTBOX,
    DETECTIONS_GROUP,
    DUCKDB_WRITER_TAGS,
    FEATURES_GROUP,
    MODELS_GROUP,
    OPS_GROUP,
    REPORTS_GROUP,
    STORE_GROUP,
    UNATTENDED_RUN_TAGS,
)

# Every job writes the DuckDB file, so every job carries DUCKDB_WRITER_TAGS: the instance's run queue
# runs one such run at a time (dagster.yaml), and each run executes its steps in one process (the
# Definitions' in-process executor): the `duckdb` pool serialises DuckDB steps anyway, so a process
# per step only added 5-12 s of start-up to each of them.
# Schedules, sensors and automation launch runs unattended (UNATTENDED_RUN_TAGS); a run that fails (a DuckDB file held by another
# process, a worker killed) is re-executed from the failed step by the daemon. The landing sensor
# counts a file as seen once it requested its ingest, so without a retry a failed ingest would wait
# for the file to change. Every step replaces what it writes atomically, so re-running is safe.

simulate_job = dg.define_asset_job(
    name="simulate_job",
    selection=dg.AssetSelection.groups(STORE_GROUP),
    description="Simulate the store: catalog and customers, then the orders, items, activities and labels of each day.",
    tags=UNATTENDED_RUN_TAGS,
)

ingest_job = dg.define_asset_job(
    name="ingest_job",
    selection=dg.AssetSelection.groups(OPS_GROUP),
    description="Load landing-zone files into the store (all files, or config `files`), rejecting bad rows with a reason.",
    tags=UNATTENDED_RUN_TAGS,
)

train_job = dg.define_asset_job(
    name="train_job",
    selection=dg.AssetSelection.groups(MODELS_GROUP),
    description="Train the eight detectors on the latest training window and register new model versions.",
    tags=UNATTENDED_RUN_TAGS,
)

detect_job = dg.define_asset_job(
    name="detect_job",
    selection=dg.AssetSelection.groups(FEATURES_GROUP, DETECTIONS_GROUP, REPORTS_GROUP),
    description=(
        "For the selected days: features, scores with the current models, anomaly records; then the consolidated "
        "anomalies, the evaluation and the reports."
    ),
    tags=UNATTENDED_RUN_TAGS,
)

full_pipeline_job = dg.define_asset_job(
    name="full_pipeline_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(OPS_GROUP),
    description="Materialise every asset for the selected days: store, features, models, detections and reports.",
    tags=DUCKDB_WRITER_TAGS,
)


@dg.job(
    tags=DUCKDB_WRITER_TAGS,
    description=(
        "Delete the anomaly records of one day (config `day: YYYY-MM-DD`) or of every day, and rebuild "
        "consolidated_anomalies and the incidents; scores are kept."
    ),
)
def clear_anomalies_job() -> None:
    clear_anomalies()


deliver_alerts_job = dg.define_asset_job(
    name="deliver_alerts_job",
    selection=dg.AssetSelection.assets(ALERT_OUTBOX),
    description="Add alerts for new High incidents (and a store gone quiet) to the outbox and send every due one.",
    tags=UNATTENDED_RUN_TAGS,
)


jobs = [simulate_job, ingest_job, train_job, detect_job, full_pipeline_job, clear_anomalies_job, deliver_alerts_job]


# --- The analyst's verdicts -------------------------------------------------------------------------


@dg.job(
    tags=DUCKDB_WRITER_TAGS,
    description=(
        "Record an analyst's verdict from the launchpad: config `verdict` (confirm|dismiss) and `incident_id` or "
        "`entity` (activity:ID | order:ID), optional `note`, `by`, and `allow` (ip|customer) with `days`."
    ),
)
def record_feedback_job() -> None:
    record_feedback()


@dg.job(
    tags=DUCKDB_WRITER_TAGS,
    description=(
        "Apply the thresholds calibrated on analysts' verdicts (see threshold_calibration): new model versions, and "
        "detection.thresholds in the settings file so the next retraining keeps them."
    ),
)
def apply_thresholds_job() -> None:
    apply_thresholds()


jobs += [record_feedback_job, apply_thresholds_job]
