"""`anomalens`: the command-line front door (runs through Dagster, so runs show in the UI)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click
import duckdb
import pandas as pd
import yaml

from anomalens_dagster.configs import SettingsFileError, validate_settings
from anomalens_dagster.constants import (
    ANOMALIES,
    CONSOLIDATED_ANOMALIES,
    DEFAULT_DUCKDB_PATH,
    DEFAULT_LANDING_DIR,
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    DETECTOR_EVALUATION,
    DUCKDB_PATH_ENV_VAR,
    EVALUATION_ALL_KINDS,
    LANDING_DIR_ENV_VAR,
    STORE_SUMMARY,
)
from anomalens_dagster.instance import ensure_dagster_home
from anomalens_dagster.resources import AnomaLensDuckDB, check_database_name

if TYPE_CHECKING:
    import dagster as dg

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def resolve_db_path(db: str | None) -> Path:
    """`--db`, else `ANOMALENS_DUCKDB_PATH`, else `data/anomalens.duckdb`, made absolute and exported.

    Exporting it is how the code location (loaded after this) finds the same file.
    """
    path = Path(db or os.environ.get(DUCKDB_PATH_ENV_VAR) or DEFAULT_DUCKDB_PATH).resolve()
    os.environ[DUCKDB_PATH_ENV_VAR] = str(path)
    return path


def checked_db_path(db: str | None) -> Path:
    """`resolve_db_path`, refusing a file name DuckDB would confuse with a schema as a bad `--db`."""
    db_path = resolve_db_path(db)
    try:
        check_database_name(str(db_path))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error
    return db_path


def fail_unless_succeeded(result, what: str, hint: str = "") -> None:
    """Exit with the run id and its failed steps when an in-process run did not succeed."""
    if not result.success:
        failed = [event.step_key for event in result.all_events if event.is_step_failure]
        raise click.ClickException(f"{what} {result.run_id} failed in step(s) {', '.join(failed)}{hint}")


def load_settings(path: str | None) -> dict[str, dict]:
    """Read and validate a YAML settings file (sections `simulation`, `training`, `detection`)."""
    if path is None:
        return {}
    try:
        parsed = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SettingsFileError(f"{path}: cannot read settings file: {error}") from error
    return validate_settings(parsed, source=path)


def run_config_for(settings: dict[str, dict]) -> dict:
    """Run config giving each op its section of the settings file."""
    from anomalens_dagster.definitions import OPS_BY_SETTINGS_SECTION

    ops: dict[str, dict] = {}
    for section, values in settings.items():
        for op_name, key in OPS_BY_SETTINGS_SECTION[section]:
            config = ops.setdefault(op_name, {"config": {}})["config"]
            if key is None:
                config.update(values)
            else:
                config[key] = values
    # Progress (days simulated, rows written) without Dagster's per-event debug lines.
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": "INFO"}}}}


def day_range(days: int, end_date: dt.date | None) -> tuple[dt.date, dt.date]:
    """First and last day of the run; the last defaults to yesterday (UTC)."""
    if days < 1:
        raise click.BadParameter("must be at least 1", param_hint="--days")
    last = end_date or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    return last - dt.timedelta(days=days - 1), last


def _connection(db_path: Path):
    """A read-only connection that waits (bounded, logged) while a run started elsewhere writes the file."""
    return AnomaLensDuckDB(database=str(db_path)).read_connection()


def table_row_counts(db_path: Path) -> list[tuple[str, int]]:
    """Rows of every table in the DuckDB file, schema by schema."""
    with _connection(db_path) as conn:
        tables = conn.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY schema_name, table_name"
        ).fetchall()
        return [(table, int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])) for (table,) in tables]


TOP_ANOMALIES = 10


def _report_frame(db_path: Path, sql: str, params: dict | None = None) -> pd.DataFrame | None:
    """The rows of a query over the run's report tables, or None while a table it reads is not built yet."""
    with _connection(db_path) as conn:
        try:
            return conn.execute(sql, params or {}).df()
        except duckdb.CatalogException:
            return None


def store_summary_rows(db_path: Path) -> pd.DataFrame | None:
    """The store_summary report table, or None before it was built."""
    return _report_frame(
        db_path, f"SELECT table_name, rows, simulated_rows, landed_rows FROM {DETECTIONS_SCHEMA}.{STORE_SUMMARY}"
    )


def top_anomalies(db_path: Path, limit: int = TOP_ANOMALIES) -> pd.DataFrame | None:
    """The suspicious entities with the highest ensemble score, with the ensemble's reason."""
    return _report_frame(
        db_path,
        f"""SELECT c.entity_type, c.entity_id, c.overall_severity AS severity,
                   round(c.ensemble_score, 2) AS ensemble, c.detectors,
                   coalesce(a.description, '') AS reason
            FROM {DETECTIONS_SCHEMA}.{CONSOLIDATED_ANOMALIES} AS c
            LEFT JOIN {DETECTIONS_SCHEMA}.{ANOMALIES} AS a
              ON a.entity_type = c.entity_type AND a.entity_id = c.entity_id AND a.detector_name = $ensemble
            ORDER BY c.ensemble_score DESC NULLS LAST, c.entity_type, c.entity_id
            LIMIT $limit""",
        {"ensemble": DETECTOR_ENSEMBLE, "limit": limit},
    )


def detection_quality(db_path: Path) -> pd.DataFrame | None:
    """The evaluation's headline rows (every anomaly kind pooled), or None before any evaluation."""
    return _report_frame(
        db_path,
        f"""SELECT entity_type, detector, n_flagged AS anomalies, precision, recall, f1, pr_auc,
                   episode_recall, normal_flag_rate
            FROM {DETECTIONS_SCHEMA}.{DETECTOR_EVALUATION}
            WHERE anomaly_kind = $all ORDER BY entity_type, detector""",
        {"all": EVALUATION_ALL_KINDS},
    )


# The tag Dagster writes on every asset materialisation: the asset's code version at the time.
CODE_VERSION_TAG = "dagster/code_version"


class NotRebuildableError(ValueError):
    """The asset is unknown, or not a daily asset whose code version follows its columns."""


def rebuildable_assets(defs: dg.Definitions) -> list[str]:
    """The partitioned assets with a code version: the ones whose days go stale when their columns change."""
    graph = defs.resolve_asset_graph()
    return sorted(
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_partitioned and graph.get(key).code_version is not None
    )


def stale_days(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    asset: str,
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> list[str]:
    """The days of `asset` in [first, last] (open when None) whose latest materialisation recorded
    another code version than the asset's current one, in order.

    The daily derived assets take their code version from their columns (`table_shape_version`),
    so these are the days stored before a column change: kept by the migration, NULL in the new
    column, shown as stale in the UI. A day never materialised is missing, not stale; one whose
    latest materialisation has no code version (logged by an op, like clear_anomalies) is not stale
    either, as in the UI.
    """
    import dagster as dg

    key = _rebuildable_key(defs, asset)
    current = defs.resolve_asset_graph().get(key).code_version
    latest = instance.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    storage_ids = [
        storage_id
        for day, storage_id in latest.items()
        if (first is None or day >= first.isoformat()) and (last is None or day <= last.isoformat())
    ]
    if not storage_ids:
        return []
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, storage_ids=storage_ids), limit=len(storage_ids)
    ).records
    return sorted(
        record.partition_key
        for record in records
        if (recorded := (record.event_log_entry.tags or {}).get(CODE_VERSION_TAG)) is not None and recorded != current
    )


def rebuild_days(
    defs: dg.Definitions, instance: dg.DagsterInstance, asset: str, first: str, last: str
) -> dg.ExecuteInProcessResult:
    """Re-materialise `asset` and its checks for the days first..last in one in-process run on
    `instance` (so the run shows in the UI), as a single-run backfill of that range. The result
    says whether it succeeded; it does not raise."""
    key = _rebuildable_key(defs, asset)
    return defs.resolve_implicit_job_def_def_for_assets([key]).execute_in_process(
        instance=instance,
        asset_selection=[key],
        tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
    )


def _rebuildable_key(defs: dg.Definitions, asset: str) -> dg.AssetKey:
    import dagster as dg

    known = rebuildable_assets(defs)
    if asset in known:
        return dg.AssetKey(asset)
    if defs.resolve_asset_graph().has(dg.AssetKey(asset)):
        raise NotRebuildableError(
            f"{asset} is not a daily asset whose code version follows its columns, so no day of it goes stale "
            f"by a column change: re-materialise it from the UI or with `anomalens run`. "
            f"Rebuildable assets: {', '.join(known)}"
        )
    raise NotRebuildableError(f"unknown asset {asset!r}; rebuildable assets: {', '.join(known)}")


def _import_dagster_quietly():
    """`dagster`, with its warnings about the beta parameters this code location chose on purpose
    (single-run backfills, partition mappings over missing days) kept out of the command's output."""
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    return dg


@click.group()
def main() -> None:
    """AnomaLens: anomaly detection for online stores, on Dagster and DuckDB."""


@main.command()
@click.option("--days", default=7, show_default=True, help="How many days to materialise.")
@click.option(
    "--end-date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Last day (default: yesterday, UTC)."
)
@click.option("--db", default=None, help=f"DuckDB file (default: ${DUCKDB_PATH_ENV_VAR}, else {DEFAULT_DUCKDB_PATH}).")
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
    # After `make demo`, the folder for the store's own files is there (not exported: only `ingest` chooses it).
    Path(os.environ.get(LANDING_DIR_ENV_VAR) or DEFAULT_LANDING_DIR).mkdir(parents=True, exist_ok=True)
    ending = "" if end_date else ", ending yesterday UTC"
    click.echo(f"AnomaLens: {first} .. {last} ({days} days{ending}) into {db_path}")
    click.echo(f"Dagster instance: {home} (runs show in `make dev`)")
    dg = _import_dagster_quietly()

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
    evaluation = detection_quality(db_path)
    if evaluation is not None:
        click.echo("\nAnomalies found and detection quality against the simulator's labels (all kinds):")
        click.echo(evaluation.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    click.echo(f"\nDuckDB file:   {db_path}")
    report = report_path(str(db_path))
    if report.exists():
        click.echo(f"HTML report:   {report}")


def resolve_landing_dir(landing: str | None) -> Path:
    """`--landing`, else `ANOMALENS_LANDING_DIR`, else `data/landing`, made absolute and exported."""
    path = Path(landing or os.environ.get(LANDING_DIR_ENV_VAR) or DEFAULT_LANDING_DIR).resolve()
    os.environ[LANDING_DIR_ENV_VAR] = str(path)
    return path


def ready_landing_dir(landing: str | None) -> Path:
    """The landing folder (see `resolve_landing_dir`), created on first use so that files can be dropped in."""
    landing_dir = resolve_landing_dir(landing)
    if landing_dir.exists() and not landing_dir.is_dir():
        raise click.BadParameter(f"{landing_dir} is not a folder", param_hint="--landing")
    landing_dir.mkdir(parents=True, exist_ok=True)
    return landing_dir


@main.command()
@click.option(
    "--landing", default=None, help=f"Landing folder (default: ${LANDING_DIR_ENV_VAR}, else {DEFAULT_LANDING_DIR})."
)
@click.option("--db", default=None, help=f"DuckDB file (default: ${DUCKDB_PATH_ENV_VAR}, else {DEFAULT_DUCKDB_PATH}).")
def ingest(landing: str | None, db: str | None) -> None:
    """Run ingest_job once on every file in the landing zone and print what happened to each."""
    landing_dir = ready_landing_dir(landing)
    db_path = checked_db_path(db)
    ensure_dagster_home()

    dg = _import_dagster_quietly()

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
            files[
                ["file", "rows_in", "rows_loaded", "rows_updated", "rows_already_loaded", "rows_pending"]
                + ["rows_rejected", "status", "reason"]
            ].to_string(index=False)
        )


@main.command()
@click.argument("asset")
@click.option(
    "--from", "first", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="First day (default: any)."
)
@click.option("--to", "last", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Last day (default: any).")
@click.option("--db", default=None, help=f"DuckDB file (default: ${DUCKDB_PATH_ENV_VAR}, else {DEFAULT_DUCKDB_PATH}).")
def rebuild(asset: str, first: dt.datetime | None, last: dt.datetime | None, db: str | None) -> None:
    """Re-materialise the days of ASSET stored before its columns changed (stale in the UI), in one run.

    The run covers every day from the first stale one to the last, like a single-run backfill.
    """
    checked_db_path(db)
    ensure_dagster_home()

    import dagster as dg

    from anomalens_dagster.definitions import defs

    instance = dg.DagsterInstance.get()
    try:
        stale = stale_days(defs, instance, asset, first.date() if first else None, last.date() if last else None)
    except NotRebuildableError as error:
        raise click.BadParameter(str(error), param_hint="ASSET") from error
    if not stale:
        click.echo(f"Nothing to rebuild: no day of {asset} was written under an older code version.")
        return
    click.echo(f"Rebuilding {asset} for {stale[0]} .. {stale[-1]} in one run; stale days: {', '.join(stale)}")
    result = rebuild_days(defs, instance, asset, stale[0], stale[-1])
    fail_unless_succeeded(result, "rebuild run", "; see `make dev` for logs")
    click.echo(f"Run {result.run_id} rebuilt {asset} for {stale[0]} .. {stale[-1]}.")


@main.command(name="export-sample")
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


@main.command()
@click.option("--port", default=3000, show_default=True, help="Port of the Dagster UI on 127.0.0.1.")
@click.option("--db", default=None, help=f"DuckDB file (default: ${DUCKDB_PATH_ENV_VAR}, else {DEFAULT_DUCKDB_PATH}).")
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


if __name__ == "__main__":
    main()
