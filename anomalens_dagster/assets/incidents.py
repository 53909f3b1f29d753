"""The incidents asset: the ensemble's flagged rows grouped into what happened (core/incidents.py)."""

from datetime import timedelta
from typing import Any

import dagster as dg
import pandas as pd

from anomalens_dagster.assets.detections import anomalies
from anomalens_dagster.assets.metadata import table_metadata
from anomalens_dagster.automation import detection_summary_refresh
from anomalens_dagster.configs import INCIDENTS_SECTION, IncidentsConfig
from anomalens_dagster.constants import (
    ANOMALIES,
    DETECTIONS_GROUP,
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    DUCKDB_POOL,
    INCIDENTS,
    SEVERITIES,
)
from anomalens_dagster.core.incident_tables import read_allow_rules, read_records, replace_incidents
from anomalens_dagster.core.incidents import group_incidents, top_incidents
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile

TOP_INCIDENTS_IN_METADATA = 10
PREVIEW_COLUMNS = ("incident_id", "entity_type", "first_seen", "row_count", "max_severity", "ensemble_score", "summary")


@dg.asset(
    name=INCIDENTS,
    group_name=DETECTIONS_GROUP,
    description=(
        "One row per incident: the rows the ensemble flagged, linked by session, customer or (anonymous rows) IP "
        "within a gap and across midnight, with who, when, how severe, the features that drove them and one "
        "sentence saying what happened."
    ),
    deps=[anomalies.key],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    # Rewrites every incident at once (one may span days), so like the consolidated anomalies it waits
    # until the day runs have written their records rather than racing them.
    automation_condition=detection_summary_refresh,
)
def incidents(
    context: dg.AssetExecutionContext, config: IncidentsConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> dg.MaterializeResult:
    """Incidents over every stored anomaly record; each record's `incident_id` is set to match."""
    effective = settings.resolve(config, INCIDENTS_SECTION)
    with duckdb.read_connection() as conn:
        records = read_records(conn)
        allow_rules = read_allow_rules(conn)
    grouping = group_incidents(records, timedelta(minutes=effective.gap_minutes), allow_rules)
    found = grouping.incidents
    with duckdb.get_connection() as conn:
        replace_incidents(conn, grouping)
        metadata = table_metadata(conn, DETECTIONS_SCHEMA, INCIDENTS, _preview(found), row_count=len(found))
    metadata.update(_incident_metadata(found, effective.gap_minutes, allow_rules is not None))
    context.log.info(
        f"{len(found)} incidents from {len(grouping.members)} ensemble-flagged rows "
        f"(gap {effective.gap_minutes:g} min{'' if allow_rules is not None else ', no allow rules yet'})"
    )
    return dg.MaterializeResult(metadata=metadata)


def _preview(found: pd.DataFrame) -> pd.DataFrame:
    return top_incidents(found, TOP_INCIDENTS_IN_METADATA)[list(PREVIEW_COLUMNS)]


def _incident_metadata(found: pd.DataFrame, gap_minutes: float, rules_read: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        f"incidents/{level}": int((found["max_severity"] == level).sum()) for level in SEVERITIES
    }
    metadata["incidents/suppressed"] = int(found["suppressed"].sum())
    metadata["gap_minutes"] = float(gap_minutes)
    metadata["allow_rules"] = dg.MetadataValue.text("read" if rules_read else "none yet (no ops.active_allow_rules)")
    top = _preview(found)
    metadata["preview"] = metadata["top_incidents"] = dg.MetadataValue.md(
        top.to_markdown(index=False, floatfmt=".2f") if len(top) else "_no incidents_"
    )
    return metadata


# Rows of detections.incidents and ensemble records that disagree: each count should be 0.
COVERAGE_SQL = f"""
SELECT
    (SELECT count(*) FROM {DETECTIONS_SCHEMA}.{ANOMALIES}
     WHERE detector_name = $ensemble AND incident_id IS NULL) AS records_without_incident,
    (SELECT count(*) FROM {DETECTIONS_SCHEMA}.{ANOMALIES} AS r
     WHERE r.incident_id IS NOT NULL
       AND r.incident_id NOT IN (SELECT incident_id FROM {DETECTIONS_SCHEMA}.{INCIDENTS})) AS records_of_unknown_incidents,
    (SELECT abs(coalesce(sum(row_count), 0)
                - (SELECT count(*) FROM {DETECTIONS_SCHEMA}.{ANOMALIES} WHERE detector_name = $ensemble))
     FROM {DETECTIONS_SCHEMA}.{INCIDENTS}) AS row_count_difference
"""


@dg.asset_check(
    asset=incidents,
    name="check_incidents_cover_every_flagged_row",
    description=(
        "Every ensemble record carries the id of an existing incident, and the incidents' row counts add up to "
        "the ensemble records."
    ),
    pool=DUCKDB_POOL,
)
def check_incidents_cover_every_flagged_row(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
    with duckdb.read_connection() as conn:
        counts = conn.execute(COVERAGE_SQL, {"ensemble": DETECTOR_ENSEMBLE}).df().iloc[0].astype(int).to_dict()
    return dg.AssetCheckResult(passed=not any(counts.values()), metadata=counts)


incident_checks = [check_incidents_cover_every_flagged_row]
