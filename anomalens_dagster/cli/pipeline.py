"""Commands that run the pipeline: `run` (simulate or not, train, detect), `ingest` (landing files,
then optionally detect), `export-sample` and `dev` (the UI)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
    load_settings_option,
    ready_landing_dir,
    resolve_db_path,
    run_config_for,
)
from anomalens_dagster.cli.incidents import print_top_incidents, top_incidents
from anomalens_dagster.cli.queries import (
    landed_row_count,
    print_detection_quality,
    registered_models,
    store_rows_between,
    store_rows_by_entity,
    store_summary_rows,
    table_row_counts,
    top_anomalies,
)
from anomalens_dagster.constants import (
    DEFAULT_LANDING_DIR,
    DEMO_HOLDOUT_DAYS,
    DETECTIONS_GROUP,
    DETECTOR_NAMES,
    ENTITY_TYPES,
    FEATURES_GROUP,
    LANDING_DIR_ENV_VAR,
    PARTITIONS_START_DATE,
    REPORTS_GROUP,
    SETTINGS_ENV_VAR,
)
from anomalens_dagster.instance import ensure_dagster_home

if TYPE_CHECKING:
    import dagster as dg


def _models_to_train(db_path: Path, retrain: bool) -> list[str]:
    """Names of the model assets to train: every one with `retrain`, else those with no registered version."""
    from anomalens_dagster.assets.models import model_asset_name

    registered = set() if retrain else registered_models(db_path)
    return [
        model_asset_name(detector, entity_type)
        for entity_type in ENTITY_TYPES
        for detector in DETECTOR_NAMES
        if (detector, entity_type) not in registered
    ]


def _refuse_untrainable(db_path: Path, models: list[str]) -> None:
    """Stop before the run when a detector to train has no rows of its entity in the store at all."""
    from anomalens_dagster.assets.models import model_asset_name

    held = store_rows_by_entity(db_path)
    empty = [
        entity_type
        for entity_type in ENTITY_TYPES
        if not held.get(entity_type) and any(model_asset_name(name, entity_type) in models for name in DETECTOR_NAMES)
    ]
    if empty:
        raise click.ClickException(
            f"{db_path} holds no {' and no '.join(f'{entity} rows' for entity in empty)}, so their detectors cannot "
            "be trained: land them first (orders need their customers in the store)."
        )


def _with_demo_holdout(settings: dict[str, dict], days: int) -> dict[str, dict]:
    """A simulated run keeps its last days out of training (out-of-time figures in the evaluation), unless
    the --settings file or the deployment's settings file chooses training.holdout_days."""
    from anomalens_dagster.cli.settings import settings_file_path
    from anomalens_dagster.configs import SettingsFileError
    from anomalens_dagster.settings import read_settings_file

    training = settings.get("training", {})
    deployment = settings_file_path()
    try:
        deployed = read_settings_file(deployment).get("training") or {} if deployment.is_file() else {}
    except SettingsFileError as error:
        raise click.ClickException(str(error)) from error
    if "holdout_days" in training or "holdout_days" in deployed:
        return settings
    holdout = min(DEMO_HOLDOUT_DAYS, days - 1)
    if holdout:
        click.echo(f"Training on the days before the last {holdout}, which are scored out of time")
    return {**settings, "training": {**training, "holdout_days": holdout}}


def _detection_keys(defs: dg.Definitions, models: list[str]) -> list[dg.AssetKey]:
    """Features, detections and reports, plus the named models: every asset but the simulator and the ingest."""
    import dagster as dg

    groups = dg.AssetSelection.groups(FEATURES_GROUP, DETECTIONS_GROUP, REPORTS_GROUP)
    return sorted(groups.resolve(defs.resolve_asset_graph()) | {dg.AssetKey(name) for name in models})


def _materialise(
    first: dt.date, last: dt.date, settings: dict[str, dict], keys: list | None = None
) -> dg.ExecuteInProcessResult:
    """One in-process run on the persistent instance over the days first..last, printing step progress:
    full_pipeline_job (simulation included) when `keys` is None, else just those assets and their checks."""
    dg = import_dagster_quietly()

    from anomalens_dagster.definitions import defs
    from anomalens_dagster.jobs import full_pipeline_job
    from anomalens_dagster.progress import PROGRESS_LOGGER, StepProgressHandler, asset_steps, progress_logger

    if keys is None:
        steps = asset_steps(defs, full_pipeline_job.name)
    else:
        steps = sorted({defs.resolve_assets_def(key).node_def.name for key in keys})
    # Dagster's console logger would print every line with its time, job, run id and step; the
    # progress logger prints step k of n and what the steps say (the instance keeps the whole log).
    progress = StepProgressHandler(steps, click.echo)
    with_progress = dg.Definitions.merge(defs, dg.Definitions(loggers={PROGRESS_LOGGER: progress_logger(progress)}))
    run_config = run_config_for(settings)
    # A job refuses config for ops it does not run (the simulator's, a model left as it is).
    run_config["ops"] = {op: config for op, config in run_config["ops"].items() if op in steps}
    run_config["loggers"] = {PROGRESS_LOGGER: {}}
    execute = {
        "run_config": run_config,
        "instance": dg.DagsterInstance.get(),
        "tags": {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        "raise_on_error": False,
    }
    if keys is None:
        click.echo(f"Running {full_pipeline_job.name}: {len(steps)} asset steps and their checks")
        result = with_progress.resolve_job_def(full_pipeline_job.name).execute_in_process(**execute)
    else:
        click.echo(f"Running {len(steps)} asset steps and their checks")
        job = with_progress.resolve_implicit_job_def_def_for_assets(keys)
        result = job.execute_in_process(asset_selection=keys, **execute)
    click.echo(progress.checks_summary())
    fail_unless_succeeded(result, "run", "; see `make dev` for logs")
    return result


def _print_outcome(db_path: Path, run_id: str) -> None:
    """What a successful run left: rows per table, the store summary, top incidents, the evaluation."""
    from anomalens_dagster.assets.reports import report_path

    click.echo(f"\nRun {run_id} succeeded.\n\nRows per table:")
    for table, count in table_row_counts(db_path):
        click.echo(f"  {table:<32} {count:>12,}")
    summary = store_summary_rows(db_path)
    if summary is not None:
        click.echo("\nStore summary:")
        click.echo(summary.to_string(index=False))
    if top_incidents(db_path) is not None:
        print_top_incidents(db_path)
    elif (top := top_anomalies(db_path)) is not None:  # a store whose incidents were never built
        click.echo(f"\nTop {len(top)} anomalies (highest ensemble score):")
        with pd.option_context("display.max_colwidth", 110, "display.width", 250):
            click.echo(top.to_string(index=False))
    print_detection_quality(db_path)
    click.echo(f"\nDuckDB file:   {db_path}")
    report = report_path(str(db_path))
    if report.exists():
        click.echo(f"HTML report:   {report}")


@click.command()
@click.option("--days", default=7, show_default=True, help="How many days to materialise.")
@click.option(
    "--end-date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Last day (default: yesterday, UTC)."
)
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--settings", "settings_file", default=None, help="YAML file with simulation/training/detection sections."
)
@click.option(
    "--simulate/--no-simulate",
    default=True,
    show_default=True,
    help="Simulate the days first (a demo), or detect on what the store holds (your own data).",
)
@click.option("--retrain", is_flag=True, help="With --no-simulate: train every detector again, not only missing ones.")
def run(
    days: int, end_date: dt.datetime | None, db: str | None, settings_file: str | None, simulate: bool, retrain: bool
) -> None:
    """Materialise every asset for the last N days through Dagster, then print a summary.

    With --no-simulate nothing is simulated: the detectors that have no model yet (all with
    --retrain) are trained, and the days are scored from the rows the store holds.
    """
    settings = load_settings_option(settings_file)
    if retrain and simulate:
        raise click.UsageError("--retrain goes with --no-simulate (a simulating run trains every detector anyway)")
    first, last = day_range(days, end_date.date() if end_date else None)
    db_path = checked_db_path(db)
    if simulate and (landed := landed_row_count(db_path)):
        raise click.UsageError(
            f"{db_path} holds {landed:,} rows landed from your files: simulating would mix made-up traffic into "
            "your store. Run `anomalens run --no-simulate` to detect on what it holds."
        )
    if not simulate and not store_rows_between(db_path, first, last):
        raise click.ClickException(
            f"{db_path} holds no orders or activities from {first} to {last}: nothing to detect on. Load your "
            "files with `anomalens ingest --detect`, or choose the days with --end-date and --days."
        )
    home = ensure_dagster_home()
    # After `make demo`, the folder for the store's own files is there (not exported: only `ingest` chooses it).
    Path(os.environ.get(LANDING_DIR_ENV_VAR) or DEFAULT_LANDING_DIR).mkdir(parents=True, exist_ok=True)
    ending = "" if end_date else ", ending yesterday UTC"
    click.echo(f"AnomaLens: {first} .. {last} ({days} days{ending}) into {db_path}")
    click.echo(f"Dagster instance: {home} (runs show in `make dev`)")
    keys = None
    if simulate:
        settings = _with_demo_holdout(settings, days)
    if not simulate:
        from anomalens_dagster.definitions import defs

        models = _models_to_train(db_path, retrain)
        _refuse_untrainable(db_path, models)
        click.echo(
            f"Real data, nothing simulated; training {len(models)} detector(s){'' if retrain else ' without a model'}"
        )
        keys = _detection_keys(defs, models)
    result = _materialise(first, last, settings, keys)
    _print_outcome(db_path, result.run_id)


@click.command()
@click.option("--landing", default=None, help=LANDING_HELP)
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--settings", "settings_file", default=None, help="YAML file with training/detection sections for --detect."
)
@click.option(
    "--detect",
    is_flag=True,
    help="Then compute features, train the detectors that have no model, and score the days the files touched.",
)
def ingest(landing: str | None, db: str | None, settings_file: str | None, detect: bool) -> None:
    """Run ingest_job once on every file in the landing zone and print what happened to each.

    With --detect, the same command then scores the days the delivery changed (and the day before,
    whose features look ahead into them), training first the detectors that have no model yet.
    """
    settings = load_settings_option(settings_file)
    if settings_file:  # its `landing` mapping reaches the ingest through the settings resource
        os.environ[SETTINGS_ENV_VAR] = str(Path(settings_file).resolve())
    landing_dir = ready_landing_dir(landing)
    db_path = checked_db_path(db)
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
    materialisations = result.asset_materializations_for_node(ingested_files.op.name)
    (ingest_log,) = [event for event in materialisations if event.asset_key == ingested_files.key]
    files = pd.DataFrame(ingest_log.metadata[FILES_METADATA].value)
    if files.empty:
        click.echo("No files in the landing zone.")
    else:
        with pd.option_context("display.max_colwidth", 80, "display.width", 250):
            click.echo(
                files[
                    ["file", "rows_in", "rows_loaded", "rows_updated", "rows_already_loaded", "rows_pending"]
                    + ["rows_rejected", "status", "reason"]
                ].to_string(index=False)
            )
    if not detect:
        return
    # ingested_files logs a materialisation of each store day a file changed.
    changed = sorted({dt.date.fromisoformat(event.partition) for event in materialisations if event.partition})
    if not changed:
        click.echo("No store day changed: nothing new to detect.")
        return
    first = max(changed[0] - dt.timedelta(days=1), dt.date.fromisoformat(PARTITIONS_START_DATE))
    models = _models_to_train(db_path, retrain=False)
    _refuse_untrainable(db_path, models)
    click.echo(
        f"Detecting on {first} .. {changed[-1]} (days the files changed: {', '.join(map(str, changed))}, and the "
        f"day before); training {len(models)} detector(s) without a model"
    )
    result = _materialise(first, changed[-1], settings, _detection_keys(defs, models))
    _print_outcome(db_path, result.run_id)


@click.command(name="export-sample")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--days", default=1, show_default=True, help="Days of sample traffic, ending yesterday (UTC).")
def export_sample(directory: str, days: int) -> None:
    """Write a small valid delivery of landing files into DIRECTORY: the catalog (categories, products,
    customers) and the orders, items and activities of the days."""
    from anomalens_dagster.core.landing import write_landing_sample

    first, last = day_range(days, None)
    paths = write_landing_sample(Path(directory), [first + dt.timedelta(days=n) for n in range(days)], catalog=True)
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
