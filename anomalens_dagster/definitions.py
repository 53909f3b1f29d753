"""The AnomaLens code location: one `dg.Definitions` with every asset, check, job and resource."""

from __future__ import annotations

import dagster as dg

from anomalens_dagster.assets.alerts import alert_outbox
from anomalens_dagster.assets.day_summaries import entity_day_summaries
from anomalens_dagster.assets.detections import (
    activity_scores,
    anomalies,
    consolidated_anomalies,
    order_scores,
)
from anomalens_dagster.assets.features import activity_features, feature_checks, order_features
from anomalens_dagster.assets.feedback import threshold_calibration
from anomalens_dagster.assets.incidents import incident_checks, incidents
from anomalens_dagster.assets.landing import ingested_files, landing_checks
from anomalens_dagster.assets.models import model_assets, model_checks
from anomalens_dagster.assets.reports import (
    activity_timeline,
    anomaly_report,
    anomaly_summary,
    detector_evaluation,
    store_summary,
)
from anomalens_dagster.assets.store import simulated_store_days, store_catalog, store_checks
from anomalens_dagster.jobs import jobs
from anomalens_dagster.resources import landing_zone_resource
from anomalens_dagster.scaleout.configured import for_storage, phase_jobs, step_executor, storage_resource
from anomalens_dagster.scaleout.maintenance import lake_maintenance_job, lake_maintenance_schedules
from anomalens_dagster.schedules import schedules
from anomalens_dagster.sensors import sensors
from anomalens_dagster.settings import settings_resource

# Which ops take each section of a settings file (`anomalens run --settings`), and under which key
# of their config (None: the section is the op's whole config).
OPS_BY_SETTINGS_SECTION: dict[str, list[tuple[str, str | None]]] = {
    "simulation": [(store_catalog.op.name, None), (simulated_store_days.op.name, None)],
    "training": [(model.op.name, "training") for model in model_assets],
    "detection": [(model.op.name, "detection") for model in model_assets],
    # The ingest reads `landing` from the settings file itself, at run time (no op config).
    "landing": [],
    "incidents": [(incidents.op.name, None)],
    # The alert outbox reads `alerts` from the settings file itself, at run time.
    "alerts": [],
    "features": [(activity_features.op.name, None), (order_features.op.name, None)],
    # Read when the code location loads (the `duckdb` resource and the executor; scaleout/settings.py).
    "storage": [],
    "execution": [],
}

assets = [
    store_catalog,
    simulated_store_days,
    ingested_files,
    entity_day_summaries,
    activity_features,
    order_features,
    *model_assets,
    activity_scores,
    order_scores,
    anomalies,
    consolidated_anomalies,
    incidents,
    detector_evaluation,
    store_summary,
    activity_timeline,
    anomaly_summary,
    anomaly_report,
    alert_outbox,
    threshold_calibration,
]

defs = dg.Definitions(
    # With DuckLake storage, daily assets backfill one run per day (scaleout/configured.py).
    assets=for_storage(assets),
    asset_checks=[*store_checks, *landing_checks, *feature_checks, *model_checks, *incident_checks],
    jobs=[*jobs, *phase_jobs(assets), lake_maintenance_job],
    schedules=[*schedules, *lake_maintenance_schedules()],
    sensors=sensors,
    resources={"duckdb": storage_resource(), "landing": landing_zone_resource(), "settings": settings_resource()},
    # Every run in one process, whoever launches it (UI, daemon, `dagster job execute`): DuckDB steps
    # run one at a time anyway (the `duckdb` pool), and a process per step cost 5-12 s each. The
    # settings file's `execution` section can send the steps to Celery workers instead (DuckLake).
    executor=step_executor(),
)
