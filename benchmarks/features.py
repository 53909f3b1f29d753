"""Benchmark: feature frames read from DuckDB, computed and written back, as the assets do it.

Usage: .venv/bin/python -m benchmarks.features [--days 30] [--tile 10]
Builds the 30-day store of `benchmarks.simulate` (≈1M activities, 100k orders) in a temporary
DuckDB file, then times activity and order features for all days in one range run and for each
day alone; then tiles the activities `--tile` times along the time axis (≈10M rows) and times one
range run over all of them. Prints rows/s (rows / wall time of read + compute + write), the CPU
seconds the process spent (DuckDB's threads included), the rows/s that CPU time would allow with
every core of the machine busy all the time (rows / (CPU seconds / cores): a ceiling no scheduling
can beat without doing less work), and peak RSS. A last line times the least any implementation has
to do: one DuckDB statement reading the same activities, parsing `details` and writing a table of the
same columns, every window and session feature a constant.
"""

import argparse
import datetime as dt
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
import pandas as pd

from anomalens_dagster.constants import ACTIVITY_FEATURES, FEATURES_SCHEMA, ORDER_FEATURES
from anomalens_dagster.core.features import (
    ACTIVITY_COLUMNS,
    ACTIVITY_DTYPES,
    DETAILS_JSON_PATHS_SQL,
    compute_order_features,
    iter_activity_features,
    write_day_summaries,
)
from anomalens_dagster.core.simulator import simulate_catalog
from anomalens_dagster.core.warehouse import replace_catalog, replace_window
from benchmarks.common import peak_rss_mb, print_table, stopwatch
from benchmarks.simulate import BENCHMARK_SETTINGS, FIRST_DAY, write_days

Compute = Callable[[duckdb.DuckDBPyConnection, dt.datetime, dt.datetime], Iterable[pd.DataFrame]]


def order_frames(conn: duckdb.DuckDBPyConnection, start: dt.datetime, end: dt.datetime) -> list[pd.DataFrame]:
    return [compute_order_features(conn, start, end)]


def materialize(conn, table: str, time_column: str, compute: Compute, start: dt.datetime, end: dt.datetime) -> int:
    rows, _ = replace_window(conn, FEATURES_SCHEMA, table, compute(conn, start, end), time_column, start, end)
    return rows


def result_row(table: str, run: str, rows: int, seconds: list[float]) -> tuple:
    """One line of the table from a stopwatch's wall and CPU seconds."""
    wall, cpu = seconds
    return (table, run, rows, wall, rows / wall, cpu, rows * os.cpu_count() / cpu)


def time_runs(conn, days: list[dt.date]) -> list[tuple]:
    start = dt.datetime.combine(days[0], dt.time())
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time())
    results = []
    # The baselines read the summaries of earlier days: they are written first, as the assets run them.
    with stopwatch() as seconds:
        rows = sum(write_day_summaries(conn, start, end).values())
    results.append(result_row("entity day summaries", f"{len(days)} days, one range run", rows, seconds))
    with stopwatch() as seconds:
        rows = sum(sum(write_day_summaries(conn, *_day_window(day)).values()) for day in days)
    results.append(result_row("entity day summaries", f"{len(days)} one-day runs", rows, seconds))
    for table, time_column, compute in (
        (ACTIVITY_FEATURES, "timestamp", iter_activity_features),
        (ORDER_FEATURES, "created_at", order_frames),
    ):
        with stopwatch() as seconds:
            rows = materialize(conn, table, time_column, compute, start, end)
        results.append(result_row(table, f"{len(days)} days, one range run", rows, seconds))
        with stopwatch() as seconds:
            rows = sum(materialize(conn, table, time_column, compute, *_day_window(day)) for day in days)
        results.append(result_row(table, f"{len(days)} one-day runs", rows, seconds))
    return results


def _day_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.combine(day, dt.time()), dt.datetime.combine(day + dt.timedelta(days=1), dt.time())


# What the read-parse-write floor computes for real; every other feature column is a constant.
_FLOOR_EXPRESSIONS = {
    "id": "id",
    "timestamp": '"timestamp"',
    "customer_id": "coalesce(customer_id, -1)",
    "timestamp_hour": 'hour("timestamp")',
    "timestamp_dayofweek": 'isodow("timestamp") - 1',
    "details_order_total": "coalesce(TRY_CAST(d[1] AS DOUBLE), 0)",
    "details_quantity": "coalesce(TRY_CAST(d[2] AS DOUBLE), 0)",
    "action_type": "action_type",
}


def time_read_parse_write_floor(conn: duckdb.DuckDBPyConnection, start: dt.datetime, end: dt.datetime) -> tuple:
    """Activities read, `details` parsed (the same JSON paths) and written back with the feature table's columns."""
    constant = {"float64": "0::DOUBLE", "int64": "0::BIGINT"}
    columns = ", ".join(
        f"{_FLOOR_EXPRESSIONS.get(name) or constant[ACTIVITY_DTYPES[name]]} AS {name}" for name in ACTIVITY_COLUMNS
    )
    with stopwatch() as seconds:
        rows = conn.execute(
            f"""CREATE OR REPLACE TABLE {FEATURES_SCHEMA}.read_parse_write_floor AS
                SELECT {columns}
                FROM (SELECT *, json_extract_string(details, {DETAILS_JSON_PATHS_SQL}) AS d FROM store.user_activities)
                WHERE "timestamp" >= $start AND "timestamp" < $end""",
            {"start": start, "end": end},
        ).fetchone()[0]
    conn.execute(f"DROP TABLE {FEATURES_SCHEMA}.read_parse_write_floor")
    return result_row("(floor: read, parse, write)", "same range, one DuckDB statement", rows, seconds)


def tile_activities(conn: duckdb.DuckDBPyConnection, days: int, copies: int) -> tuple[dt.datetime, dt.datetime]:
    """Append `copies - 1` copies of the activities, each shifted `days` later, with fresh ids and sessions."""
    shift_ids = 10**12
    for copy in range(1, copies):
        conn.execute(
            """INSERT INTO store.user_activities
               SELECT id + $copy * $shift_ids, customer_id, session_id || '-' || $copy,
                      timestamp + to_days($copy * $days), action_type, details, ip_address, user_agent, source
               FROM store.user_activities WHERE id < $shift_ids""",
            {"copy": copy, "shift_ids": shift_ids, "days": days},
        )
    start = dt.datetime.combine(FIRST_DAY, dt.time())
    return start, start + dt.timedelta(days=days * copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--tile", type=int, default=10, help="copies of the activities for the large run (0: skip)")
    args = parser.parse_args()
    days = [FIRST_DAY + dt.timedelta(days=i) for i in range(args.days)]
    folder = tempfile.TemporaryDirectory()
    db = Path(folder.name) / "bench.duckdb"

    catalog = simulate_catalog(BENCHMARK_SETTINGS)
    with duckdb.connect(str(db)) as conn:
        replace_catalog(
            conn, {"categories": catalog.categories, "products": catalog.products, "customers": catalog.customers}
        )
        write_days(conn, days, catalog)
        conn.execute("CHECKPOINT")
        results = time_runs(conn, days)
        results.append(
            time_read_parse_write_floor(
                conn,
                dt.datetime.combine(days[0], dt.time()),
                dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time()),
            )
        )
        if args.tile > 1:
            start, end = tile_activities(conn, args.days, args.tile)
            write_day_summaries(conn, start, end)
            conn.execute("CHECKPOINT")
            with stopwatch() as seconds:
                rows = materialize(conn, ACTIVITY_FEATURES, "timestamp", iter_activity_features, start, end)
            results.append(
                result_row(ACTIVITY_FEATURES, f"{args.days * args.tile} days (tiled), one range run", rows, seconds)
            )

    print(
        f"Features: read from DuckDB + compute + write back ({BENCHMARK_SETTINGS.activities_per_day:,} activities/day)\n"
    )
    print_table(
        ["table", "run", "rows", "seconds", "rows/s", "CPU s", f"rows/s with all {os.cpu_count()} cores busy"], results
    )
    print(f"\npeak RSS: {peak_rss_mb():,.0f} MiB")


if __name__ == "__main__":
    main()
