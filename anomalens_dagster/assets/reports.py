"""Report assets: how well the detectors catch the anomalies the simulator injected."""

import dagster as dg
import pandas as pd

from anomalens_dagster.assets.detections import activity_scores, order_scores
from anomalens_dagster.assets.metadata import table_metadata
from anomalens_dagster.constants import (
    ACTIVITY_SCORES,
    DETECTIONS_SCHEMA,
    DETECTOR_EVALUATION,
    DUCKDB_POOL,
    EVALUATION_ALL_KINDS,
    ORDER_SCORES,
    REPORTS_GROUP,
    SIMULATION_LABELS,
    STORE_SCHEMA,
)
from anomalens_dagster.core.evaluation import HEADLINE_METRICS_ALL_KINDS, evaluate_detections, headline_metrics
from anomalens_dagster.core.warehouse import replace_table
from anomalens_dagster.resources import AnomaLensDuckDB

# Every scored row, and the labels of the scored rows only (labels of days never scored would
# count as misses of a detector that never saw them).
SCORES_SQL = f"""
SELECT 'activity' AS entity_type, activity_id AS entity_id, detector, score, is_anomaly
FROM {DETECTIONS_SCHEMA}.{ACTIVITY_SCORES}
UNION ALL
SELECT 'order', order_id, detector, score, is_anomaly FROM {DETECTIONS_SCHEMA}.{ORDER_SCORES}
"""
LABELS_SQL = f"""
SELECT l.entity_type, l.entity_id, l.anomaly_kind, l.episode_id
FROM {STORE_SCHEMA}.{SIMULATION_LABELS} AS l
WHERE EXISTS (SELECT 1 FROM ({SCORES_SQL}) AS s WHERE s.entity_type = l.entity_type AND s.entity_id = l.entity_id)
"""


@dg.asset(
    name=DETECTOR_EVALUATION,
    group_name=REPORTS_GROUP,
    description=(
        "Detection quality against the simulator's labels, per entity, detector and anomaly kind: precision, "
        "recall, F1, PR-AUC, episode recall and the share of normal rows flagged."
    ),
    deps=[activity_scores.key, order_scores.key, SIMULATION_LABELS],
    kinds={"duckdb", "sklearn"},
    pool=DUCKDB_POOL,
)
def detector_evaluation(context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    with duckdb.get_connection() as conn:
        scores = conn.execute(SCORES_SQL).df()
        labels = conn.execute(LABELS_SQL).df()
        evaluation = evaluate_detections(scores, labels)
        replace_table(conn, DETECTIONS_SCHEMA, DETECTOR_EVALUATION, evaluation)
        metadata = table_metadata(conn, DETECTIONS_SCHEMA, DETECTOR_EVALUATION, evaluation)
    headline = evaluation[evaluation["anomaly_kind"] == EVALUATION_ALL_KINDS]
    context.log.info("\n" + _summary(headline).to_string(index=False))
    metadata["preview"] = dg.MetadataValue.md(_summary(headline).to_markdown(index=False, floatfmt=".3f"))
    metadata.update(headline_metrics(evaluation))
    return dg.MaterializeResult(metadata=metadata)


def _summary(evaluation: pd.DataFrame) -> pd.DataFrame:
    return evaluation[["entity_type", "detector", "anomaly_kind", *HEADLINE_METRICS_ALL_KINDS]]
