"""What every `anomalens` command shares: where the DuckDB file, the landing zone and the settings
are, day ranges, read-only report queries and how a failed in-process run is reported."""

from __future__ import annotations

import datetime as dt
import os
import warnings
from pathlib import Path

import click
import duckdb
import pandas as pd
import yaml

from anomalens_dagster.configs import SettingsFileError, validate_settings
from anomalens_dagster.constants import (
    DEFAULT_DUCKDB_PATH,
    DEFAULT_LANDING_DIR,
    DUCKDB_PATH_ENV_VAR,
    LANDING_DIR_ENV_VAR,
    SEVERITIES,
)
from anomalens_dagster.resources import AnomaLensDuckDB, check_database_name

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

DB_HELP = f"DuckDB file (default: ${DUCKDB_PATH_ENV_VAR}, else {DEFAULT_DUCKDB_PATH})."
LANDING_HELP = f"Landing folder (default: ${LANDING_DIR_ENV_VAR}, else {DEFAULT_LANDING_DIR})."


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


def existing_db_path(db: str | None) -> Path:
    """`checked_db_path` of a file the listing commands read: it must exist already."""
    db_path = checked_db_path(db)
    if not db_path.exists():
        raise click.ClickException(
            f"{db_path} does not exist: run `anomalens run` or `anomalens ingest --detect` first"
        )
    return db_path


def canonical_severity(severity: str | None) -> str | None:
    """`--severity` as stored (`high` -> `High`); None when not given."""
    return next((level for level in SEVERITIES if severity and level.lower() == severity.lower()), None)


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


def load_settings_option(path: str | None) -> dict[str, dict]:
    """`load_settings` for a `--settings` option: a bad file is a usage error naming what is wrong."""
    try:
        return load_settings(path)
    except SettingsFileError as error:
        raise click.UsageError(str(error)) from error


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


def read_connection(db_path: Path):
    """A read-only connection that waits (bounded, logged) while a run started elsewhere writes the file."""
    return AnomaLensDuckDB(database=str(db_path)).read_connection()


def report_frame(db_path: Path, sql: str, params: dict | None = None) -> pd.DataFrame | None:
    """The rows of a query over the run's tables, or None while a table it reads is not built yet."""
    with read_connection(db_path) as conn:
        try:
            return conn.execute(sql, params or {}).df()
        except duckdb.CatalogException:
            return None


def import_dagster_quietly():
    """`dagster`, with its warnings about the beta parameters this code location chose on purpose
    (single-run backfills, partition mappings over missing days) kept out of the command's output."""
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    return dg
