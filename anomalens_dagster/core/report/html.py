"""The report's look and the HTML helpers every section uses: colours, CSS, escaping, section frames."""

from __future__ import annotations

import datetime as dt
import html

import pandas as pd
import plotly.graph_objects as go

from anomalens_dagster.core.report.inputs import ReportInputs

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
