"""The report's chart sections: the timeline, the score distributions and the detectors' agreement."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from anomalens_dagster.constants import (
    DETECTOR_ENSEMBLE,
    DETECTOR_NAMES,
)
from anomalens_dagster.core.report.html import (
    _ENSEMBLE_COLOUR,
    _FLAGGED_COLOUR,
    _LABEL_COLOUR,
    _NORMAL_COLOUR,
    _THRESHOLD_COLOUR,
    _count,
    _e,
    _figure_html,
    _missing,
    _section,
)
from anomalens_dagster.core.report.inputs import (
    _ENTITIES,
    REPORT_DETECTORS,
    SECTION_THRESHOLDS,
    SECTION_TIMELINE,
    ReportInputs,
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
