"""Detection assets: every order and activity scored by every trained detector and the ensemble."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.assets.metadata import table_metadata
from anomalens_dagster.assets.models import model_asset_name
from anomalens_dagster.constants import (
    ACTIVITY_SCORES,
    DETECTIONS_GROUP,
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    DETECTOR_NAMES,
    DUCKDB_POOL,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    ORDER_SCORES,
)
from anomalens_dagster.core.detectors import feature_schema
from anomalens_dagster.core.registry import load_model
from anomalens_dagster.core.scoring import ScoringModel, score_rows
from anomalens_dagster.core.training import ENTITY_FEATURES, EntityFeatures, load_feature_sample
from anomalens_dagster.core.warehouse import replace_window
from anomalens_dagster.partitions import daily_partitions, days_in_window, naive_utc_window
from anomalens_dagster.resources import AnomaLensDuckDB

SCORES_TABLES = {ENTITY_ACTIVITY: ACTIVITY_SCORES, ENTITY_ORDER: ORDER_SCORES}
ALL_ROWS = 2**62  # no sampling: a day is scored whole


def load_scoring_models(conn: duckdb.DuckDBPyConnection, entity: EntityFeatures) -> dict[str, ScoringModel]:
    """The latest version of each detector for the entity, checked against today's feature columns."""
    expected = feature_schema(entity.numeric, entity.categorical)
    models = {}
    for name in DETECTOR_NAMES:
        detector, record = load_model(conn, name, entity.entity_type, expected_feature_schema=expected)
        models[name] = ScoringModel(detector=detector, version=record.version)
    return models


def _daily_scores(
    context: dg.AssetExecutionContext,
    conn: duckdb.DuckDBPyConnection,
    entity: EntityFeatures,
    models: dict[str, ScoringModel],
    start: datetime,
    end: datetime,
    totals: dict[str, list[int]],
) -> Iterator[pd.DataFrame]:
    """Scores of each day in [start, end), one frame per day, tallying (flagged, rows) per detector."""
    for day in days_in_window(start, end):
        day_start = datetime.combine(day, datetime.min.time())
        features = load_feature_sample(conn, entity, day_start, day_start + timedelta(days=1), ALL_ROWS, 0).frame
        scores = score_rows(models, features, f"{entity.entity_type}_id", entity.time_column)
        for detector, flags in scores.groupby("detector")["is_anomaly"]:
            tally = totals.setdefault(str(detector), [0, 0])
            tally[0] += int(flags.sum())
            tally[1] += len(flags)
        context.log.info(f"scored {len(features)} {entity.entity_type}s of {day}")
        yield scores


def _detection_metadata(totals: dict[str, list[int]]) -> dict[str, Any]:
    """Anomalies and anomaly rate per detector (zeros on an empty day), as numbers the UI plots."""
    metadata: dict[str, Any] = {}
    for detector in (*DETECTOR_NAMES, DETECTOR_ENSEMBLE):
        flagged, rows = totals.get(detector, [0, 0])
        metadata[f"anomalies/{detector}"] = flagged
        metadata[f"anomaly_rate/{detector}"] = flagged / rows if rows else 0.0
    return metadata


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
        kinds={"duckdb", "sklearn", "tensorflow"},
        pool=DUCKDB_POOL,
    )
    def scores(context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
        start, end = naive_utc_window(context)
        totals: dict[str, list[int]] = {}
        with duckdb.get_connection() as conn:
            models = load_scoring_models(conn, entity)
            context.log.info("scoring with " + ", ".join(f"{name} v{m.version}" for name, m in models.items()))
            rows, preview = replace_window(
                conn,
                DETECTIONS_SCHEMA,
                table,
                _daily_scores(context, conn, entity, models, start, end, totals),
                entity.time_column,
                start,
                end,
            )
            metadata = table_metadata(conn, DETECTIONS_SCHEMA, table, preview, rows)
        metadata.update(_detection_metadata(totals))
        metadata["model_versions"] = dg.MetadataValue.json({name: m.version for name, m in models.items()})
        return dg.MaterializeResult(metadata=metadata)

    return scores


activity_scores = build_scores_asset(ENTITY_ACTIVITY)
order_scores = build_scores_asset(ENTITY_ORDER)
