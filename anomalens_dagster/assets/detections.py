"""Detection assets: every order and activity scored by every trained detector and the ensemble."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.assets.daily import describe_window, replace_days_in_groups
from anomalens_dagster.assets.metadata import readable_metadata, table_metadata
from anomalens_dagster.assets.models import model_asset_name
from anomalens_dagster.automation import detection_summary_refresh, records_refresh, scores_refresh
from anomalens_dagster.configs import INCIDENTS_SECTION, ClearAnomaliesConfig, DetectionConfig, IncidentsConfig
from anomalens_dagster.constants import (
    ACTIVITY_FEATURES,
    ACTIVITY_SCORES,
    ANOMALIES,
    CONSOLIDATED_ANOMALIES,
    DETECTIONS_GROUP,
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    DETECTOR_NAMES,
    DUCKDB_POOL,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    FEATURES_SCHEMA,
    INCIDENTS,
    ORDER_FEATURES,
    ORDER_SCORES,
    ORDERS,
    SEVERITIES,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.anomalies import (
    ANOMALY_DTYPES,
    build_anomalies,
    consolidate,
    explain_flagged,
    session_context,
    with_session_context,
)
from anomalens_dagster.core.detectors import feature_schema
from anomalens_dagster.core.incident_tables import read_allow_rules, read_records, write_incidents
from anomalens_dagster.core.incidents import group_incidents
from anomalens_dagster.core.registry import load_model
from anomalens_dagster.core.scoring import ScoringModel, score_rows, scores_dtypes
from anomalens_dagster.core.training import ENTITY_FEATURES, EntityFeatures, TrainingFrame, load_feature_sample
from anomalens_dagster.core.warehouse import replace_table, table_exists, table_shape_version, transaction
from anomalens_dagster.partitions import daily_partitions, days_in_window
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile

SCORES_TABLES = {ENTITY_ACTIVITY: ACTIVITY_SCORES, ENTITY_ORDER: ORDER_SCORES}
# What the anomaly records of a day are built from: its scores of either entity.
SCORES_BY_TIME_COLUMN = [
    (f"{DETECTIONS_SCHEMA}.{table}", ENTITY_FEATURES[entity_type].time_column)
    for entity_type, table in SCORES_TABLES.items()
]


def load_scoring_models(
    conn: duckdb.DuckDBPyConnection, entity: EntityFeatures, versions: Mapping[str, int] | None = None
) -> dict[str, ScoringModel]:
    """Each detector of the entity at the given registry version (the latest when `versions` is None),
    checked against today's feature columns."""
    expected = feature_schema(entity.numeric, entity.categorical)
    models = {}
    for name in DETECTOR_NAMES if versions is None else versions:
        version = None if versions is None else versions[name]
        detector, record = load_model(conn, name, entity.entity_type, version=version, expected_feature_schema=expected)
        models[name] = ScoringModel(detector=detector, version=record.version)
    return models


def _tally(totals: dict[str, list[int]], scores: pd.DataFrame) -> None:
    """Add a day's (flagged, rows) per detector to `totals`."""
    for detector, flags in scores.groupby("detector")["is_anomaly"]:
        tally = totals.setdefault(str(detector), [0, 0])
        tally[0] += int(flags.sum())
        tally[1] += len(flags)


def _complete_features(sample: TrainingFrame, entity: EntityFeatures) -> pd.DataFrame:
    """The feature rows of the sample's days, or a failure naming the rebuild when some miss a detector feature.

    Such rows were stored before the column was added and not rebuilt since: scoring only the
    complete rows would silently leave entities unscored, and scoring NULLs gives meaningless scores.
    """
    if sample.rows_missing_features:
        first, last = sample.start.date(), (sample.end - timedelta(days=1)).date()
        raise dg.Failure(
            f"{sample.rows_missing_features} {entity.entity_type} rows of {describe_window(sample.start, sample.end)} "
            f"in {entity.qualified_table} miss a detector feature (written before the column was added): run "
            f"`anomalens rebuild {entity.table} --from {first} --to {last}`, then score the days again"
        )
    return sample.frame


def _detection_metadata(totals: dict[str, list[int]]) -> dict[str, Any]:
    """Anomalies and anomaly rate per detector (zeros on an empty day), as numbers the UI plots."""
    metadata: dict[str, Any] = {}
    for detector in (*DETECTOR_NAMES, DETECTOR_ENSEMBLE):
        flagged, rows = totals.get(detector, [0, 0])
        metadata[f"anomalies/{detector}"] = flagged
        metadata[f"anomaly_rate/{detector}"] = flagged / rows if rows else 0.0
    return readable_metadata(metadata)


def build_scores_asset(entity_type: str) -> dg.AssetsDefinition:
    entity = ENTITY_FEATURES[entity_type]
    table = SCORES_TABLES[entity_type]

    @dg.asset(
        name=table,
        group_name=DETECTIONS_GROUP,
        description=(
            f"Every {entity_type} of the day scored by each detector's latest model and by the ensemble: "
            "score (higher = more anomalous), flag at the detector's threshold, model version."
        ),
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[entity.table, *(model_asset_name(name, entity_type) for name in DETECTOR_NAMES)],
        # Derived from the columns, so days written before a column change read as stale (`anomalens rebuild`).
        code_version=table_shape_version(scores_dtypes(f"{entity_type}_id", entity.time_column)),
        kinds={"duckdb", "sklearn", "tensorflow"},
        pool=DUCKDB_POOL,
        automation_condition=scores_refresh,
    )
    def scores(
        context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB, settings: SettingsFile
    ) -> dg.MaterializeResult:
        # A calibrated ensemble threshold (`anomalens thresholds --apply`) lives in the settings file.
        ensemble_threshold = settings.resolve(DetectionConfig(), "detection").ensemble_threshold(entity_type)
        with duckdb.read_connection() as conn:
            models = load_scoring_models(conn, entity)
        context.log.info("scoring with " + ", ".join(f"{name} v{m.version}" for name, m in models.items()))
        totals: dict[str, list[int]] = {}

        def score_days(sample: TrainingFrame, start: datetime, end: datetime) -> list[pd.DataFrame]:
            features = _complete_features(sample, entity)
            scores = score_rows(models, features, f"{entity.entity_type}_id", entity.time_column, ensemble_threshold)
            _tally(totals, scores)
            context.log.info(f"scored {len(features)} {entity.entity_type} rows of {describe_window(start, end)}")
            return [scores]

        _, metadata = replace_days_in_groups(
            context,
            duckdb,
            DETECTIONS_SCHEMA,
            table,
            entity.time_column,
            read=lambda conn, start, end: load_feature_sample(conn, entity, start, end),
            compute=score_days,
            sources=[(entity.qualified_table, entity.time_column)],
        )
        metadata.update(_detection_metadata(totals))
        metadata["model_versions"] = dg.MetadataValue.json({name: m.version for name, m in models.items()})
        return dg.MaterializeResult(metadata=metadata)

    return scores


activity_scores = build_scores_asset(ENTITY_ACTIVITY)
order_scores = build_scores_asset(ENTITY_ORDER)


# --- Anomaly records ------------------------------------------------------------------------------

# One row per entity of the day: its features (to explain) and the facts its description quotes.
FACTS_SQL = {
    ENTITY_ACTIVITY: f"""
        SELECT f.*, a.ip_address, a.session_id, CAST(a.details AS VARCHAR) AS details
        FROM {FEATURES_SCHEMA}.{ACTIVITY_FEATURES} AS f JOIN {STORE_SCHEMA}.{USER_ACTIVITIES} AS a USING (id)
        WHERE f.timestamp >= $start AND f.timestamp < $end ORDER BY f.id""",
    ENTITY_ORDER: f"""
        SELECT f.*, o.customer_id
        FROM {FEATURES_SCHEMA}.{ORDER_FEATURES} AS f JOIN {STORE_SCHEMA}.{ORDERS} AS o USING (id)
        WHERE f.created_at >= $start AND f.created_at < $end ORDER BY f.id""",
}


def _versions_that_scored(entity: EntityFeatures, scores: pd.DataFrame) -> dict[str, int]:
    """The registry version of each detector in `scores` (not the latest: a retrain may have happened since)."""
    versions = scores.loc[scores["detector"] != DETECTOR_ENSEMBLE, ["detector", "model_version"]].drop_duplicates()
    if versions["detector"].duplicated().any():
        raise ValueError(
            f"{entity.entity_type} scores of one day come from several versions of a detector; re-materialise "
            f"{SCORES_TABLES[entity.entity_type]} for the day"
        )
    return {str(name): int(version) for name, version in versions.itertuples(index=False)}


# A run loads each model version once: every load reads the artifact, checks its digest and unpickles it.
LoadedModels = dict[tuple[str, str, int], ScoringModel]


def _models_that_scored(
    conn: duckdb.DuckDBPyConnection, entity: EntityFeatures, scores: pd.DataFrame, loaded: LoadedModels
) -> dict[str, ScoringModel]:
    """The model of each detector at the version that scored `scores`, loaded from the registry unless in `loaded`."""
    versions = _versions_that_scored(entity, scores)
    missing = {name: version for name, version in versions.items() if (entity.entity_type, name, version) not in loaded}
    if missing:
        for name, model in load_scoring_models(conn, entity, missing).items():
            loaded[(entity.entity_type, name, model.version)] = model
    return {name: loaded[(entity.entity_type, name, version)] for name, version in versions.items()}


@dataclass(frozen=True)
class _ScoredEntities:
    """What the anomaly records of one entity type on one day are built from."""

    entity_type: str
    day: date
    scores: pd.DataFrame
    facts: pd.DataFrame
    models: dict[str, ScoringModel]


def _read_scored_entities(
    conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime, loaded: LoadedModels
) -> list[_ScoredEntities]:
    """The scores, facts and scoring models of each entity type, day by day in [start, end).

    Day by day, because the days of a group may have been scored by different model versions. An
    entity type never scored (a store with activities and no orders yet) has no scores table: skipped.
    """
    scored = []
    tables = {
        entity_type: table
        for entity_type, table in SCORES_TABLES.items()
        if table_exists(conn, table, DETECTIONS_SCHEMA)
    }
    for day in days_in_window(start, end):
        day_start = datetime.combine(day, datetime.min.time())
        window = {"start": day_start, "end": day_start + timedelta(days=1)}
        for entity_type, table in tables.items():
            entity = ENTITY_FEATURES[entity_type]
            scores = conn.execute(
                f"SELECT * FROM {DETECTIONS_SCHEMA}.{table} "
                f"WHERE {entity.time_column} >= $start AND {entity.time_column} < $end",
                window,
            ).df()
            facts = conn.execute(FACTS_SQL[entity_type], window).df()
            models = _models_that_scored(conn, entity, scores, loaded)
            scored.append(_ScoredEntities(entity_type, day, scores, facts, models))
    return scored


def _anomaly_records(scored: _ScoredEntities, detected_at: datetime, ensemble_threshold: float) -> pd.DataFrame:
    """The anomaly records of one entity type on one day."""
    return build_anomalies(
        scored.entity_type,
        scored.scores,
        explain_flagged(scored.models, scored.facts, scored.scores, scored.entity_type),
        scored.facts,
        detected_at,
        thresholds={
            DETECTOR_ENSEMBLE: ensemble_threshold,
            **{name: model.detector.threshold_ for name, model in scored.models.items()},
        },
    )


@dg.asset(
    name=ANOMALIES,
    group_name=DETECTIONS_GROUP,
    description=(
        "One record per entity and detector that flagged it: severity, a sentence saying why, the features that "
        "drove the score and the model version."
    ),
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[activity_scores.key, order_scores.key],
    code_version=table_shape_version(ANOMALY_DTYPES),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    automation_condition=records_refresh,
)
def anomalies(
    context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> dg.MaterializeResult:
    detection = settings.resolve(DetectionConfig(), "detection")  # the ensemble's severity is relative to its threshold
    detected_at = datetime.now(UTC).replace(tzinfo=None)
    loaded: LoadedModels = {}
    by_detector = {name: 0 for name in (*DETECTOR_NAMES, DETECTOR_ENSEMBLE)}
    by_severity = dict.fromkeys(SEVERITIES, 0)

    def records_of_days(scored_entities: list[_ScoredEntities], _start: datetime, _end: datetime) -> list[pd.DataFrame]:
        frames = []
        for scored in scored_entities:
            records = _anomaly_records(scored, detected_at, detection.ensemble_threshold(scored.entity_type))
            for (detector, level), count in records.groupby(["detector_name", "severity"]).size().items():
                by_detector[detector] += count
                by_severity[level] += count
            context.log.info(f"{len(records)} anomaly records for {scored.entity_type} rows of {scored.day}")
            frames.append(records)
        return frames

    _, metadata = replace_days_in_groups(
        context,
        duckdb,
        DETECTIONS_SCHEMA,
        ANOMALIES,
        "event_timestamp",
        read=lambda conn, start, end: _read_scored_entities(conn, start, end, loaded),
        compute=records_of_days,
        sources=SCORES_BY_TIME_COLUMN,
    )
    metadata.update({f"anomalies/{name}": count for name, count in by_detector.items()})
    metadata.update({f"severity/{level}": count for level, count in by_severity.items()})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name=CONSOLIDATED_ANOMALIES,
    group_name=DETECTIONS_GROUP,
    description=(
        "One row per suspicious order or activity over all days: the detectors that fired, first and last "
        "detection, overall severity, ensemble score, and for activities every action of its session in order."
    ),
    deps=[anomalies.key],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    automation_condition=detection_summary_refresh,
)
def consolidated_anomalies(context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    with duckdb.read_connection() as conn:
        inputs = _consolidation_inputs(conn)
    consolidated = _consolidated(*inputs)
    with duckdb.get_connection() as conn:
        replace_table(conn, DETECTIONS_SCHEMA, CONSOLIDATED_ANOMALIES, consolidated)
        metadata = table_metadata(conn, DETECTIONS_SCHEMA, CONSOLIDATED_ANOMALIES, consolidated)
    for level in SEVERITIES:
        metadata[f"entities/{level}"] = int((consolidated["overall_severity"] == level).sum())
    context.log.info(f"{len(consolidated)} suspicious entities")
    return dg.MaterializeResult(metadata=metadata)


def _consolidation_inputs(conn: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every stored anomaly record, the sessions of the suspicious activities, and each one's session id."""
    records = conn.execute(f"SELECT * FROM {DETECTIONS_SCHEMA}.{ANOMALIES}").df()
    sessions = conn.execute(
        f"""SELECT id, session_id, timestamp, action_type, CAST(details AS VARCHAR) AS details
            FROM {STORE_SCHEMA}.{USER_ACTIVITIES}
            WHERE session_id IN (
                SELECT a.session_id FROM {STORE_SCHEMA}.{USER_ACTIVITIES} AS a
                JOIN {DETECTIONS_SCHEMA}.{ANOMALIES} AS r
                  ON r.entity_type = $activity AND r.entity_id = a.id)""",
        {"activity": ENTITY_ACTIVITY},
    ).df()
    activity_sessions = conn.execute(
        f"""SELECT a.id AS entity_id, a.session_id FROM {STORE_SCHEMA}.{USER_ACTIVITIES} AS a
            WHERE a.id IN (SELECT entity_id FROM {DETECTIONS_SCHEMA}.{ANOMALIES} WHERE entity_type = $activity)""",
        {"activity": ENTITY_ACTIVITY},
    ).df()
    return records, sessions, activity_sessions


def _consolidated(records: pd.DataFrame, sessions: pd.DataFrame, activity_sessions: pd.DataFrame) -> pd.DataFrame:
    return with_session_context(consolidate(records), activity_sessions, session_context(sessions))


def _rebuild_consolidated(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Replace `consolidated_anomalies` with the consolidation of every stored anomaly record."""
    consolidated = _consolidated(*_consolidation_inputs(conn))
    replace_table(conn, DETECTIONS_SCHEMA, CONSOLIDATED_ANOMALIES, consolidated)
    return consolidated


@dg.op(
    description=(
        "Delete the anomaly records of one day, or all of them (the original DELETE /anomalies), and rebuild "
        "consolidated_anomalies and the incidents from what is left. Scores stay; re-materialise `anomalies` to bring records back."
    ),
    pool=DUCKDB_POOL,
)
def clear_anomalies(
    context: dg.OpExecutionContext, config: ClearAnomaliesConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> None:
    day = _parsed_day(config.day)
    gap = timedelta(minutes=settings.resolve(IncidentsConfig(), INCIDENTS_SECTION).gap_minutes)
    with duckdb.get_connection() as conn:
        if not table_exists(conn, ANOMALIES, DETECTIONS_SCHEMA):
            context.log.info("No anomaly records stored yet: nothing to clear")
            return
        window = {"start": datetime.min, "end": datetime.max} if day is None else _day_window(day)
        with transaction(conn):
            ((deleted,),) = conn.execute(
                f"DELETE FROM {DETECTIONS_SCHEMA}.{ANOMALIES} WHERE event_timestamp >= $start AND event_timestamp < $end",
                window,
            ).fetchall()
            consolidated = _rebuild_consolidated(conn)
            # Incidents are regrouped from the records left, so none refers to a deleted record.
            grouping = group_incidents(read_records(conn), gap, read_allow_rules(conn))
            write_incidents(conn, grouping)
    context.log.info(
        f"Deleted {deleted} anomaly records of {day or 'every day'}; {len(consolidated)} entities and "
        f"{len(grouping.incidents)} incidents remain"
    )
    if day is not None:
        context.log_event(
            dg.AssetMaterialization(ANOMALIES, partition=day.isoformat(), metadata={"deleted_records": deleted})
        )
    context.log_event(
        dg.AssetMaterialization(
            CONSOLIDATED_ANOMALIES, metadata={"dagster/row_count": len(consolidated), "deleted_records": deleted}
        )
    )
    context.log_event(dg.AssetMaterialization(INCIDENTS, metadata={"dagster/row_count": len(grouping.incidents)}))


def _parsed_day(day: str | None) -> date | None:
    if not day:
        return None
    try:
        return date.fromisoformat(day)
    except ValueError:
        raise dg.Failure(f"clear_anomalies: day {day!r} is not a date like 2026-11-20") from None


def _day_window(day: date) -> dict[str, datetime]:
    start = datetime.combine(day, datetime.min.time())
    return {"start": start, "end": start + timedelta(days=1)}
