"""The whole report as one HTML document (:func:`render_anomaly_report`) and its atomic write."""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from pathlib import Path

import plotly.offline

from anomalens_dagster.core.report.charts import _agreement_section, _distribution_section, _timeline_section
from anomalens_dagster.core.report.html import _CSS, _e, _when, _window_text
from anomalens_dagster.core.report.inputs import ReportInputs
from anomalens_dagster.core.report.tables import _evaluation_section, _summary_section, _top_incidents_section

logger = logging.getLogger(__name__)


def render_anomaly_report(inputs: ReportInputs, title: str, generated_at: dt.datetime) -> str:
    """The whole report as one HTML document that opens offline (plotly.js inlined once)."""
    sections = [
        _summary_section(inputs),
        _timeline_section(inputs),
        _distribution_section(inputs),
        _agreement_section(inputs),
        _evaluation_section(inputs),
        _top_incidents_section(inputs),
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
