"""Benchmark: simulate and write 30 days of the store (≈1M activities, 100k orders) to DuckDB.

Usage: .venv/bin/python -m benchmarks.simulate [--days 30] [--db PATH]
Prints rows/s per table (rows / wall time of simulate + write) and the peak RSS, for a 30-day
range run (a single-run backfill) first in the process, the same range run again (warm: one-off
costs such as first calls into pyarrow and DuckDB paid), and 30 one-day runs (partition by
partition, as a daily schedule would).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from pathlib import Path

import duckdb

from anomalens_dagster.constants import ORDER_ITEMS, ORDERS, SIMULATION_LABELS, USER_ACTIVITIES
from anomalens_dagster.core.simulator import (
    DETAIL_KEYS_BY_ACTION,
    SimulationSettings,
    day_id_base,
    simulate_catalog,
    simulate_days,
)
from anomalens_dagster.core.warehouse import read_ahead, replace_catalog, replace_simulated_days
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
    """Simulate and write `days` exactly as the `simulated_store_days` asset does."""
    start = dt.datetime.combine(days[0], dt.time())
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time())
    return replace_simulated_days(
        conn,
        start,
        end,
        label_id_range=(day_id_base(days[0]) + 1, day_id_base(days[-1] + dt.timedelta(days=1))),
        days=read_ahead(simulate_days(BENCHMARK_SETTINGS, days, catalog)),
        detail_keys_by_action=DETAIL_KEYS_BY_ACTION,
    )


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
        with stopwatch() as cold_seconds:
            counts = write_days(conn, days, catalog)
        rows.append(("range run, first in the process (cold)", cold_seconds[0], counts))
        with stopwatch() as warm_seconds:
            counts = write_days(conn, days, catalog)
        rows.append(("range run again (warm; replaces the days)", warm_seconds[0], counts))
        with stopwatch() as daily_seconds:
            daily_counts = dict.fromkeys(TABLES, 0)
            for day in days:
                for table, count in write_days(conn, [day], catalog).items():
                    daily_counts[table] += count
        rows.append((f"{len(days)} one-day runs (replace each day)", daily_seconds[0], daily_counts))

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
