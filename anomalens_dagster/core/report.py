"""The anomaly report: one self-contained HTML file with charts, built from the detections tables.

Three steps, each usable alone (no dagster import):

- :func:`load_report_inputs` aggregates what the report shows in DuckDB and returns small frames
  (:class:`ReportInputs`): hourly timeline, a seeded sample of scores, thresholds, detector
  agreement, the evaluation table and the top anomalies. Nothing reads a whole table into pandas:
  the largest frame is the score sample (``sample_rows`` per detector and entity type, plus every
  flagged row so the tail is drawn in full).
- :func:`render_anomaly_report` turns them into one HTML string. plotly.js is inlined once, so the
  file opens offline and sends no request; every text that comes from data is HTML-escaped.
- :func:`write_report` writes it atomically.

Missing tables
    ``detections.activity_scores`` and ``detections.order_scores`` are the report's subject: when
    either is missing :func:`load_report_inputs` raises :class:`ReportInputsError` saying which
    asset to materialise. Every other table (the store, the model registry, the labels, the
    evaluation, the anomaly records) is optional: its section says what is missing and how to get
    it, and the rest of the report is drawn. Empty scores tables (a window without data) give a
    report whose sections say there is nothing to show.

Window
    ``start`` / ``end`` (naive UTC, half-open) restrict the timeline, the scores, the agreement
    and the top anomalies to entities whose own time (activity timestamp, order creation) lies in
    the window. The evaluation table is the materialised ``detector_evaluation``, which covers every
    scored day; the report says so.

Score distributions
    Normal rows come from a uniform seeded sample (rows ranked by ``hash(id, seed)``), flagged rows
    are all there. Drawn counts of normal rows are scaled up by (normal rows / sampled normal rows),
    so both colours read as row counts of the whole window. A detector's flag is "score above its
    threshold", so the two colours meet at the threshold line.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline
from plotly.subplots import make_subplots

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
    ML_SCHEMA,
    MODEL_REGISTRY,
    ORDER_SCORES,
    ORDERS,
    SEVERITIES,
    SIMULATION_LABELS,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.evaluation import NOT_EVALUATED, SPLIT_ALL, SPLIT_OUT_OF_TIME, is_evaluated
from anomalens_dagster.core.warehouse import table_exists

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SAMPLE_ROWS",
    "DEFAULT_TOP_ANOMALIES",
    "ReportInputs",
    "ReportInputsError",
    "load_report_inputs",
    "render_anomaly_report",
    "write_report",
]

DEFAULT_SAMPLE_ROWS = 20_000  # normal rows per detector and entity type drawn in the distributions
DEFAULT_TOP_ANOMALIES = 15  # rows per entity type in the top-anomalies table

REPORT_DETECTORS: tuple[str, ...] = (*DETECTOR_NAMES, DETECTOR_ENSEMBLE)

# Section keys of `ReportInputs.missing`.
SECTION_TIMELINE = "timeline"
SECTION_THRESHOLDS = "thresholds"
SECTION_EVALUATION = "evaluation"
SECTION_TOP_ANOMALIES = "top_anomalies"


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
    seed: int = DEFAULT_SEED,
) -> ReportInputs:
    """Aggregate the report's inputs over the whole store, or entities whose time is in [start, end).

    Raises :class:`ReportInputsError` when a scores table is missing; other missing tables are
    listed in ``ReportInputs.missing`` and their frames are empty.
    """
    if sample_rows < 0 or top_n < 0:
        raise ValueError(f"sample_rows ({sample_rows}) and top_n ({top_n}) must not be negative")
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


# --- Rendering -----------------------------------------------------------------------------------

_NORMAL_COLOUR = "#4c78a8"
_FLAGGED_COLOUR = "#e45756"
_ENSEMBLE_COLOUR = "#9d2b2b"
_LABEL_COLOUR = "#222222"
_THRESHOLD_COLOUR = "#222222"
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}

_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --card: #ffffff;
        --normal: #4c78a8; --flagged: #e45756; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 15px/1.5 FONT; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
.meta { color: var(--muted); margin: 0 0 20px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px;
          margin: 0 0 22px; }
h2 { margin: 0 0 2px; font-size: 19px; }
h3 { margin: 18px 0 6px; font-size: 15px; }
.how { color: var(--muted); margin: 0 0 10px; font-size: 13.5px; }
.missing { background: #fff8e1; border-left: 4px solid #f0b400; padding: 8px 12px; margin: 8px 0; }
.cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card .value { font-size: 24px; font-weight: 600; }
.card .label { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr.pooled td { font-weight: 600; border-top: 2px solid #cbd2d9; }
tr.kind td:nth-child(2) { padding-left: 22px; color: var(--muted); }
tr.kind td { font-size: 12.5px; }
td.reason { min-width: 420px; }
td.nowrap { white-space: nowrap; }
.chip { display: inline-block; margin: 0 3px 2px 0; padding: 0 6px; border-radius: 4px; font-size: 11.5px;
        background: #e8ecf1; color: #3e4c59; }
.chip.ensemble { background: #f6d5d5; color: #7a1f1f; }
.sev { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.sev-High { background: #fde2e1; color: #a61b1b; }
.sev-Medium { background: #fff1d6; color: #8a5a00; }
.sev-Low { background: #e3eefc; color: #1d4f91; }
.na { color: #9aa5b1; }
footer { color: var(--muted); font-size: 12.5px; text-align: center; }
""".replace("FONT", _FONT)


def render_anomaly_report(inputs: ReportInputs, title: str, generated_at: dt.datetime) -> str:
    """The whole report as one HTML document that opens offline (plotly.js inlined once)."""
    sections = [
        _summary_section(inputs),
        _timeline_section(inputs),
        _distribution_section(inputs),
        _agreement_section(inputs),
        _evaluation_section(inputs),
        _top_anomalies_section(inputs),
    ]
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
</head>
<body>
<main>
<header>
<h1>{_e(title)}</h1>
<p class="meta">Generated {_e(_when(generated_at))} · {_e(_window_text(inputs))}</p>
</header>
{"".join(sections)}
<footer>AnomaLens anomaly report · self-contained: opens offline, makes no network request.</footer>
</main>
</body>
</html>
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _window_text(inputs: ReportInputs) -> str:
    if inputs.start is None and inputs.end is None:
        hours = inputs.timeline["hour"]
        if hours.empty:
            return "whole store (no scored data yet)"
        last = hours.max() + pd.Timedelta(hours=1)
        return f"whole store: {hours.min():%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
    start = "the beginning" if inputs.start is None else f"{inputs.start:%Y-%m-%d %H:%M}"
    end = "now" if inputs.end is None else f"{inputs.end:%Y-%m-%d %H:%M}"
    return f"window: {start} to {end} UTC"


def _section(anchor: str, heading: str, how: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(heading)}</h2>\n<p class="how">{_e(how)}</p>\n{body}\n</section>\n'


def _missing(message: str) -> str:
    return f'<p class="missing">{_e(message)}</p>'


def _figure_html(figure: go.Figure) -> str:
    figure.update_layout(
        font={"family": _FONT, "size": 12, "color": "#1f2933"},
        paper_bgcolor="white",
        plot_bgcolor="white",
        hoverlabel={"font": {"family": _FONT}},
    )
    figure.update_xaxes(showline=True, linecolor="#cbd2d9", gridcolor="#eef0f3", zeroline=False)
    figure.update_yaxes(showline=True, linecolor="#cbd2d9", gridcolor="#eef0f3", zeroline=False)
    return figure.to_html(full_html=False, include_plotlyjs=False, config=_PLOTLY_CONFIG)


def _count(value: float) -> str:
    return f"{int(value):,}"


def _metric(value: float, digits: int = 3) -> str:
    return '<span class="na">—</span>' if value is None or pd.isna(value) else f"{value:.{digits}f}"


# Summary ----------------------------------------------------------------------------------------


def _summary_section(inputs: ReportInputs) -> str:
    summary = inputs.score_summary
    cards = []
    for entity in _ENTITIES.values():
        ensemble = summary[(summary["entity_type"] == entity.entity_type) & (summary["detector"] == DETECTOR_ENSEMBLE)]
        rows = int(ensemble["n_rows"].sum())
        flagged = int(ensemble["n_flagged"].sum())
        share = f"{flagged / rows:.2%} of them" if rows else "nothing scored"
        labelled = int(inputs.timeline.loc[inputs.timeline["entity_type"] == entity.entity_type, "n_labelled"].sum())
        cards.append(_card(_count(rows), f"{entity.label} scored"))
        cards.append(_card(_count(flagged), f"{entity.label} flagged by the ensemble ({share})"))
        if labelled:
            cards.append(_card(_count(labelled), f"{entity.label} injected by the simulator (labels)"))
    body = f'<div class="cards">{"".join(cards)}</div>\n{_thresholds_table(inputs)}'
    if SECTION_THRESHOLDS in inputs.missing:
        body += _missing(inputs.missing[SECTION_THRESHOLDS])
    return _section(
        "summary",
        "Summary",
        "What was scored, what the ensemble flagged, and the thresholds of the models that scored it.",
        body,
    )


def _card(value: str, label: str) -> str:
    return f'<div class="card"><div class="value">{_e(value)}</div><div class="label">{_e(label)}</div></div>'


def _thresholds_table(inputs: ReportInputs) -> str:
    if inputs.thresholds.empty:
        return ""
    summary = inputs.score_summary.set_index(["entity_type", "detector"])
    rows = []
    for row in inputs.thresholds.itertuples(index=False):
        key = (row.entity_type, row.detector)
        flagged = int(summary.loc[key, "n_flagged"]) if key in summary.index else 0
        scored = int(summary.loc[key, "n_rows"]) if key in summary.index else 0
        version = "—" if row.detector == DETECTOR_ENSEMBLE else f"v{int(row.model_version)}"
        threshold = "unknown" if pd.isna(row.threshold) else f"{row.threshold:.4g}"
        rate = f"{flagged / scored:.2%}" if scored else "—"
        rows.append(
            f"<tr><td>{_e(row.entity_type)}</td><td>{_e(row.detector)}</td><td>{_e(version)}</td>"
            f'<td class="num">{_e(threshold)}</td><td class="num">{_count(row.n_rows)}</td>'
            f'<td class="num">{_count(flagged)}</td><td class="num">{rate}</td></tr>'
        )
    return (
        "<h3>Models and thresholds</h3><table><thead><tr><th>Entity</th><th>Detector</th><th>Version</th>"
        '<th class="num">Threshold</th><th class="num">Rows scored</th><th class="num">Flagged</th>'
        f'<th class="num">Flag rate</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


# Timeline ---------------------------------------------------------------------------------------


def _timeline_section(inputs: ReportInputs) -> str:
    how = (
        "Blue: events per hour (left axis). Red bars: events the ensemble flagged; black diamonds: anomalies the "
        "simulator injected (right axis). A diamond without a red bar is a miss, a bar without one a false alarm."
    )
    timeline = inputs.timeline
    if timeline.empty:
        return _section("timeline", "Timeline", how, _missing("No scored events in this window."))
    figure = make_subplots(
        rows=len(_ENTITIES),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=[entity.label.capitalize() for entity in _ENTITIES.values()],
        specs=[[{"secondary_y": True}] for _ in _ENTITIES],
    )
    labels_in_legend = events_in_legend = False
    for row, entity in enumerate(_ENTITIES.values(), start=1):
        frame = timeline[timeline["entity_type"] == entity.entity_type]
        if frame.empty:
            continue
        first, events_in_legend = not events_in_legend, True
        # A step holds its value until the next point: one more point closes the last hour.
        closing = frame["hour"].max() + pd.Timedelta(hours=1)
        figure.add_trace(
            go.Scatter(
                x=[*frame["hour"], closing],
                y=[*frame["n_events"], frame["n_events"].iloc[-1]],
                name="events per hour",
                mode="lines",
                line={"color": _NORMAL_COLOUR, "width": 1.5, "shape": "hv"},
                fill="tozeroy",
                fillcolor="rgba(76,120,168,0.18)",
                legendgroup="events",
                showlegend=first,
                hovertemplate="%{x|%Y-%m-%d %H:00}<br>%{y:,} events<extra></extra>",
            ),
            row=row,
            col=1,
        )
        middle = frame["hour"] + pd.Timedelta(minutes=30)  # bars and markers sit inside their hour's step
        figure.add_trace(
            go.Bar(
                x=middle,
                y=frame["n_flagged"],
                customdata=frame["hour"],
                name="flagged by the ensemble",
                marker={"color": _FLAGGED_COLOUR},
                opacity=0.85,
                legendgroup="flagged",
                showlegend=first,
                hovertemplate="%{customdata|%Y-%m-%d %H:00}<br>%{y:,} flagged<extra></extra>",
            ),
            row=row,
            col=1,
            secondary_y=True,
        )
        labelled = frame["n_labelled"] > 0
        if labelled.any():
            figure.add_trace(
                go.Scatter(
                    x=middle[labelled],
                    y=frame.loc[labelled, "n_labelled"],
                    customdata=frame.loc[labelled, "hour"],
                    name="injected (simulator labels)",
                    mode="markers",
                    marker={"symbol": "diamond", "size": 7, "color": _LABEL_COLOUR},
                    legendgroup="labelled",
                    showlegend=not labels_in_legend,
                    hovertemplate="%{customdata|%Y-%m-%d %H:00}<br>%{y:,} injected<extra></extra>",
                ),
                row=row,
                col=1,
                secondary_y=True,
            )
            labels_in_legend = True
        top = max(int(frame[["n_flagged", "n_labelled"]].to_numpy().max(initial=0)), 1)
        step = _nice_step(top / 5)
        figure.update_yaxes(
            title_text="events",
            rangemode="tozero",
            tickmode="linear",
            tick0=0,
            dtick=_nice_step(max(int(frame["n_events"].max()), 1) / 5),
            row=row,
            col=1,
            secondary_y=False,
        )
        figure.update_yaxes(
            title_text="flagged / injected",
            range=[0, top * 1.12],
            tickmode="linear",
            tick0=0,
            dtick=step,
            showgrid=False,
            color=_FLAGGED_COLOUR,
            row=row,
            col=1,
            secondary_y=True,
        )
    figure.update_layout(
        height=520,
        bargap=0.1,
        margin={"l": 60, "r": 60, "t": 60, "b": 30},
        legend={"orientation": "h", "y": 1.14, "x": 0},
    )
    notes = _missing(inputs.missing[SECTION_TIMELINE]) if SECTION_TIMELINE in inputs.missing else ""
    return _section("timeline", "Timeline", how, notes + _figure_html(figure))


def _nice_step(raw: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at least `raw`: whole-number ticks for counts."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= raw:
                return step * factor
        step *= 10


# Score distributions ----------------------------------------------------------------------------

_BINS = 60
# A detector whose positive scores span more than this ratio (max / 1st percentile) is drawn on a
# log x-axis of at most _MAX_LOG_SPAN; lower scores, zeros included (DBSCAN's rows inside a dense
# region), join the first bar.
_LOG_SPAN = 30.0
_MAX_LOG_SPAN = 1e4


def _distribution_section(inputs: ReportInputs) -> str:
    how = (
        "Rows per score bin on a log count axis (higher score = more anomalous); the dashed line is the threshold "
        f"and red rows above it are flagged. Normal rows are estimated from a seeded sample of {inputs.sample_rows:,} "
        "per detector; flagged rows are all counted."
    )
    if inputs.score_summary.empty:
        return _section("scores", "Score distributions", how, _missing("No scores in this window."))
    detectors = [name for name in REPORT_DETECTORS if name in set(inputs.score_summary["detector"])]
    titles = [
        f"{entity.entity_type} · {detector}<br><sup>{_e(_threshold_label(inputs, entity.entity_type, detector))}</sup>"
        for entity in _ENTITIES.values()
        for detector in detectors
    ]
    figure = make_subplots(
        rows=len(_ENTITIES),
        cols=len(detectors),
        subplot_titles=titles,
        horizontal_spacing=0.05,
        vertical_spacing=0.24,
    )
    for row, entity in enumerate(_ENTITIES.values(), start=1):
        for col, detector in enumerate(detectors, start=1):
            _add_distribution(figure, inputs, entity.entity_type, detector, row, col, first=(row, col) == (1, 1))
    figure.update_layout(
        height=660,
        bargap=0,
        barmode="stack",
        margin={"l": 50, "r": 20, "t": 70, "b": 40},
        legend={"orientation": "h", "y": -0.1, "x": 0},
    )
    figure.update_annotations(font_size=13)
    notes = _missing(inputs.missing[SECTION_THRESHOLDS]) if SECTION_THRESHOLDS in inputs.missing else ""
    return _section("scores", "Score distributions", how, notes + _figure_html(figure))


def _threshold_label(inputs: ReportInputs, entity_type: str, detector: str) -> str:
    rows = inputs.thresholds[
        (inputs.thresholds["entity_type"] == entity_type) & (inputs.thresholds["detector"] == detector)
    ]
    if rows.empty:
        return "no scores"
    parts = []
    for row in rows.itertuples(index=False):
        value = "unknown" if pd.isna(row.threshold) else f"{row.threshold:.4g}"
        parts.append(value if detector == DETECTOR_ENSEMBLE else f"{value} (v{int(row.model_version)})")
    return "threshold " + ", ".join(parts)


def _add_distribution(
    figure: go.Figure, inputs: ReportInputs, entity_type: str, detector: str, row: int, col: int, first: bool
) -> None:
    sample = inputs.score_sample[
        (inputs.score_sample["entity_type"] == entity_type) & (inputs.score_sample["detector"] == detector)
    ]
    summary = inputs.score_summary[
        (inputs.score_summary["entity_type"] == entity_type) & (inputs.score_summary["detector"] == detector)
    ]
    if sample.empty or summary.empty:
        return
    scores = sample["score"].to_numpy(np.float64)
    flagged = sample["is_anomaly"].to_numpy(bool)
    n_normal = int(summary["n_rows"].iloc[0] - summary["n_flagged"].iloc[0])
    sampled_normal = int((~flagged & sample["in_sample"].to_numpy(bool)).sum())
    weights = np.where(flagged, 1.0, n_normal / sampled_normal if sampled_normal else 0.0)
    thresholds = inputs.thresholds.loc[
        (inputs.thresholds["entity_type"] == entity_type) & (inputs.thresholds["detector"] == detector), "threshold"
    ].dropna()
    edges, log_x = _bin_edges(scores, thresholds.to_numpy(np.float64))
    position = np.log10(np.maximum(scores, edges[0])) if log_x else scores
    axis_edges = np.log10(edges) if log_x else edges
    centres = (axis_edges[:-1] + axis_edges[1:]) / 2
    widths = np.diff(axis_edges)
    hover_ranges = [f"{low:.4g} – {high:.4g}" for low, high in zip(edges[:-1], edges[1:], strict=True)]
    if log_x:
        hover_ranges[0] = f"≤ {edges[1]:.4g}"  # the first bar holds every lower score
    for name, mask, colour in (("normal", ~flagged, _NORMAL_COLOUR), ("flagged", flagged, _FLAGGED_COLOUR)):
        counts, _ = np.histogram(position[mask], bins=axis_edges, weights=weights[mask])
        counts = np.round(counts)
        shown = counts > 0
        figure.add_trace(
            go.Bar(
                x=centres[shown],
                y=counts[shown],
                width=widths[shown],
                customdata=np.asarray(hover_ranges, dtype=object)[shown],
                name=f"{name} rows",
                marker={"color": colour, "line": {"width": 0}},
                legendgroup=name,
                showlegend=first,
                hovertemplate=f"score %{{customdata}}<br>%{{y:,.0f}} {name} rows<extra></extra>",
            ),
            row=row,
            col=col,
        )
    top = max(float(np.histogram(position, bins=axis_edges, weights=weights)[0].max(initial=1.0)), 1.0)
    for threshold in thresholds:
        x = math.log10(threshold) if log_x else threshold
        figure.add_trace(
            go.Scatter(
                x=[x, x],
                y=[0.5, top * 3],
                mode="lines",
                line={"color": _THRESHOLD_COLOUR, "dash": "dash", "width": 1.5},
                name="threshold",
                legendgroup="threshold",
                showlegend=first,
                hovertemplate=f"threshold {threshold:.4g}<extra></extra>",
            ),
            row=row,
            col=col,
        )
    figure.update_yaxes(type="log", range=[math.log10(0.5), math.log10(top * 3)], dtick=1, row=row, col=col)
    if log_x:
        low, high = math.floor(axis_edges[0]), math.ceil(axis_edges[-1])
        ticks = [t for t in range(low, high + 1) if axis_edges[0] - 0.05 <= t <= axis_edges[-1] + 0.05]
        figure.update_xaxes(
            tickvals=ticks,
            ticktext=[f"{10.0**t:g}" for t in ticks],
            title_text="score (log)",
            title_font_size=11,
            row=row,
            col=col,
        )
    else:
        figure.update_xaxes(title_text="score", title_font_size=11, nticks=5, row=row, col=col)
    if col == 1:
        figure.update_yaxes(title_text="rows", row=row, col=col)


def _bin_edges(scores: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, bool]:
    """Bin edges covering the scores and thresholds, log-spaced when the positive scores span decades."""
    values = np.concatenate([scores, thresholds])
    positive = values[values > 0]
    if positive.size and positive.max() / np.quantile(positive, 0.01) > _LOG_SPAN:
        high = float(positive.max())
        low = max(float(np.quantile(positive, 0.01)), high / _MAX_LOG_SPAN)
        if thresholds.size:
            low = min(low, float(thresholds.min()))
        return np.geomspace(low * 0.9, high * 1.0001, _BINS + 1), True
    low, high = float(values.min()), float(values.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high + (high - low) * 1e-6, _BINS + 1), False


# Agreement --------------------------------------------------------------------------------------

_MAX_COMBINATIONS = 12


def _agreement_section(inputs: ReportInputs) -> str:
    how = (
        "Each column is one combination of detectors (filled dots) and its bar counts the entities flagged by "
        "exactly that combination; the dark part was flagged by the ensemble too. One dot: a lone opinion."
    )
    agreement = inputs.agreement
    if agreement.empty or int(agreement["n_entities"].sum()) == 0:
        return _section(
            "agreement", "Detector agreement", how, _missing("No detector flagged anything in this window.")
        )
    entities = [entity for entity in _ENTITIES.values() if (agreement["entity_type"] == entity.entity_type).any()]
    figure = make_subplots(
        rows=2,
        cols=len(entities),
        shared_xaxes=True,
        row_heights=[0.62, 0.38],
        vertical_spacing=0.03,
        horizontal_spacing=0.12,
        subplot_titles=[
            f"{entity.label.capitalize()} ({_count(agreement.loc[agreement['entity_type'] == entity.entity_type, 'n_entities'].sum())} flagged)"
            for entity in entities
        ]
        + [""] * len(entities),
    )
    for col, entity in enumerate(entities, start=1):
        _add_upset(figure, agreement[agreement["entity_type"] == entity.entity_type], col, first=col == 1)
    figure.update_layout(
        height=560,
        barmode="stack",
        margin={"l": 110, "r": 20, "t": 60, "b": 20},
        legend={"orientation": "h", "y": 1.12, "x": 0},
    )
    return _section("agreement", "Detector agreement", how, _figure_html(figure))


def _add_upset(figure: go.Figure, combos: pd.DataFrame, col: int, first: bool) -> None:
    combos = combos.sort_values(["n_entities", "n_detectors"], ascending=[False, True]).head(_MAX_COMBINATIONS)
    positions = list(range(len(combos)))
    members = [set(filter(None, str(names).split(","))) for names in combos["detectors"]]
    labels = [" + ".join(sorted(m)) or "ensemble only" for m in members]
    ensemble = combos["n_ensemble"].to_numpy(np.int64)
    others = combos["n_entities"].to_numpy(np.int64) - ensemble
    for name, values, colour in (
        ("also flagged by the ensemble", ensemble, _ENSEMBLE_COLOUR),
        ("not flagged by the ensemble", others, "#f4a3a0"),
    ):
        figure.add_trace(
            go.Bar(
                x=positions,
                y=values,
                name=name,
                marker={"color": colour},
                customdata=[_e(label) for label in labels],
                legendgroup=name,
                showlegend=first,
                hovertemplate=f"%{{customdata}}<br>%{{y:,}} {name}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    totals = combos["n_entities"].to_numpy(np.int64)
    figure.add_trace(
        go.Scatter(
            x=positions,
            y=totals,
            mode="text",
            text=[f"{value:,}" for value in totals],
            textposition="top center",
            textfont={"size": 10},
            showlegend=False,
            hoverinfo="skip",
        ),
        row=1,
        col=col,
    )
    figure.update_yaxes(title_text="entities" if col == 1 else None, rangemode="tozero", row=1, col=col)
    figure.update_yaxes(range=[0, float(totals.max()) * 1.15], row=1, col=col)
    # The dot matrix: one row per detector, a filled dot where the combination includes it.
    for position, member in zip(positions, members, strict=True):
        ys = [name for name in DETECTOR_NAMES if name in member]
        if len(ys) > 1:  # drawn first, so the dots sit on top of the line
            figure.add_trace(
                go.Scatter(
                    x=[position] * len(ys),
                    y=ys,
                    mode="lines",
                    line={"color": "#1f2933", "width": 2},
                    showlegend=False,
                    hoverinfo="skip",
                ),
                row=2,
                col=col,
            )
        figure.add_trace(
            go.Scatter(
                x=[position] * len(DETECTOR_NAMES),
                y=list(DETECTOR_NAMES),
                mode="markers",
                marker={"size": 11, "color": ["#1f2933" if name in member else "#d9dee4" for name in DETECTOR_NAMES]},
                showlegend=False,
                hoverinfo="skip",
            ),
            row=2,
            col=col,
        )
    figure.update_xaxes(showticklabels=False, showgrid=False, range=[-0.6, len(positions) - 0.4], row=1, col=col)
    figure.update_xaxes(showticklabels=False, showgrid=False, range=[-0.6, len(positions) - 0.4], row=2, col=col)
    figure.update_yaxes(
        categoryorder="array", categoryarray=list(reversed(DETECTOR_NAMES)), showgrid=False, row=2, col=col
    )


# Evaluation -------------------------------------------------------------------------------------

_METRICS: tuple[tuple[str, str], ...] = (
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("pr_auc", "PR-AUC"),
)


def _evaluation_section(inputs: ReportInputs) -> str:
    how = (
        "Against the simulator's labels over every scored day (not only this window). Bold rows pool all kinds, "
        "the rows below take one kind against normal rows. Greener is better; — is undefined (nothing flagged / "
        "nothing to find). Episode recall: injected episodes with at least one flagged row."
    )
    if SECTION_EVALUATION in inputs.missing:
        return _section("evaluation", "Detector evaluation", how, _missing(inputs.missing[SECTION_EVALUATION]))
    evaluation = inputs.evaluation
    if evaluation.empty:
        return _section("evaluation", "Detector evaluation", how, _missing("The evaluation table is empty."))
    if not is_evaluated(evaluation):
        return _section("evaluation", "Detector evaluation", how, _missing(f"{NOT_EVALUATED.capitalize()}."))
    tables = []
    order = {name: rank for rank, name in enumerate(REPORT_DETECTORS)}
    for entity in _ENTITIES.values():
        rows = evaluation[evaluation["entity_type"] == entity.entity_type]
        if rows.empty:
            continue
        rows = rows.assign(
            _detector_rank=rows["detector"].map(order).fillna(len(order)),
            _pooled=rows["anomaly_kind"] != EVALUATION_ALL_KINDS,
        ).sort_values(["_detector_rank", "detector", "_pooled", "anomaly_kind"])
        body = "".join(_evaluation_row(row) for row in rows.to_dict("records"))
        head = (
            "<tr><th>Detector</th><th>Anomaly kind</th>"
            '<th class="num">Flagged</th><th class="num">TP</th><th class="num">FP</th><th class="num">FN</th>'
            + "".join(f'<th class="num">{label}</th>' for _, label in _METRICS)
            + '<th class="num">Episodes</th><th class="num">Episode recall</th>'
            '<th class="num">Normal flag rate</th></tr>'
        )
        tables.append(
            f"<h3>{_e(entity.label.capitalize())}</h3><table><thead>{head}</thead><tbody>{body}</tbody></table>"
        )
    return _section("evaluation", "Detector evaluation", how, "\n".join(tables))


def _evaluation_row(row: Mapping[str, object]) -> str:
    pooled = row["anomaly_kind"] == EVALUATION_ALL_KINDS
    cells = [
        f"<td>{_e(row['detector']) if pooled else ''}</td>",
        f"<td>{'all kinds' if pooled else _e(row['anomaly_kind'])}</td>",
        *(
            f'<td class="num">{_count(row[c])}</td>'
            for c in ("n_flagged", "true_positives", "false_positives", "false_negatives")
        ),
        *(_metric_cell(row[column]) for column, _ in _METRICS),
        f'<td class="num">{_count(row["n_episodes_detected"])} / {_count(row["n_episodes"])}</td>',
        _metric_cell(row["episode_recall"]),
        f'<td class="num">{_metric(row["normal_flag_rate"])}</td>',
    ]
    return f'<tr class="{"pooled" if pooled else "kind"}">{"".join(cells)}</tr>'


def _metric_cell(value: object) -> str:
    """A rate in [0, 1] tinted from white (0) to green (1), so good and bad detectors stand out."""
    if value is None or pd.isna(value):
        return f'<td class="num">{_metric(math.nan)}</td>'
    share = min(max(float(value), 0.0), 1.0)
    return (
        f'<td class="num" style="background: rgba(46, 160, 67, {0.05 + 0.4 * share:.2f})">{_metric(float(value))}</td>'
    )


# Top anomalies ----------------------------------------------------------------------------------


_SHORT = {
    "zscore": "Z",
    "isolation_forest": "IF",
    "dbscan": "DB",
    "autoencoder": "AE",
    DETECTOR_ENSEMBLE: "ENS",
}


def _top_anomalies_section(inputs: ReportInputs) -> str:
    how = (
        "Highest ensemble scores (median of the detectors' score / threshold, capped; flagged above "
        f"{ENSEMBLE_THRESHOLD:g}) with the detectors that fired and the recorded reason. "
        + ", ".join(f"{_SHORT[name]} = {name}" for name in REPORT_DETECTORS)
        + "."
    )
    if SECTION_TOP_ANOMALIES in inputs.missing:
        return _section("top-anomalies", "Top anomalies", how, _missing(inputs.missing[SECTION_TOP_ANOMALIES]))
    top = inputs.top_anomalies
    if top.empty:
        return _section("top-anomalies", "Top anomalies", how, _missing("No anomalies in this window."))
    tables = []
    for entity in _ENTITIES.values():
        rows = top[top["entity_type"] == entity.entity_type]
        if rows.empty:
            continue
        body = "".join(_top_row(rank, row) for rank, row in enumerate(rows.to_dict("records"), start=1))
        tables.append(
            f'<h3>{_e(entity.label.capitalize())}</h3><table><thead><tr><th class="num">#</th><th>ID</th><th>Time (UTC)</th>'
            '<th>Severity</th><th class="num">Ensemble score</th><th>Detectors</th><th>Reason</th></tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
    return _section("top-anomalies", "Top anomalies", how, "\n".join(tables))


def _top_row(rank: int, row: Mapping[str, object]) -> str:
    severity = str(row["overall_severity"])
    css = severity if severity in SEVERITIES else "Low"
    when = row["event_timestamp"]
    when_text = "—" if when is None or pd.isna(when) else f"{pd.Timestamp(when):%Y-%m-%d %H:%M:%S}"
    names = [] if row["detectors"] is None or pd.isna(row["detectors"]) else str(row["detectors"]).split(",")
    order = {name: position for position, name in enumerate(REPORT_DETECTORS)}
    chips = "".join(
        f'<span class="chip{" ensemble" if name == DETECTOR_ENSEMBLE else ""}" title="{_e(name)}">'
        f"{_e(_SHORT.get(name, name))}</span>"
        for name in sorted(names, key=lambda name: order.get(name, len(order)))
    )
    description = row["description"]
    reason = '<span class="na">no record</span>' if description is None or pd.isna(description) else _e(description)
    return (
        f'<tr><td class="num">{rank}</td><td>{_e(row["entity_id"])}</td><td class="nowrap">{_e(when_text)}</td>'
        f'<td><span class="sev sev-{_e(css)}">{_e(severity)}</span></td>'
        f'<td class="num">{_metric(row["ensemble_score"], 2)}</td><td class="nowrap">{chips}</td>'
        f'<td class="reason">{reason}</td></tr>'
    )


# --- Writing -------------------------------------------------------------------------------------


def write_report(html_text: str, path: str | os.PathLike[str]) -> Path:
    """Write the report to `path` atomically (a temporary file in the same folder, then os.replace).

    Creates the folder. A reader never sees a half-written file, and a failed write leaves the
    previous report in place and no temporary file behind. Returns the absolute path.
    """
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(html_text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; a report is meant to be shared
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("wrote the anomaly report (%d bytes) to %s", len(html_text.encode("utf-8")), target)
    return target
