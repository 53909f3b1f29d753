"""The report's table sections: the summary cards and thresholds, the evaluation and the top incidents."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from anomalens_dagster.constants import (
    DETECTOR_ENSEMBLE,
    ENSEMBLE_THRESHOLD,
    EVALUATION_ALL_KINDS,
    SEVERITIES,
)
from anomalens_dagster.core.descriptions import duration_text
from anomalens_dagster.core.evaluation import NOT_EVALUATED, is_evaluated
from anomalens_dagster.core.report.html import (
    _count,
    _e,
    _metric,
    _missing,
    _section,
)
from anomalens_dagster.core.report.inputs import (
    _ENTITIES,
    REPORT_DETECTORS,
    SECTION_EVALUATION,
    SECTION_THRESHOLDS,
    SECTION_TOP_ANOMALIES,
    SECTION_TOP_INCIDENTS,
    ReportInputs,
)

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


# Top incidents ----------------------------------------------------------------------------------


def _top_incidents_section(inputs: ReportInputs) -> str:
    """The incidents to look at first; the flagged rows one by one while no incident was grouped."""
    if SECTION_TOP_INCIDENTS in inputs.missing:
        return _missing(inputs.missing[SECTION_TOP_INCIDENTS]) + _top_anomalies_section(inputs)
    how = (
        "Flagged rows grouped into incidents (linked by session, customer, or the IP of anonymous rows, within the "
        "gap set in the settings), the most severe first, then by the highest ensemble score among their rows, "
        "then by size. Severity is the worst of any detector's record of the rows; the summary is written from "
        "the rows' facts. Suppressed: every row is covered by an analyst's allow rule (no alert)."
    )
    top = inputs.top_incidents
    if top.empty:
        return _section("top-incidents", "Top incidents", how, _missing("No incidents in this window."))
    body = "".join(_incident_row(rank, row) for rank, row in enumerate(top.to_dict("records"), start=1))
    table = (
        '<table><thead><tr><th class="num">#</th><th>Incident</th><th>Type</th><th>First seen (UTC)</th>'
        '<th class="num">Lasted</th><th class="num">Rows</th><th>Severity</th><th class="num">Ensemble score</th>'
        f"<th>Top features</th><th>What happened</th></tr></thead><tbody>{body}</tbody></table>"
    )
    return _section("top-incidents", "Top incidents", how, table)


def _incident_row(rank: int, row: Mapping[str, object]) -> str:
    severity = str(row["max_severity"])
    css = severity if severity in SEVERITIES else "Low"
    first, last = pd.Timestamp(row["first_seen"]), pd.Timestamp(row["last_seen"])
    features = row["top_features"] if row["top_features"] is not None else []
    chips = "".join(f'<span class="chip">{_e(name)}</span>' for name in features)
    suppressed = ' <span class="chip" title="covered by an allow rule">suppressed</span>' if row["suppressed"] else ""
    return (
        f'<tr><td class="num">{rank}</td><td class="nowrap">{_e(row["incident_id"])}</td>'
        f'<td>{_e(row["entity_type"])}</td><td class="nowrap">{first:%Y-%m-%d %H:%M:%S}</td>'
        f'<td class="num">{_e(_lasted((last - first).total_seconds()))}</td>'
        f'<td class="num">{_count(row["row_count"])}</td>'
        f'<td><span class="sev sev-{_e(css)}">{_e(severity)}</span>{suppressed}</td>'
        f'<td class="num">{_metric(row["ensemble_score"], 2)}</td><td>{chips}</td>'
        f'<td class="reason">{_e(row["summary"])}</td></tr>'
    )


def _lasted(seconds: float) -> str:
    return "—" if seconds <= 0 else duration_text(seconds)
