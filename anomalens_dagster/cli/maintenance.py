"""Maintenance commands: `rebuild` the days of an asset stored before its columns changed, `forget` a customer."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import click

from anomalens_dagster.cli.common import (
    DB_HELP,
    RANGE_END_TAG,
    RANGE_START_TAG,
    checked_db_path,
    fail_unless_succeeded,
)
from anomalens_dagster.core.privacy import UnknownCustomerError, forget_customer
from anomalens_dagster.instance import ensure_dagster_home
from anomalens_dagster.resources import AnomaLensDuckDB

if TYPE_CHECKING:
    import dagster as dg

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


@click.command()
@click.argument("asset")
@click.option(
    "--from", "first", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="First day (default: any)."
)
@click.option("--to", "last", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Last day (default: any).")
@click.option("--db", default=None, help=DB_HELP)
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


@click.command()
@click.option("--customer", "customer_id", type=int, required=True, help="Store id of the customer to forget.")
@click.option("--db", default=None, help=DB_HELP)
def forget(customer_id: int, db: str | None) -> None:
    """Anonymise a customer's personal data (email, names, IPs, user agents) in the store and the anomaly
    tables, in one transaction, and record it in ops.forgotten_customers (a deletion request)."""
    db_path = checked_db_path(db)
    if not db_path.exists():
        raise click.ClickException(f"{db_path} does not exist")
    with AnomaLensDuckDB(database=str(db_path)).get_connection() as conn:
        try:
            changed = forget_customer(conn, customer_id, dt.datetime.now(dt.UTC).replace(tzinfo=None))
        except UnknownCustomerError as error:
            raise click.ClickException(str(error)) from error
    click.echo(f"Forgot customer {customer_id} (recorded in ops.forgotten_customers); rows changed:")
    for table, count in changed.items():
        click.echo(f"  {table:<40} {count:>8,}")
