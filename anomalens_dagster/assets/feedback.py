"""The analyst's loop in Dagster: verdicts recorded from the launchpad, thresholds calibrated on them and applied."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from anomalens_dagster.assets.detections import activity_scores, order_scores
from anomalens_dagster.assets.metadata import readable_metadata, table_metadata
from anomalens_dagster.assets.models import model_asset_name, model_metadata
from anomalens_dagster.automation import detection_summary_refresh
from anomalens_dagster.configs import CalibrationConfig, DetectionConfig, RecordFeedbackConfig
from anomalens_dagster.constants import (
    DETECTIONS_SCHEMA,
    DUCKDB_POOL,
    ENTITY_TYPES,
    REPORTS_GROUP,
    THRESHOLD_CALIBRATION,
)
from anomalens_dagster.core.calibration import (
    STATUS_PROPOSED,
    AppliedThresholds,
    StoreCalibration,
    apply_calibration,
    calibrate_store,
)
from anomalens_dagster.core.feedback import FeedbackError, Verdict, parse_entity, record_verdicts
from anomalens_dagster.core.warehouse import replace_table
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile, write_setting

FEEDBACK_SOURCE_JOB = "job"
CALIBRATION_PREVIEW_COLUMNS = [
    "entity_type",
    "detector",
    "n_verdicts",
    "n_missed",
    "current_threshold",
    "proposed_threshold",
    "f1_before",
    "f1_after",
    "status",
]


@dg.op(
    description=(
        "Append an analyst's verdict (confirm or dismiss, on an incident or one entity, with note and allow rule) to "
        "ops.analyst_feedback; the last verdict on a target wins, the history stays."
    ),
    pool=DUCKDB_POOL,
)
def record_feedback(context: dg.OpExecutionContext, config: RecordFeedbackConfig, duckdb: AnomaLensDuckDB) -> None:
    try:
        entity_type, entity_id = parse_entity(config.entity) if config.entity else (None, None)
        verdict = Verdict(
            config.verdict,
            incident_id=config.incident_id,
            entity_type=entity_type,
            entity_id=entity_id,
            note=config.note,
            analyst=config.by,
            allow_kind=config.allow,
            allow_days=config.days,
        )
        with duckdb.get_connection() as conn:
            (recorded,) = record_verdicts(conn, [verdict], FEEDBACK_SOURCE_JOB, datetime.now(UTC).replace(tzinfo=None))
    except FeedbackError as error:
        raise dg.Failure(f"record_feedback: {error}") from error
    context.log.info(
        f"recorded {recorded.verdict.verdict} on {recorded.verdict.target} ({recorded.feedback_id})"
        + (": no detector flagged it, a miss" if recorded.is_miss else "")
        + (
            f"; allowed {recorded.verdict.allow_kind} {', '.join(recorded.allowed_values)} until {recorded.allow_until}"
            if recorded.allowed_values
            else ""
        )
    )


def ensemble_thresholds(settings: SettingsFile) -> dict[str, float]:
    """The ensemble threshold in force per entity type (settings `detection.thresholds`, else the default)."""
    detection = settings.resolve(DetectionConfig(), "detection")
    return {entity_type: detection.ensemble_threshold(entity_type) for entity_type in ENTITY_TYPES}


def calibration_summary(store: StoreCalibration) -> str:
    """One line: how many thresholds calibration proposes from how many verdicts, or why none."""
    calibration = store.calibration
    proposed = int((calibration["status"] == STATUS_PROPOSED).sum())
    if calibration.empty:
        return f"nothing to calibrate: no scored entity type with a registered model ({store.n_verdicts} verdicts)"
    if proposed:
        return f"{proposed} of {len(calibration)} thresholds would change, from {store.n_verdicts} judged rows"
    reasons = sorted(set(calibration["status"]))
    return f"no threshold proposed from {store.n_verdicts} judged rows: {'; '.join(reasons)}"


@dg.asset(
    name=THRESHOLD_CALIBRATION,
    group_name=REPORTS_GROUP,
    description=(
        "Per entity type and detector (and the ensemble): the threshold that would have maximised F1 on the analysts' "
        "verdicts so far, with precision, recall and F1 before and after; at least 20 judged rows, else it says so."
    ),
    deps=[activity_scores.key, order_scores.key],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    automation_condition=detection_summary_refresh,
)
def threshold_calibration(
    context: dg.AssetExecutionContext, config: CalibrationConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> dg.MaterializeResult:
    with duckdb.read_connection() as conn:
        store = calibrate_store(conn, ensemble_thresholds(settings), config.min_verdicts)
    calibration = store.calibration
    with duckdb.get_connection() as conn:
        replace_table(conn, DETECTIONS_SCHEMA, THRESHOLD_CALIBRATION, calibration)
        metadata = table_metadata(conn, DETECTIONS_SCHEMA, THRESHOLD_CALIBRATION, calibration)
    summary = calibration_summary(store)
    context.log.info(summary)
    metadata["calibration"] = dg.MetadataValue.text(summary)
    metadata["verdicts"] = store.n_verdicts
    metadata["preview"] = dg.MetadataValue.md(
        calibration[CALIBRATION_PREVIEW_COLUMNS].to_markdown(index=False, floatfmt=".4g")
        if len(calibration)
        else f"_{summary}_"
    )
    metadata.update(readable_metadata(_calibration_numbers(calibration)))
    return dg.MaterializeResult(metadata=metadata)


def _calibration_numbers(calibration: pd.DataFrame) -> dict[str, Any]:
    numbers: dict[str, Any] = {}
    for row in calibration.itertuples(index=False):
        prefix = f"{row.entity_type}/{row.detector}"
        for name in ("current_threshold", "proposed_threshold", "f1_before", "f1_after"):
            value = float(getattr(row, name))
            if value == value:  # NaN: nothing proposed, or undefined
                numbers[f"{prefix}/{name}"] = value
    return numbers


def apply_store_calibration(duckdb: AnomaLensDuckDB, settings: SettingsFile, min_verdicts: int) -> AppliedThresholds:
    """Calibrate on the store's verdicts, register the proposed thresholds as new model versions and
    write them (the ensemble's too) into the settings file's `detection.thresholds`."""
    with duckdb.get_connection() as conn:
        store = calibrate_store(conn, ensemble_thresholds(settings), min_verdicts)
        current = settings.resolve(DetectionConfig(), "detection").thresholds
        applied = apply_calibration(conn, store, current)
    if applied.applied:
        write_setting(settings.path, "detection", "thresholds", applied.thresholds)
    return applied


@dg.op(
    description=(
        "Apply threshold calibration: each proposed detector threshold becomes a new model version (registry metrics "
        "say threshold_source: calibration and how many verdicts), and every proposal, the ensemble's included, is "
        "written into the settings file's detection.thresholds so that retraining keeps it."
    ),
    pool=DUCKDB_POOL,
)
def apply_thresholds(
    context: dg.OpExecutionContext, config: CalibrationConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> None:
    applied = apply_store_calibration(duckdb, settings, config.min_verdicts)
    if not applied.applied:
        context.log.info("no threshold proposed: nothing applied (see the threshold_calibration asset for why)")
        return
    for (entity_type, detector), threshold in sorted(applied.applied.items()):
        context.log.info(f"{entity_type} {detector}: threshold {threshold:.6g} applied")
    for record in applied.records:
        # The model asset's new version: declarative automation re-scores recent days with it.
        context.log_event(
            dg.AssetMaterialization(
                asset_key=model_asset_name(record.detector, record.entity_type),
                description=f"threshold calibrated on analysts' verdicts: {record.model_name}",
                metadata=model_metadata(record),
            )
        )
    context.log.info(f"wrote detection.thresholds into {settings.path}")
