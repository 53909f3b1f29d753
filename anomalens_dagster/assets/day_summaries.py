"""Entity day summaries: per-day, per-entity aggregates of the store that the feature baselines read."""

from collections.abc import Iterator

import dagster as dg

from anomalens_dagster.assets.daily import describe_window, write_windows
from anomalens_dagster.assets.metadata import empty_days_metadata, table_metadata
from anomalens_dagster.automation import day_summaries_refresh
from anomalens_dagster.constants import (
    CUSTOMER_ACCESS_DAY_SUMMARIES,
    CUSTOMER_DAY_SUMMARIES,
    DUCKDB_POOL,
    ENTITY_DAY_SUMMARIES,
    FEATURES_GROUP,
    FEATURES_SCHEMA,
    IP_DAY_SUMMARIES,
    ORDER_ITEMS,
    ORDERS,
    PRODUCT_DAY_SUMMARIES,
    STORE_DAY_SUMMARIES,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.features import (
    DAY_SUMMARY_COLUMN_DESCRIPTIONS,
    DAY_SUMMARY_TABLES,
    compute_day_summaries,
    replace_day_summaries,
)
from anomalens_dagster.core.warehouse import table_shape_version
from anomalens_dagster.partitions import daily_partitions, naive_utc_window
from anomalens_dagster.resources import AnomaLensDuckDB

_DESCRIPTIONS = {
    CUSTOMER_DAY_SUMMARIES: "Per customer and day: actions, orders, spend, log-amount sums, time-of-day sums, first seen.",
    CUSTOMER_ACCESS_DAY_SUMMARIES: "Per customer, IP and user agent and day: actions and first seen (which IPs and "
    "devices a customer uses).",
    IP_DAY_SUMMARIES: "Per IP and day: actions, login attempts, failed logins, first seen.",
    PRODUCT_DAY_SUMMARIES: "Per product and day: order lines, quantity and log-quantity sums.",
    STORE_DAY_SUMMARIES: "Per day, the whole store: orders, log-amount and basket sums, median amount-to-items log "
    "ratio (one row for every built day, empty days too).",
}

DAY_SUMMARY_SPECS = [
    dg.AssetSpec(
        table,
        description=_DESCRIPTIONS[table],
        group_name=FEATURES_GROUP,
        kinds={"duckdb"},
        # The day's own store rows only: a day's summary never depends on another day.
        deps=[USER_ACTIVITIES, ORDERS, ORDER_ITEMS],
        partitions_def=daily_partitions,
        automation_condition=day_summaries_refresh,
        # Derived from the columns, so days summarised before a column change read as stale.
        code_version=table_shape_version(dict.fromkeys(DAY_SUMMARY_COLUMN_DESCRIPTIONS[table], "")),
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(name=name, description=description)
                    for name, description in DAY_SUMMARY_COLUMN_DESCRIPTIONS[table].items()
                ]
            )
        },
    )
    for table in DAY_SUMMARY_TABLES
]


@dg.multi_asset(
    name=ENTITY_DAY_SUMMARIES,
    specs=DAY_SUMMARY_SPECS,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)
def entity_day_summaries(context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB) -> Iterator[dg.MaterializeResult]:
    """Summarise each day of the run's partitions per customer, customer access, IP, product and store.

    Each group of days is read through a read-only connection (the aggregates are reads) and the
    five tables of those days are replaced together in one transaction: a failed run leaves every
    day whole, with all five summaries or none new.
    """
    start, end = naive_utc_window(context)
    with duckdb.read_connection() as conn:
        windows = write_windows(conn, start, end)
    written = dict.fromkeys(DAY_SUMMARY_TABLES, 0)
    previews = {}
    for window_start, window_end in windows:
        with duckdb.read_connection() as conn:
            summaries = compute_day_summaries(conn, window_start, window_end)
        with duckdb.get_connection() as conn:
            for table, rows in replace_day_summaries(conn, summaries, window_start, window_end).items():
                written[table] += rows
        for table, summary in summaries.items():
            previews.setdefault(table, summary.slice(0, 5).to_pandas())
    context.log.info(f"summarised {describe_window(start, end)}: {written}")
    with duckdb.read_connection() as conn:
        empty = empty_days_metadata(
            context,
            conn,
            [(f"{STORE_SCHEMA}.{USER_ACTIVITIES}", "timestamp"), (f"{STORE_SCHEMA}.{ORDERS}", "created_at")],
            start,
            end,
        )
        for table in DAY_SUMMARY_TABLES:
            metadata = table_metadata(
                conn, FEATURES_SCHEMA, table, previews[table], written[table], context.partition_keys
            )
            descriptions = DAY_SUMMARY_COLUMN_DESCRIPTIONS[table]
            metadata["dagster/column_schema"] = dg.TableSchema(
                columns=[
                    dg.TableColumn(name=column.name, type=column.type, description=descriptions.get(column.name))
                    for column in metadata["dagster/column_schema"].columns
                ]
            )
            yield dg.MaterializeResult(asset_key=table, metadata={**metadata, **empty})
