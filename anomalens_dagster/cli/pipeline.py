"""Commands that run the pipeline: `run` (simulate or not, train, detect), `ingest` (landing files,
then optionally detect), `export-sample` and `dev` (the UI)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
from pathlib import Path

import click
import pandas as pd

from anomalens_dagster.cli.common import (
    DB_HELP,
    LANDING_HELP,
    RANGE_END_TAG,
    RANGE_START_TAG,
    checked_db_path,
    day_range,
    fail_unless_succeeded,
    import_dagster_quietly,
    load_settings,
    resolve_db_path,
    resolve_landing_dir,
    run_config_for,
)
from anomalens_dagster.cli.queries import print_detection_quality, store_summary_rows, table_row_counts, top_anomalies
from anomalens_dagster.configs import SettingsFileError
from anomalens_dagster.constants import DEFAULT_LANDING_DIR
from anomalens_dagster.instance import ensure_dagster_home


@click.command()
@click.option("--days", default=7, show_default=True, help="How many days to materialise.")
@click.option(
    "--end-date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Last day (default: yesterday, UTC)."
)
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--settings", "settings_file", default=None, help="YAML file with simulation/training/detection sections."
)
def run(days: int, end_date: dt.datetime | None, db: str | None, settings_file: str | None) -> None:
    """Materialise every asset for the last N days through Dagster, then print a summary."""
    try:
        settings = load_settings(settings_file)
    except SettingsFileError as error:
        raise click.UsageError(str(error)) from error
    first, last = day_range(days, end_date.date() if end_date else None)
    db_path = checked_db_path(db)
    home = ensure_dagster_home()
    ending = "" if end_date else ", ending yesterday UTC"
    click.echo(f"AnomaLens: {first} .. {last} ({days} days{ending}) into {db_path}")
    click.echo(f"Dagster instance: {home} (runs show in `make dev`)")
    dg = import_dagster_quietly()

    from anomalens_dagster.assets.reports import report_path
    from anomalens_dagster.definitions import defs
    from anomalens_dagster.jobs import full_pipeline_job
    from anomalens_dagster.progress import PROGRESS_LOGGER, StepProgressHandler, asset_steps, progress_logger

    # Dagster's console logger would print every line with its time, job, run id and step; the
    # progress logger prints step k of n and what the steps say (the instance keeps the whole log).
    progress = StepProgressHandler(asset_steps(defs, full_pipeline_job.name), click.echo)
    with_progress = dg.Definitions.merge(defs, dg.Definitions(loggers={PROGRESS_LOGGER: progress_logger(progress)}))
    click.echo(f"Running {full_pipeline_job.name}: {len(progress.asset_steps)} asset steps and their checks")
    result = with_progress.resolve_job_def(full_pipeline_job.name).execute_in_process(
        run_config={**run_config_for(settings), "loggers": {PROGRESS_LOGGER: {}}},
        instance=dg.DagsterInstance.get(),
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        raise_on_error=False,
    )
    click.echo(progress.checks_summary())
    fail_unless_succeeded(result, "run", "; see `make dev` for logs")
    click.echo(f"\nRun {result.run_id} succeeded.\n\nRows per table:")
    for table, count in table_row_counts(db_path):
        click.echo(f"  {table:<32} {count:>12,}")
    summary = store_summary_rows(db_path)
    if summary is not None:
        click.echo("\nStore summary:")
        click.echo(summary.to_string(index=False))
    top = top_anomalies(db_path)
    if top is not None:
        click.echo(f"\nTop {len(top)} anomalies (highest ensemble score):")
        with pd.option_context("display.max_colwidth", 110, "display.width", 250):
            click.echo(top.to_string(index=False))
    print_detection_quality(db_path)
    click.echo(f"\nDuckDB file:   {db_path}")
    report = report_path(str(db_path))
    if report.exists():
        click.echo(f"HTML report:   {report}")


@click.command()
@click.option("--landing", default=None, help=LANDING_HELP)
@click.option("--db", default=None, help=DB_HELP)
def ingest(landing: str | None, db: str | None) -> None:
    """Run ingest_job once on every file in the landing zone and print what happened to each."""
    landing_dir = resolve_landing_dir(landing)
    db_path = checked_db_path(db)
    if not landing_dir.is_dir():
        raise click.BadParameter(f"{landing_dir} is not a folder", param_hint="--landing")
    ensure_dagster_home()

    dg = import_dagster_quietly()

    from anomalens_dagster.assets.landing import FILES_METADATA, ingested_files
    from anomalens_dagster.definitions import defs
    from anomalens_dagster.jobs import ingest_job

    click.echo(f"AnomaLens: ingesting {landing_dir} into {db_path}")
    result = defs.resolve_job_def(ingest_job.name).execute_in_process(
        instance=dg.DagsterInstance.get(),
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    fail_unless_succeeded(result, "ingest run")
    (ingest_log,) = [
        event
        for event in result.asset_materializations_for_node(ingested_files.op.name)
        if event.asset_key == ingested_files.key
    ]
    files = pd.DataFrame(ingest_log.metadata[FILES_METADATA].value)
    if files.empty:
        click.echo("No files in the landing zone.")
        return
    with pd.option_context("display.max_colwidth", 80, "display.width", 250):
        click.echo(
            files[["file", "rows_in", "rows_loaded", "rows_rejected", "status", "reason"]].to_string(index=False)
        )


@click.command(name="export-sample")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--days", default=1, show_default=True, help="Days of sample traffic, ending yesterday (UTC).")
def export_sample(directory: str, days: int) -> None:
    """Write a small valid delivery of landing files (orders, items, activities) into DIRECTORY."""
    from anomalens_dagster.core.landing import write_landing_sample

    first, last = day_range(days, None)
    paths = write_landing_sample(Path(directory), [first + dt.timedelta(days=n) for n in range(days)])
    for path in paths:
        click.echo(str(path))
    click.echo(
        f"Copy these into the landing zone ({DEFAULT_LANDING_DIR} by default) or run `anomalens ingest --landing {directory}`."
    )


@click.command()
@click.option("--port", default=3000, show_default=True, help="Port of the Dagster UI on 127.0.0.1.")
@click.option("--db", default=None, help=DB_HELP)
def dev(port: int, db: str | None) -> None:
    """Start the Dagster UI and daemon (`dagster dev`) on the same instance and DuckDB file."""
    resolve_db_path(db)
    ensure_dagster_home()
    # A parent that ignores SIGINT/SIGTERM (a script, `make` in the background) would pass that on
    # through exec and `dagster dev` could not be stopped.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    dagster = str(Path(sys.executable).with_name("dagster"))
    os.execv(dagster, [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)])
