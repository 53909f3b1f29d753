"""What the anomaly report shows, aggregated in DuckDB into small frames (:func:`load_report_inputs`)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from anomalens_dagster.constants import (
    ACTIVITY_SCORES,
    ANOMALIES,
    CONSOLIDATED_ANOMALIES,
    DEFAULT_SEED,
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    DETECTOR_EVALUATION,
    DETECTOR_NAMES,
    ENSEMBLE_THRESHOLD,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    EVALUATION_ALL_KINDS,
    INCIDENTS,
    ML_SCHEMA,
    MODEL_REGISTRY,
    ORDER_SCORES,
    ORDERS,
    SEVERITIES,
    SIMULATION_LABELS,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.evaluation import SPLIT_ALL, SPLIT_OUT_OF_TIME
from anomalens_dagster.core.warehouse import table_exists

logger = logging.getLogger(__name__)


DEFAULT_SAMPLE_ROWS = 20_000  # normal rows per detector and entity type drawn in the distributions
DEFAULT_TOP_ANOMALIES = 15  # rows per entity type in the top-anomalies table

REPORT_DETECTORS: tuple[str, ...] = (*DETECTOR_NAMES, DETECTOR_ENSEMBLE)

# Section keys of `ReportInputs.missing`.
SECTION_TIMELINE = "timeline"
SECTION_THRESHOLDS = "thresholds"
SECTION_EVALUATION = "evaluation"
SECTION_TOP_ANOMALIES = "top_anomalies"
SECTION_TOP_INCIDENTS = "top_incidents"
DEFAULT_TOP_INCIDENTS = 20  # incidents in the top-incidents table, both entity types together
TOP_INCIDENT_COLUMNS = (
    "incident_id",
    "entity_type",
    "first_seen",
    "last_seen",
    "row_count",
    "max_severity",
    "ensemble_score",
    "top_features",
    "suppressed",
    "summary",
)


@dataclass(frozen=True)
class _Entity:
    entity_type: str
    label: str  # plural, for headings
    scores_table: str
    id_column: str
    time_column: str
    store_table: str


_ENTITIES: dict[str, _Entity] = {
    ENTITY_ACTIVITY: _Entity(
        ENTITY_ACTIVITY, "activities", ACTIVITY_SCORES, "activity_id", "timestamp", USER_ACTIVITIES
    ),
    ENTITY_ORDER: _Entity(ENTITY_ORDER, "orders", ORDER_SCORES, "order_id", "created_at", ORDERS),
}


class ReportInputsError(LookupError):
    """A table the report cannot do without is missing."""


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report draws, as small frames (one row per hour, detector, combination, ...).

    ``timeline``: entity_type, hour, n_events (store rows; scored rows when the store table is
    missing), n_scored, n_flagged (by the ensemble), n_labelled (injected by the simulator; 0 when
    there are no labels). Every hour between the first and last one is present.
    ``score_summary``: entity_type, detector, n_rows, n_flagged, min_score, max_score -- exact.
    ``score_sample``: entity_type, detector, score, is_anomaly, in_sample (drawn in the uniform
    sample; flagged rows outside it are there too, with False).
    ``thresholds``: entity_type, detector, model_version, threshold (NaN when the registry lacks it),
    n_rows scored by that version. The ensemble's threshold is ``ENSEMBLE_THRESHOLD``, version 0.
    ``agreement``: entity_type, detectors (the base detectors that flagged an entity, sorted, joined
    by ","; "" when only the ensemble did), n_detectors, n_entities, n_ensemble (of those, flagged
    by the ensemble too). Every entity flagged by any detector is in exactly one row.
    ``evaluation``: ``detections.detector_evaluation`` as stored ("all" row first per detector).
    ``top_anomalies``: entity_type, entity_id, event_timestamp, overall_severity, ensemble_score,
    detectors, n_detectors, description -- the highest ensemble scores per entity type.
    ``top_incidents``: ``TOP_INCIDENT_COLUMNS`` of the incidents overlapping the window, the most
    severe first, then by ensemble score, rows and recency.
    ``missing``: section -> message, for sections whose table does not exist yet.
    """

    start: dt.datetime | None
    end: dt.datetime | None
    timeline: pd.DataFrame
    score_summary: pd.DataFrame
    score_sample: pd.DataFrame
    thresholds: pd.DataFrame
    agreement: pd.DataFrame
    evaluation: pd.DataFrame
    top_anomalies: pd.DataFrame
    top_incidents: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TOP_INCIDENT_COLUMNS)))
    sample_rows: int = DEFAULT_SAMPLE_ROWS
    missing: Mapping[str, str] = field(default_factory=dict)


# --- Loading -------------------------------------------------------------------------------------


def load_report_inputs(
    conn: duckdb.DuckDBPyConnection,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    top_n: int = DEFAULT_TOP_ANOMALIES,
    top_incidents: int = DEFAULT_TOP_INCIDENTS,
    seed: int = DEFAULT_SEED,
) -> ReportInputs:
    """Aggregate the report's inputs over the whole store, or entities whose time is in [start, end).

    Raises :class:`ReportInputsError` when a scores table is missing; other missing tables are
    listed in ``ReportInputs.missing`` and their frames are empty.
    """
    if sample_rows < 0 or top_n < 0 or top_incidents < 0:
        raise ValueError(
            f"sample_rows ({sample_rows}), top_n ({top_n}) and top_incidents ({top_incidents}) must not be negative"
        )
    start, end = _naive(start), _naive(end)
    if start is not None and end is not None and start >= end:
        raise ValueError(f"empty window: start {start} is not before end {end}")
    absent = [
        f"{DETECTIONS_SCHEMA}.{entity.scores_table}"
        for entity in _ENTITIES.values()
        if not table_exists(conn, entity.scores_table, DETECTIONS_SCHEMA)
    ]
    if absent:
        raise ReportInputsError(
            f"cannot build the anomaly report: {', '.join(absent)} does not exist; materialise the "
            f"{ACTIVITY_SCORES} and {ORDER_SCORES} assets (e.g. `anomalens run`) first"
        )
    missing: dict[str, str] = {}
    timeline = pd.concat(
        [_timeline(conn, entity, start, end, missing) for entity in _ENTITIES.values()], ignore_index=True
    )
    inputs = ReportInputs(
        start=start,
        end=end,
        timeline=timeline,
        score_summary=_union(conn, _SUMMARY_SQL, start, end),
        score_sample=_union(conn, _SAMPLE_SQL, start, end, {"n": sample_rows, "seed": seed}),
        thresholds=_thresholds(conn, start, end, missing),
        agreement=_union(conn, _AGREEMENT_SQL, start, end, {"ensemble": DETECTOR_ENSEMBLE}),
        evaluation=_evaluation(conn, missing),
        top_anomalies=_top_anomalies(conn, start, end, top_n, missing),
        top_incidents=_top_incidents(conn, start, end, top_incidents, missing),
        sample_rows=sample_rows,
        missing=missing,
    )
    logger.info(
        "report inputs: %d timeline hours, %d sampled scores, %d detector combinations, %d top anomalies%s",
        len(inputs.timeline),
        len(inputs.score_sample),
        len(inputs.agreement),
        len(inputs.top_anomalies),
        "; missing: " + ", ".join(missing) if missing else "",
    )
    return inputs


def _naive(value: dt.datetime | None) -> dt.datetime | None:
    """DuckDB TIMESTAMP parameters must be naive UTC."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _window(column: str, start: dt.datetime | None, end: dt.datetime | None) -> tuple[str, dict]:
    """A WHERE condition on `column` for [start, end) with its bound parameters."""
    conditions, parameters = ["TRUE"], {}
    if start is not None:
        conditions.append(f"{column} >= $start")
        parameters["start"] = start
    if end is not None:
        conditions.append(f"{column} < $end")
        parameters["end"] = end
    return " AND ".join(conditions), parameters


_SUMMARY_SQL = """
SELECT detector, count(*) AS n_rows, count_if(is_anomaly) AS n_flagged, min(score) AS min_score,
       max(score) AS max_score
FROM {scores} WHERE {where} GROUP BY detector ORDER BY detector"""

# Rows ranked by a seeded hash of their id form a uniform sample that is the same for every detector
# and every run; flagged rows are kept whatever their rank.
_SAMPLE_SQL = """
SELECT detector, score, is_anomaly, in_sample FROM (
    SELECT detector, score, is_anomaly,
           row_number() OVER (PARTITION BY detector ORDER BY hash({id}, $seed), {id}) <= $n AS in_sample
    FROM {scores} WHERE {where})
WHERE in_sample OR is_anomaly
ORDER BY detector, score"""

_AGREEMENT_SQL = """
SELECT coalesce(detectors, '') AS detectors, coalesce(n_detectors, 0) AS n_detectors,
       count(*) AS n_entities, count_if(ensemble) AS n_ensemble
FROM (
    SELECT {id},
           string_agg(detector, ',' ORDER BY detector) FILTER (WHERE detector <> $ensemble) AS detectors,
           count(*) FILTER (WHERE detector <> $ensemble) AS n_detectors,
           bool_or(detector = $ensemble) AS ensemble
    FROM {scores} WHERE is_anomaly AND {where} GROUP BY {id})
GROUP BY ALL ORDER BY n_entities DESC, detectors"""


def _union(
    conn: duckdb.DuckDBPyConnection,
    template: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    parameters: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """`template` run on each entity's scores table, with an entity_type column in front."""
    frames = []
    for entity in _ENTITIES.values():
        where, bound = _window(entity.time_column, start, end)
        sql = template.format(scores=f"{DETECTIONS_SCHEMA}.{entity.scores_table}", id=entity.id_column, where=where)
        frame = conn.execute(sql, {**bound, **(parameters or {})}).df()
        frame.insert(0, "entity_type", entity.entity_type)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _timeline(
    conn: duckdb.DuckDBPyConnection,
    entity: _Entity,
    start: dt.datetime | None,
    end: dt.datetime | None,
    missing: dict[str, str],
) -> pd.DataFrame:
    time = entity.time_column
    where, parameters = _window(time, start, end)
    scored = f"""
        SELECT date_trunc('hour', {time}) AS hour, count(*) AS n_scored, count_if(is_anomaly) AS n_flagged
        FROM {DETECTIONS_SCHEMA}.{entity.scores_table} WHERE detector = $ensemble AND {where} GROUP BY 1"""
    parameters["ensemble"] = DETECTOR_ENSEMBLE
    has_store = table_exists(conn, entity.store_table, STORE_SCHEMA)
    has_labels = has_store and table_exists(conn, SIMULATION_LABELS, STORE_SCHEMA)
    events = (
        f"SELECT date_trunc('hour', {time}) AS hour, count(*) AS n_events "
        f"FROM {STORE_SCHEMA}.{entity.store_table} WHERE {where} GROUP BY 1"
        if has_store
        else "SELECT NULL::TIMESTAMP AS hour, NULL::BIGINT AS n_events WHERE FALSE"
    )
    labelled = (
        f"""SELECT date_trunc('hour', e.{time}) AS hour, count(*) AS n_labelled
            FROM {STORE_SCHEMA}.{SIMULATION_LABELS} AS l JOIN {STORE_SCHEMA}.{entity.store_table} AS e
              ON l.entity_type = $entity_type AND l.entity_id = e.id
            WHERE {where.replace(time, f"e.{time}")} GROUP BY 1"""
        if has_labels
        else "SELECT NULL::TIMESTAMP AS hour, NULL::BIGINT AS n_labelled WHERE FALSE"
    )
    if has_labels:
        parameters["entity_type"] = entity.entity_type
    if not has_store:
        missing.setdefault(
            SECTION_TIMELINE,
            f"{STORE_SCHEMA}.{entity.store_table} does not exist: the timeline counts scored rows only.",
        )
    frame = conn.execute(
        f"""WITH scored AS ({scored}), events AS ({events}), labelled AS ({labelled})
            SELECT hour, coalesce(e.n_events, s.n_scored, 0) AS n_events, coalesce(s.n_scored, 0) AS n_scored,
                   coalesce(s.n_flagged, 0) AS n_flagged, coalesce(l.n_labelled, 0) AS n_labelled
            FROM scored AS s FULL JOIN events AS e USING (hour) LEFT JOIN labelled AS l USING (hour)
            ORDER BY hour""",
        parameters,
    ).df()
    if not frame.empty:  # hours without any event are drawn as zeros, not bridged by a line
        hours = pd.date_range(frame["hour"].min(), frame["hour"].max(), freq="h", name="hour")
        frame = frame.set_index("hour").reindex(hours, fill_value=0).reset_index()
    frame.insert(0, "entity_type", entity.entity_type)
    return frame.astype({column: "int64" for column in ("n_events", "n_scored", "n_flagged", "n_labelled")})


def _thresholds(
    conn: duckdb.DuckDBPyConnection, start: dt.datetime | None, end: dt.datetime | None, missing: dict[str, str]
) -> pd.DataFrame:
    """The threshold of every model version that scored rows of the window (read from the registry,
    not from the pickled models: the report never unpickles a model)."""
    versions = _union(
        conn,
        "SELECT detector, model_version, count(*) AS n_rows FROM {scores} WHERE {where} GROUP BY ALL",
        start,
        end,
    )
    versions["threshold"] = np.where(versions["detector"] == DETECTOR_ENSEMBLE, ENSEMBLE_THRESHOLD, np.nan)
    if table_exists(conn, MODEL_REGISTRY, ML_SCHEMA):
        registry = conn.execute(
            f"""SELECT entity_type, detector, CAST(version AS BIGINT) AS model_version,
                       TRY_CAST(json_extract_string(metrics, '$.threshold') AS DOUBLE) AS registry_threshold
                FROM {ML_SCHEMA}.{MODEL_REGISTRY}"""
        ).df()
        versions = versions.merge(registry, on=["entity_type", "detector", "model_version"], how="left")
        versions["threshold"] = versions["threshold"].fillna(versions.pop("registry_threshold"))
    elif not versions.empty:
        missing[SECTION_THRESHOLDS] = (
            f"{ML_SCHEMA}.{MODEL_REGISTRY} does not exist, so the detectors' thresholds are unknown; "
            "materialise the model assets."
        )
    order = {name: rank for rank, name in enumerate(REPORT_DETECTORS)}
    versions = versions.sort_values(
        ["entity_type", "detector", "model_version"], key=lambda c: c.map(order) if c.name == "detector" else c
    )
    return versions[["entity_type", "detector", "model_version", "threshold", "n_rows"]].reset_index(drop=True)


def _evaluation(conn: duckdb.DuckDBPyConnection, missing: dict[str, str]) -> pd.DataFrame:
    if not table_exists(conn, DETECTOR_EVALUATION, DETECTIONS_SCHEMA):
        missing[SECTION_EVALUATION] = (
            f"{DETECTIONS_SCHEMA}.{DETECTOR_EVALUATION} does not exist yet: materialise the "
            f"{DETECTOR_EVALUATION} asset to measure the detectors against the simulator's labels."
        )
        return pd.DataFrame()
    return conn.execute(
        # One split: out of time when some day was scored after its models' training window.
        f"""SELECT * FROM {DETECTIONS_SCHEMA}.{DETECTOR_EVALUATION}
            WHERE split = (SELECT CASE WHEN bool_or(split = $out_of_time) THEN $out_of_time ELSE $every_row END
                           FROM {DETECTIONS_SCHEMA}.{DETECTOR_EVALUATION})
            ORDER BY entity_type, detector, anomaly_kind <> $all, anomaly_kind""",
        {"all": EVALUATION_ALL_KINDS, "out_of_time": SPLIT_OUT_OF_TIME, "every_row": SPLIT_ALL},
    ).df()


def _top_anomalies(
    conn: duckdb.DuckDBPyConnection,
    start: dt.datetime | None,
    end: dt.datetime | None,
    top_n: int,
    missing: dict[str, str],
) -> pd.DataFrame:
    columns = [
        "entity_type",
        "entity_id",
        "event_timestamp",
        "overall_severity",
        "ensemble_score",
        "detectors",
        "n_detectors",
        "description",
    ]
    if not table_exists(conn, CONSOLIDATED_ANOMALIES, DETECTIONS_SCHEMA):
        missing[SECTION_TOP_ANOMALIES] = (
            f"{DETECTIONS_SCHEMA}.{CONSOLIDATED_ANOMALIES} does not exist yet: materialise the "
            f"{ANOMALIES} and {CONSOLIDATED_ANOMALIES} assets."
        )
        return pd.DataFrame(columns=columns)
    where, parameters = _window("event_timestamp", start, end)
    # The reason shown is the ensemble record's sentence, else that of the strongest detector's record.
    reasons = (
        f"""SELECT entity_type, entity_id, description FROM {DETECTIONS_SCHEMA}.{ANOMALIES} WHERE {where}
            QUALIFY row_number() OVER (PARTITION BY entity_type, entity_id
                                       ORDER BY detector_name = $ensemble DESC, anomaly_score DESC) = 1"""
        if table_exists(conn, ANOMALIES, DETECTIONS_SCHEMA)
        else "SELECT NULL::VARCHAR AS entity_type, NULL::BIGINT AS entity_id, NULL::VARCHAR AS description WHERE FALSE"
    )
    return conn.execute(
        f"""WITH reasons AS ({reasons})
            SELECT c.entity_type, c.entity_id, c.event_timestamp, c.overall_severity, c.ensemble_score,
                   c.detectors, c.n_detectors, r.description
            FROM {DETECTIONS_SCHEMA}.{CONSOLIDATED_ANOMALIES} AS c LEFT JOIN reasons AS r USING (entity_type, entity_id)
            WHERE {where.replace("event_timestamp", "c.event_timestamp")}
            QUALIFY row_number() OVER (PARTITION BY c.entity_type
                                       ORDER BY c.ensemble_score DESC NULLS LAST,
                                                list_position($severities, c.overall_severity) DESC,
                                                c.entity_id) <= $n
            ORDER BY c.entity_type, c.ensemble_score DESC NULLS LAST, c.entity_id""",
        {**parameters, "ensemble": DETECTOR_ENSEMBLE, "severities": list(SEVERITIES), "n": top_n},
    ).df()[columns]


def _top_incidents(
    conn: duckdb.DuckDBPyConnection,
    start: dt.datetime | None,
    end: dt.datetime | None,
    top_n: int,
    missing: dict[str, str],
) -> pd.DataFrame:
    """The incidents that overlap the window, most severe first, then highest score, most rows, latest."""
    if not table_exists(conn, INCIDENTS, DETECTIONS_SCHEMA):
        missing[SECTION_TOP_INCIDENTS] = (
            f"{DETECTIONS_SCHEMA}.{INCIDENTS} does not exist yet: materialise the {INCIDENTS} asset to group the "
            "flagged rows into incidents. Until then the flagged rows are listed one by one."
        )
        return pd.DataFrame(columns=list(TOP_INCIDENT_COLUMNS))
    after, after_parameters = _window("last_seen", start, None)
    before, before_parameters = _window("first_seen", None, end)
    return conn.execute(
        f"""SELECT {", ".join(TOP_INCIDENT_COLUMNS)} FROM {DETECTIONS_SCHEMA}.{INCIDENTS}
            WHERE {after} AND {before}
            ORDER BY list_position($severities, max_severity) DESC, ensemble_score DESC NULLS LAST,
                     row_count DESC, first_seen DESC, incident_id
            LIMIT $n""",
        {**after_parameters, **before_parameters, "severities": list(SEVERITIES), "n": top_n},
    ).df()
