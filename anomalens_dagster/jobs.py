"""Jobs: named selections of assets that schedules, sensors, the CLI and the UI launch."""

from __future__ import annotations

import dagster as dg

from anomalens_dagster.assets.detections import clear_anomalies
from anomalens_dagster.constants import STORE_GROUP

simulate_job = dg.define_asset_job(
    name="simulate_job",
    selection=dg.AssetSelection.groups(STORE_GROUP),
    description="Simulate the store: catalog and customers, then the orders, items, activities and labels of each day.",
)

full_pipeline_job = dg.define_asset_job(
    name="full_pipeline_job",
    selection=dg.AssetSelection.all(),
    description="Materialise every asset for the selected days: store, features, models, detections and reports.",
)



@dg.job(
    description=(
        "Delete the anomaly records of one day (config `day: YYYY-MM-DD`) or of every day, and rebuild "
        "consolidated_anomalies; scores are kept."
    )
)
def clear_anomalies_job() -> None:
    clear_anomalies()


jobs = [simulate_job, full_pipeline_job, clear_anomalies_job]
