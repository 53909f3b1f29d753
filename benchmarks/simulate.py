"""Benchmark: simulate and write 30 days of the store (≈1M activities, 100k orders) to DuckDB.

Usage: .venv/bin/python -m benchmarks.simulate [--days 30] [--db PATH]
Prints rows/s per table (rows / wall time of simulate + write) and the peak RSS, for one
30-day range run (a single-run backfill) and for 30 one-day runs (partition by partition).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from anomalens_dagster.constants import ORDER_ITEMS, ORDERS, SIMULATION_LABELS, USER_ACTIVITIES
from anomalens_dagster.core.simulator import (
    DETAIL_KEYS_BY_ACTION,
    SimulationSettings,
    day_id_base,
    simulate_catalog,
    simulate_day,
)
from anomalens_dagster.core.warehouse import replace_catalog, replace_simulated_days
from benchmarks.common import peak_rss_mb, print_table, stopwatch

BENCHMARK_SETTINGS = SimulationSettings(
    seed=42,
    num_categories=12,
    num_products=300,
    num_customers=3_000,
    orders_per_day=3_334,
    activities_per_day=33_334,
    order_anomaly_rate=0.02,
    burst_rate=0.01,
    failed_login_rate=0.005,
)
FIRST_DAY = dt.date(2026, 10, 1)
TABLES = (ORDERS, ORDER_ITEMS, USER_ACTIVITIES, SIMULATION_LABELS)


def write_days(conn: duckdb.DuckDBPyConnection, days: list[dt.date], catalog) -> dict[str, int]:
    simulated = [simulate_day(BENCHMARK_SETTINGS, day, catalog) for day in days]
    frames = {table: pd.concat([getattr(d, table) for d in simulated], ignore_index=True) for table in TABLES}
    start = dt.datetime.combine(days[0], dt.time())
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time())
    replace_simulated_days(
        conn,
        start,
        end,
        label_id_range=(day_id_base(days[0]) + 1, day_id_base(days[-1] + dt.timedelta(days=1))),
        detail_keys_by_action=DETAIL_KEYS_BY_ACTION,
        **frames,
    )
    return {table: len(frame) for table, frame in frames.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--db", type=Path, default=None, help="DuckDB file (default: a temporary one)")
    args = parser.parse_args()
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(args.days)]
    folder = tempfile.TemporaryDirectory()
    db = args.db or Path(folder.name) / "bench.duckdb"

    with stopwatch() as catalog_seconds:
        catalog = simulate_catalog(BENCHMARK_SETTINGS)
    rows = []
    with duckdb.connect(str(db)) as conn:
        replace_catalog(
            conn, {"categories": catalog.categories, "products": catalog.products, "customers": catalog.customers}
        )
        with stopwatch() as range_seconds:
            counts = write_days(conn, days, catalog)
        rows.append(("one range run", range_seconds[0], counts))
        with stopwatch() as daily_seconds:
            daily_counts = {table: 0 for table in TABLES}
            for day in days:
                for table, count in write_days(conn, [day], catalog).items():
                    daily_counts[table] += count
        rows.append((f"{len(days)} one-day runs", daily_seconds[0], daily_counts))

    print(
        f"Simulate + write {len(days)} days ({BENCHMARK_SETTINGS.activities_per_day:,} activities/day, "
        f"{BENCHMARK_SETTINGS.orders_per_day:,} orders/day); catalog built in {catalog_seconds[0]:.2f} s\n"
    )
    print_table(
        ["mode", "seconds", *(f"{table} rows/s" for table in TABLES), "activities"],
        [
            (mode, seconds, *(counts[table] / seconds for table in TABLES), counts[USER_ACTIVITIES])
            for mode, seconds, counts in rows
        ],
    )
    print(f"\npeak RSS: {peak_rss_mb():,.0f} MiB")


if __name__ == "__main__":
    main()
