"""Report assets: the store at a glance, what was found, and how well the detectors catch the
anomalies the simulator injected."""

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from duckdb import DuckDBPyConnection

from anomalens_dagster.assets.detections import (
    SCORES_TABLES,
    activity_scores,
    anomalies,
    consolidated_anomalies,
    order_scores,
)
from anomalens_dagster.assets.incidents import incidents
from anomalens_dagster.assets.metadata import readable_metadata, table_metadata
from anomalens_dagster.assets.store import simulated_store_days, store_catalog
from anomalens_dagster.automation import detection_summary_refresh, store_summary_refresh
from anomalens_dagster.constants import (
    ACTIVITY_SCORES,
    ACTIVITY_TIMELINE,
    ANOMALY_REPORT,
    ANOMALY_SUMMARY,
    DETECTIONS_SCHEMA,
    DETECTOR_EVALUATION,
    DUCKDB_POOL,
    ENTITY_TYPES,
    EVALUATION_ALL_KINDS,
    ORDER_SCORES,
    REPORTS_GROUP,
    SIMULATION_LABELS,
    STORE_SCHEMA,
    STORE_SUMMARY,
)
from anomalens_dagster.core.calibration import evaluation_labels
from anomalens_dagster.core.evaluation import (
    HEADLINE_METRICS_ALL_KINDS,
    NOT_EVALUATED,
    SPLIT_ALL,
    evaluate_splits,
    headline_metrics,
    headline_split,
    is_evaluated,
)
from anomalens_dagster.core.feedback import entity_verdicts
from anomalens_dagster.core.registry import MODEL_REGISTRY_TABLE
from anomalens_dagster.core.report import load_report_inputs, render_anomaly_report, write_report
from anomalens_dagster.core.summaries import activity_timeline as summarise_activity_timeline
from anomalens_dagster.core.summaries import anomaly_summary as summarise_anomalies
from anomalens_dagster.core.summaries import store_summary as summarise_store
from anomalens_dagster.core.training import ENTITY_FEATURES
from anomalens_dagster.core.warehouse import replace_table
from anomalens_dagster.resources import AnomaLensDuckDB

# Every scored row, and the labels of the scored rows only (labels of days never scored would
# count as misses of a detector that never saw them).
SCORED_ROWS_SQL = f"""
SELECT 'activity' AS entity_type, activity_id AS entity_id FROM {DETECTIONS_SCHEMA}.{ACTIVITY_SCORES}
UNION ALL
SELECT 'order', order_id FROM {DETECTIONS_SCHEMA}.{ORDER_SCORES}
"""
LABELS_SQL = f"""
SELECT l.entity_type, l.entity_id, l.anomaly_kind, l.episode_id
FROM {STORE_SCHEMA}.{SIMULATION_LABELS} AS l
WHERE EXISTS (SELECT 1 FROM ({SCORED_ROWS_SQL}) AS s WHERE s.entity_type = l.entity_type AND s.entity_id = l.entity_id)
"""


def scores_sql(entity_type: str) -> str:
    """An entity's scores with `out_of_time`: the row is at or after the end of the training window of
    the models that scored it (the ensemble's row takes its detectors' latest end)."""
    entity = ENTITY_FEATURES[entity_type]
    id_column = f"{entity_type}_id"
    return f"""
    SELECT '{entity_type}' AS entity_type, s.{id_column} AS entity_id, s.detector, s.score, s.is_anomaly,
           coalesce(s.{entity.time_column} >= max(r.training_end) OVER (PARTITION BY s.{id_column}), false)
               AS out_of_time
    FROM {DETECTIONS_SCHEMA}.{SCORES_TABLES[entity_type]} AS s
    LEFT JOIN {MODEL_REGISTRY_TABLE} AS r
      ON r.entity_type = '{entity_type}' AND r.detector = s.detector AND r.version = s.model_version
    """


SCORES_SQL = " UNION ALL ".join(scores_sql(entity_type) for entity_type in ENTITY_TYPES)


def replace_report_table(
    duckdb: AnomaLensDuckDB, table: str, summarise: Callable[[DuckDBPyConnection], pd.DataFrame]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Summarise the warehouse in SQL, then replace `detections.<table>` with the result; the frame and its metadata."""
    with duckdb.read_connection() as conn:
        frame = summarise(conn)
    return frame, write_report_table(duckdb, table, frame)


def write_report_table(duckdb: AnomaLensDuckDB, table: str, frame: pd.DataFrame) -> dict[str, Any]:
    """Replace `detections.<table>` with `frame` in its own short connection; the table metadata."""
    with duckdb.get_connection() as conn:
        replace_table(conn, DETECTIONS_SCHEMA, table, frame)
        return table_metadata(conn, DETECTIONS_SCHEMA, table, frame)


@dg.asset(
    name=DETECTOR_EVALUATION,
    group_name=REPORTS_GROUP,
    description=(
        "Detection quality against the simulator's labels (or, on a store without them, the analysts' verdicts), per "
        "entity, detector and anomaly kind, for every scored row and apart in-sample / out-of-time (split): precision, "
        "recall, F1, PR-AUC, episode recall and the share of normal rows flagged."
    ),
    deps=[activity_scores.key, order_scores.key, SIMULATION_LABELS],
    kinds={"duckdb", "sklearn"},
    pool=DUCKDB_POOL,
    automation_condition=detection_summary_refresh,
)
def detector_evaluation(context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    with duckdb.read_connection() as conn:
        scores, labels = conn.execute(SCORES_SQL).df(), conn.execute(LABELS_SQL).df()
        verdicts = entity_verdicts(conn)
    # A real store has no simulation labels: its analysts' verdicts are the ground truth there.
    chosen = evaluation_labels(scores, labels, verdicts)
    evaluation = evaluate_splits(chosen.scores, chosen.labels).assign(labels=chosen.source)
    metadata = write_report_table(duckdb, DETECTOR_EVALUATION, evaluation)
    metadata["labels_used"] = dg.MetadataValue.text(chosen.source)
    metadata["label_count"] = chosen.count
    context.log.info(f"evaluated against {chosen.count} {chosen.source}")
    shown_split = headline_split(evaluation["split"].unique())
    headline = evaluation[(evaluation["anomaly_kind"] == EVALUATION_ALL_KINDS) & (evaluation["split"] == shown_split)]
    if not is_evaluated(evaluation):
        # A real store's days: no ground truth, so no metric rather than a precision of 0.000.
        context.log.info(f"{len(headline)} entity and detector pairs {NOT_EVALUATED}")
        metadata["evaluation"] = dg.MetadataValue.text(NOT_EVALUATED)
        metadata["preview"] = dg.MetadataValue.md(f"_{NOT_EVALUATED}_")
        return dg.MaterializeResult(metadata=metadata)
    # The table itself is the preview (and `anomalens run` prints it once, at the end).
    context.log.info(
        f"compared the flags of {len(headline)} entity and detector pairs with the {chosen.source} "
        f"(splits: {', '.join(evaluation['split'].unique())}; the preview shows {shown_split})"
    )
    pooled = evaluation[evaluation["anomaly_kind"] == EVALUATION_ALL_KINDS]
    metadata["preview"] = dg.MetadataValue.md(_summary(pooled).to_markdown(index=False, floatfmt=".3f"))
    # Every row's figures keep their names; the splits' are prefixed, e.g. out_of_time/activity/ensemble/f1.
    for split, rows in evaluation.groupby("split", sort=False):
        prefix = "" if split == SPLIT_ALL else f"{split}/"
        metadata.update(readable_metadata({prefix + k: v for k, v in headline_metrics(rows).items()}))
    return dg.MaterializeResult(metadata=metadata)


def _summary(evaluation: pd.DataFrame) -> pd.DataFrame:
    return evaluation[["split", "entity_type", "detector", *HEADLINE_METRICS_ALL_KINDS]]


STORE_ASSET_KEYS = [*store_catalog.keys, *simulated_store_days.keys]


@dg.asset(
    name=STORE_SUMMARY,
    group_name=REPORTS_GROUP,
    description="Rows per store table, simulated and landed, and the time range they cover: the original dashboard.",
    deps=STORE_ASSET_KEYS,
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    automation_condition=store_summary_refresh,
)
def store_summary(duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    summary, metadata = replace_report_table(duckdb, STORE_SUMMARY, summarise_store)
    metadata["preview"] = dg.MetadataValue.md(summary.to_markdown(index=False))
    metadata.update({f"rows/{row.table_name}": int(row.rows) for row in summary.itertuples()})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name=ACTIVITY_TIMELINE,
    group_name=REPORTS_GROUP,
    description="Actions per UTC hour and action type, with how many of them the ensemble flagged.",
    deps=[*simulated_store_days.keys, activity_scores.key],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    automation_condition=detection_summary_refresh,
)
def activity_timeline(duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    timeline, metadata = replace_report_table(duckdb, ACTIVITY_TIMELINE, summarise_activity_timeline)
    per_day = timeline.groupby(timeline["hour"].dt.date)[["actions", "flagged"]].sum().rename_axis("day")
    metadata["preview"] = dg.MetadataValue.md(per_day.to_markdown() if len(per_day) else "_no activities_")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name=ANOMALY_SUMMARY,
    group_name=REPORTS_GROUP,
    description="Anomaly records per day, entity type, detector and severity.",
    deps=[anomalies.key],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    automation_condition=detection_summary_refresh,
)
def anomaly_summary(duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    summary, metadata = replace_report_table(duckdb, ANOMALY_SUMMARY, summarise_anomalies)
    by_detector = summary.pivot_table(
        index=["entity_type", "detector_name"], columns="severity", values="anomalies", aggfunc="sum", fill_value=0
    )
    metadata["preview"] = dg.MetadataValue.md(by_detector.to_markdown() if len(by_detector) else "_no anomalies_")
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name=ANOMALY_REPORT,
    group_name=REPORTS_GROUP,
    description=(
        "A self-contained HTML report next to the DuckDB file (reports/anomaly_report.html): timeline with "
        "anomalies marked, score distributions with thresholds, detector agreement, evaluation, top incidents."
    ),
    deps=[activity_scores.key, order_scores.key, consolidated_anomalies.key, incidents.key, detector_evaluation.key],
    kinds={"duckdb", "html"},
    pool=DUCKDB_POOL,
    automation_condition=detection_summary_refresh,
)
def anomaly_report(context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    with duckdb.read_connection() as conn:
        inputs = load_report_inputs(conn)
    path = write_report(
        render_anomaly_report(inputs, "AnomaLens anomaly report", datetime.now(UTC)), report_path(duckdb.database)
    )
    context.log.info(f"Wrote the anomaly report to {path}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "open": dg.MetadataValue.url(path.resolve().as_uri()),
            "size_bytes": dg.MetadataValue.int(path.stat().st_size),
        }
    )


def report_path(database: str) -> Path:
    """Where the HTML report of this DuckDB file is written: `reports/anomaly_report.html` beside it."""
    return Path(database).parent / "reports" / f"{ANOMALY_REPORT}.html"
