"""The anomaly report: one self-contained HTML file with charts, built from the detections tables.

One module per concern: `inputs` (queries into small frames), `html` (look and helpers), `charts` and
`tables` (the sections), `document` (the page and its write).

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

from anomalens_dagster.core.report.document import render_anomaly_report, write_report
from anomalens_dagster.core.report.inputs import (
    DEFAULT_SAMPLE_ROWS,
    DEFAULT_TOP_ANOMALIES,
    ReportInputs,
    ReportInputsError,
    load_report_inputs,
)

__all__ = [
    "DEFAULT_SAMPLE_ROWS",
    "DEFAULT_TOP_ANOMALIES",
    "ReportInputs",
    "ReportInputsError",
    "load_report_inputs",
    "render_anomaly_report",
    "write_report",
]
