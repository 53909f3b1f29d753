"""A small valid delivery of landing files, simulated: for trying the landing zone out."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd

from anomalens_dagster.constants import (
    CATEGORIES,
    CUSTOMERS,
    DEFAULT_SEED,
    ORDER_ITEMS,
    ORDERS,
    PRODUCTS,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.landing.rules import landing_columns
from anomalens_dagster.core.simulator import (
    DETAIL_KEYS_BY_ACTION,
    SimulationSettings,
    simulate_catalog,
    simulate_day,
)
from anomalens_dagster.core.warehouse import _register, details_json_sql

logger = logging.getLogger(__name__)

# Landed sample rows take ids from the top tenth of each day's id range (`day_id_base`), which the
# simulator never reaches (at most 5e7 activities a day), so sample and simulated rows never collide.
LANDING_SAMPLE_ID_OFFSET = 90_000_000
_LANDING_SAMPLE_MAX_ROWS_PER_DAY = 10_000_000


def write_landing_sample(
    directory: str | os.PathLike,
    days: Sequence[dt.date],
    seed: int = DEFAULT_SEED,
    orders_per_day: int = 50,
    activities_per_day: int = 500,
    catalog: bool = False,
) -> list[Path]:
    """Write a small, valid delivery of simulated store events for `days` into `directory`.

    One file per kind, one per format: orders as CSV, order items as Parquet, activities as JSON
    Lines. Customers and products are those of the default-size catalog of `seed`, so the files
    load with no rejection into a store built by `anomalens run` with that seed; with `catalog`,
    that catalog's categories, products and customers are delivered too (CSV), so the files make a
    whole store from nothing. Ids sit in the top
    tenth of each day's id range (LANDING_SAMPLE_ID_OFFSET) and session ids start with `landing-`,
    so they never collide with the simulator's rows for the same days. The traffic carries the
    simulator's injected anomalies, unlabelled as real data would be. Returns the paths written.
    """
    if not days:
        raise ValueError("write_landing_sample needs at least one day")
    store_catalog = simulate_catalog(SimulationSettings(seed=seed))
    settings = SimulationSettings(seed=seed, orders_per_day=orders_per_day, activities_per_day=activities_per_day)
    simulated = [simulate_day(settings, day, store_catalog) for day in sorted(days)]
    if max(len(day.user_activities) + len(day.order_items) for day in simulated) >= _LANDING_SAMPLE_MAX_ROWS_PER_DAY:
        raise ValueError(f"a landing sample day must hold fewer than {_LANDING_SAMPLE_MAX_ROWS_PER_DAY:_} rows")
    orders = pd.concat([day.orders for day in simulated], ignore_index=True)
    items = pd.concat([day.order_items for day in simulated], ignore_index=True)
    activities = pd.concat([day.user_activities for day in simulated], ignore_index=True)
    orders["id"] += LANDING_SAMPLE_ID_OFFSET
    items["id"] += LANDING_SAMPLE_ID_OFFSET
    items["order_id"] += LANDING_SAMPLE_ID_OFFSET
    activities["id"] += LANDING_SAMPLE_ID_OFFSET
    activities["details_order_id"] += LANDING_SAMPLE_ID_OFFSET
    activities["session_id"] = "landing-" + activities["session_id"]

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    span = f"sample-{min(days):%Y%m%d}-{max(days):%Y%m%d}"
    catalog_paths = []
    if catalog:
        for kind, frame in ((CATEGORIES, store_catalog.categories), (PRODUCTS, store_catalog.products)):
            catalog_paths.append(directory / f"{kind}-{span}.csv")
            frame[list(landing_columns(kind))].to_csv(catalog_paths[-1], index=False)
        catalog_paths.append(directory / f"{CUSTOMERS}-{span}.csv")
        store_catalog.customers[list(landing_columns(CUSTOMERS))].to_csv(
            catalog_paths[-1], index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ"
        )
    orders_path = directory / f"{ORDERS}-{span}.csv"
    items_path = directory / f"{ORDER_ITEMS}-{span}.parquet"
    activities_path = directory / f"{USER_ACTIVITIES}-{span}.jsonl"
    orders.to_csv(orders_path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    items.to_parquet(items_path, index=False)
    _activities_with_details(activities).to_json(
        activities_path, orient="records", lines=True, date_format="iso", date_unit="us"
    )
    logger.info(
        "wrote a landing sample of %d orders, %d items, %d activities", len(orders), len(items), len(activities)
    )
    return [*catalog_paths, orders_path, items_path, activities_path]


def _activities_with_details(activities: pd.DataFrame) -> pd.DataFrame:
    """Simulated activities in landing form: a nested `details` object instead of `details_*` columns."""
    conn = duckdb.connect()
    try:
        _register(conn, "simulated_activities", activities)
        details = conn.execute(
            f"SELECT CAST({details_json_sql(DETAIL_KEYS_BY_ACTION)} AS VARCHAR) FROM simulated_activities"
        ).fetchall()
    finally:
        conn.close()
    landing = activities[[name for name in landing_columns(USER_ACTIVITIES) if name != "details"]].copy()
    landing.insert(landing.columns.get_loc("action_type") + 1, "details", [json.loads(text) for (text,) in details])
    return landing
