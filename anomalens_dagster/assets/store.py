"""Store assets: the simulated shop's catalog and its daily orders, items, activities and labels."""

from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from anomalens_dagster.assets.daily import EVENTS_PER_WRITE, describe_window, group_days, group_window
from anomalens_dagster.assets.metadata import table_metadata
from anomalens_dagster.configs import SIMULATION_SECTION, SimulationConfig
from anomalens_dagster.constants import (
    ANOMALY_KINDS,
    CATEGORIES,
    CUSTOMERS,
    DUCKDB_POOL,
    ORDER_ITEMS,
    ORDERS,
    PRODUCTS,
    SIMULATION_LABELS,
    SIMULATOR_SOURCE,
    STORE_GROUP,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.simulator import (
    DETAIL_KEYS_BY_ACTION,
    MAX_TOTAL_TO_ITEMS,
    MIN_TOTAL_TO_ITEMS,
    SHIPPING_FEE,
    SimulatedDay,
    day_id_base,
    simulate_catalog,
    simulate_days,
)
from anomalens_dagster.core.warehouse import (
    ensure_store_tables,
    qualified,
    read_ahead,
    replace_catalog,
    replace_simulated_days,
)
from anomalens_dagster.partitions import daily_partitions, days_in_window, naive_utc_window
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile

CATALOG_SPECS = [
    dg.AssetSpec(
        CATEGORIES,
        description="Product categories of the store (id, name, description).",
        group_name=STORE_GROUP,
        kinds={"duckdb"},
    ),
    dg.AssetSpec(
        PRODUCTS,
        description="Products with their price and category.",
        group_name=STORE_GROUP,
        kinds={"duckdb"},
        deps=[CATEGORIES],
    ),
    dg.AssetSpec(
        CUSTOMERS,
        description="Registered customers (email, names, sign-up time).",
        group_name=STORE_GROUP,
        kinds={"duckdb"},
    ),
]

DAY_TABLES = (ORDERS, ORDER_ITEMS, USER_ACTIVITIES, SIMULATION_LABELS)
DAY_SPECS = [
    dg.AssetSpec(
        ORDERS,
        description="Orders placed each day: customer, time, total amount, status.",
        group_name=STORE_GROUP,
        kinds={"duckdb"},
        deps=[CUSTOMERS],
    ),
    dg.AssetSpec(
        ORDER_ITEMS,
        description="Lines of each order: product, quantity and unit price.",
        group_name=STORE_GROUP,
        kinds={"duckdb"},
        deps=[PRODUCTS],
    ),
    dg.AssetSpec(
        USER_ACTIVITIES,
        description="Every user action on the site (page views, searches, carts, logins, purchases) with its details.",
        group_name=STORE_GROUP,
        kinds={"duckdb"},
        deps=[CUSTOMERS, PRODUCTS],
    ),
    dg.AssetSpec(
        SIMULATION_LABELS,
        description="Ground truth of the anomalies the simulator injected (kind, episode). Never a detector input.",
        group_name=STORE_GROUP,
        kinds={"duckdb"},
    ),
]


@dg.multi_asset(specs=CATALOG_SPECS, pool=DUCKDB_POOL)
def store_catalog(
    context: dg.AssetExecutionContext, config: SimulationConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> Iterator[dg.MaterializeResult]:
    """Simulate the catalog and customers (deterministic in the seed) and replace the tables.

    Settings: the run config's `simulation` values over the settings file's over the defaults.
    """
    catalog = simulate_catalog(settings.resolve(config, SIMULATION_SECTION).to_settings())
    frames = {CATEGORIES: catalog.categories, PRODUCTS: catalog.products, CUSTOMERS: catalog.customers}
    with duckdb.get_connection() as conn:
        replace_catalog(conn, frames)
        for table, frame in frames.items():
            context.log.info(f"wrote {len(frame)} rows to {qualified(table)}")
            yield dg.MaterializeResult(asset_key=table, metadata=table_metadata(conn, STORE_SCHEMA, table, frame))


@dg.multi_asset(
    specs=DAY_SPECS,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)
def simulated_store_days(
    context: dg.AssetExecutionContext, config: SimulationConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> Iterator[dg.MaterializeResult]:
    """Simulate each day of the run's partitions and replace its simulated rows atomically.

    One run may cover a range of days (single-run backfills); they are written a few days at a time,
    each group in its own short transaction, so readers get in between and a failed run leaves
    whole days only. Rows loaded from landing files are never touched.
    """
    start, end = naive_utc_window(context)
    simulation = settings.resolve(config, SIMULATION_SECTION).to_settings()
    catalog = simulate_catalog(simulation)
    days = days_in_window(start, end)
    groups = group_days(
        days, dict.fromkeys(days, simulation.activities_per_day + simulation.orders_per_day), EVENTS_PER_WRITE
    )
    written = dict.fromkeys(DAY_TABLES, 0)
    first_day: SimulatedDay | None = None  # previews each table in the UI
    labels: list[pd.DataFrame] = []  # of every day, counted by kind

    def simulated_groups() -> Iterator[tuple[list[date], list[SimulatedDay]]]:
        for group in groups:
            yield group, list(simulate_days(simulation, group, catalog))

    # The next group is simulated while this one is written.
    for group, batches in read_ahead(simulated_groups()):
        group_start, group_end = group_window(group)
        with duckdb.get_connection() as conn:
            group_written = replace_simulated_days(
                conn,
                group_start,
                group_end,
                label_id_range=(day_id_base(group[0]) + 1, day_id_base(group[-1] + timedelta(days=1))),
                days=batches,
                detail_keys_by_action=DETAIL_KEYS_BY_ACTION,
            )
        context.log.info(
            f"simulated {group_written[USER_ACTIVITIES]} activities and {group_written[ORDERS]} orders of "
            f"{describe_window(group_start, group_end)}"
        )
        for table, rows in group_written.items():
            written[table] += rows
        if first_day is None:
            first_day = batches[0]
        labels.extend(batch.simulation_labels for batch in batches)
    if first_day is None:
        raise ValueError(f"the run's partition window [{start}, {end}) holds no whole day to simulate")
    with duckdb.read_connection() as conn:
        metadata_by_table = {
            table: table_metadata(conn, STORE_SCHEMA, table, getattr(first_day, table), rows, context.partition_keys)
            for table, rows in written.items()
        }
    metadata_by_table[SIMULATION_LABELS].update(_anomaly_counts_by_kind(pd.concat(labels, ignore_index=True)))
    for table, metadata in metadata_by_table.items():
        yield dg.MaterializeResult(asset_key=table, metadata=metadata)


def _anomaly_counts_by_kind(labels: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    """Injected rows and episodes per anomaly kind, zero for kinds absent from the run."""
    rows = labels["anomaly_kind"].value_counts()
    episodes = labels.groupby("anomaly_kind")["episode_id"].nunique()
    metadata: dict[str, dg.MetadataValue] = {}
    for kind in ANOMALY_KINDS:
        metadata[f"labelled_rows/{kind}"] = dg.MetadataValue.int(int(rows.get(kind, 0)))
        metadata[f"episodes/{kind}"] = dg.MetadataValue.int(int(episodes.get(kind, 0)))
    return metadata


# --- Asset checks -------------------------------------------------------------------------------


def _count(duckdb: AnomaLensDuckDB, sql: str, params: dict | None = None) -> int:
    with duckdb.get_connection() as conn:
        ensure_store_tables(conn)
        return int(conn.execute(sql, params or {}).fetchone()[0])


def _violations_result(violations: int, what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=violations == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"violations": dg.MetadataValue.int(violations)},
        description=f"{violations} {what}" if violations else None,
    )


def _unique_id_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name="check_unique_ids",
        description=f"Every id of {qualified(table)} appears once.",
        pool=DUCKDB_POOL,
    )
    def check_unique_ids(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
        duplicates = _count(
            duckdb, f"SELECT count(*) FROM (SELECT id FROM {qualified(table)} GROUP BY id HAVING count(*) > 1)"
        )
        return _violations_result(duplicates, "ids appear more than once")

    return check_unique_ids


unique_id_checks = [
    _unique_id_check(table) for table in (CATEGORIES, PRODUCTS, CUSTOMERS, ORDERS, ORDER_ITEMS, USER_ACTIVITIES)
]


@dg.asset_check(
    asset=ORDER_ITEMS, description="Every order item points at an existing order and product.", pool=DUCKDB_POOL
)
def check_order_items_reference_orders_and_products(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
    orphans = _count(
        duckdb,
        f"""SELECT count(*) FROM {qualified(ORDER_ITEMS)} i
            WHERE NOT EXISTS (SELECT 1 FROM {qualified(ORDERS)} o WHERE o.id = i.order_id)
               OR NOT EXISTS (SELECT 1 FROM {qualified(PRODUCTS)} p WHERE p.id = i.product_id)""",
    )
    return _violations_result(orphans, "order items point at a missing order or product")


@dg.asset_check(asset=ORDERS, description="Every order belongs to an existing customer.", pool=DUCKDB_POOL)
def check_orders_reference_customers(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
    orphans = _count(
        duckdb,
        f"""SELECT count(*) FROM {qualified(ORDERS)} o
            WHERE NOT EXISTS (SELECT 1 FROM {qualified(CUSTOMERS)} c WHERE c.id = o.customer_id)""",
    )
    return _violations_result(orphans, "orders point at a missing customer")


@dg.asset_check(
    asset=USER_ACTIVITIES, description="Every non-anonymous activity belongs to an existing customer.", pool=DUCKDB_POOL
)
def check_activities_reference_customers(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
    orphans = _count(
        duckdb,
        f"""SELECT count(*) FROM {qualified(USER_ACTIVITIES)} a
            WHERE a.customer_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM {qualified(CUSTOMERS)} c WHERE c.id = a.customer_id)""",
    )
    return _violations_result(orphans, "activities point at a missing customer")


@dg.asset_check(
    asset=ORDERS,
    description=(
        "Simulated orders that are not injected anomalies charge their items with at most the largest discount "
        f"and at most the highest tax plus shipping: items x {MIN_TOTAL_TO_ITEMS:g} <= total <= items x "
        f"{MAX_TOTAL_TO_ITEMS:g} + {SHIPPING_FEE:g} (the simulator's pricing)."
    ),
    pool=DUCKDB_POOL,
)
def check_normal_order_totals_match_items(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
    # Half a cent of slack each way for the rounding of the discount and of the tax.
    mismatches = _count(
        duckdb,
        f"""SELECT count(*) FROM {qualified(ORDERS)} o
            LEFT JOIN (SELECT order_id, sum(price * quantity) AS items_total
                       FROM {qualified(ORDER_ITEMS)} GROUP BY order_id) i ON i.order_id = o.id
            WHERE o.source = $source
              AND NOT EXISTS (SELECT 1 FROM {qualified(SIMULATION_LABELS)} l
                              WHERE l.entity_type = 'order' AND l.entity_id = o.id)
              AND (o.total_amount < coalesce(i.items_total, 0) * $min_share - 0.005
                   OR o.total_amount > coalesce(i.items_total, 0) * $max_share + $shipping + 0.005)""",
        {
            "source": SIMULATOR_SOURCE,
            "min_share": MIN_TOTAL_TO_ITEMS,
            "max_share": MAX_TOTAL_TO_ITEMS,
            "shipping": SHIPPING_FEE,
        },
    )
    return _violations_result(mismatches, "normal orders whose total lies outside the pricing bounds of their items")


@dg.asset_check(
    asset=SIMULATION_LABELS, description="Every label points at an existing order or activity.", pool=DUCKDB_POOL
)
def check_labels_reference_rows(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
    dangling = _count(
        duckdb,
        f"""SELECT count(*) FROM {qualified(SIMULATION_LABELS)} l
            WHERE NOT (l.entity_type = 'order'
                       AND EXISTS (SELECT 1 FROM {qualified(ORDERS)} o WHERE o.id = l.entity_id))
              AND NOT (l.entity_type = 'activity'
                       AND EXISTS (SELECT 1 FROM {qualified(USER_ACTIVITIES)} a WHERE a.id = l.entity_id))""",
    )
    return _violations_result(dangling, "labels point at no row")


store_checks = [
    *unique_id_checks,
    check_order_items_reference_orders_and_products,
    check_orders_reference_customers,
    check_activities_reference_customers,
    check_normal_order_totals_match_items,
    check_labels_reference_rows,
]
