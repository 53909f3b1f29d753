"""`anomalens`: the command-line front door (runs through Dagster, so runs show in the UI).

One module per concern: `pipeline` (run, ingest, export-sample, dev), `queries` (what the commands
print and `anomalies`), `incidents` (`incidents`, and the top incidents `run` prints), `settings` (the
settings file), `maintenance` (rebuild, forget).
"""

from __future__ import annotations

import click

from anomalens_dagster.cli.common import RANGE_END_TAG, RANGE_START_TAG, run_config_for
from anomalens_dagster.cli.feedback import feedback, thresholds
from anomalens_dagster.cli.incidents import incidents
from anomalens_dagster.cli.maintenance import forget, rebuild, stale_days
from anomalens_dagster.cli.pipeline import dev, export_sample, ingest, run
from anomalens_dagster.cli.queries import anomalies
from anomalens_dagster.cli.settings import settings

__all__ = ["RANGE_END_TAG", "RANGE_START_TAG", "main", "run_config_for", "stale_days"]


@click.group()
def main() -> None:
    """AnomaLens: anomaly detection for online stores, on Dagster and DuckDB."""


for command in (run, ingest, anomalies, incidents, settings, rebuild, forget, export_sample, dev):
    main.add_command(command)
main.add_command(feedback)
main.add_command(thresholds)
