"""Derived tables replaced a few days at a time, holding the DuckDB file only for short reads and writes.

DuckDB lets one process at a time open a file for writing, and while it is open no other process
can read it (not even read-only); read-only connections of several processes share it. A run over
many days therefore never keeps a write connection across the range: for each group of a few
days it reads the group's inputs through a read-only connection (other readers read alongside),
computes with the file closed, then opens it for writing only to replace those days in one
transaction. A reader (the command line, a notebook) waits at most for one such write, and a run
that fails leaves every day either whole or untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.assets.metadata import empty_days_metadata, table_metadata
from anomalens_dagster.constants import ORDERS, STORE_SCHEMA, USER_ACTIVITIES
from anomalens_dagster.core.warehouse import replace_window
from anomalens_dagster.partitions import days_in_window, naive_utc_window
from anomalens_dagster.resources import AnomaLensDuckDB

Inputs = TypeVar("Inputs")

# Days are written in groups of whole days that hold about this many store events (activities and
# orders) together, or of one day. Every write pays for opening the file cold and, on closing, for
# a checkpoint that recompresses the table's last, partly filled row group: the 30-day, 1M-activity
# pipeline took 118 s written day by day and 84 s in three-day groups (this budget at 37k events
# a day). The file is held about a second per group; at the demo's 11k events a day a group is 10 days.
EVENTS_PER_WRITE = 120_000

# Store events per day in the window. Parameters: $start, $end.
EVENTS_PER_DAY_SQL = f"""
SELECT day, count(*) AS events FROM (
    SELECT CAST("timestamp" AS DATE) AS day FROM {STORE_SCHEMA}.{USER_ACTIVITIES}
    WHERE "timestamp" >= $start AND "timestamp" < $end
    UNION ALL
    SELECT CAST(created_at AS DATE) FROM {STORE_SCHEMA}.{ORDERS} WHERE created_at >= $start AND created_at < $end
)
GROUP BY day
"""


def group_days(days: Sequence[date], events_per_day: Mapping[date, int], budget: int) -> list[list[date]]:
    """Consecutive `days` in groups of at most `budget` events together, a busier day alone in its group."""
    groups: list[list[date]] = []
    group: list[date] = []
    events = 0
    for day in days:
        if group and events + events_per_day.get(day, 0) > budget:
            groups.append(group)
            group, events = [], 0
        group.append(day)
        events += events_per_day.get(day, 0)
    if group:
        groups.append(group)
    return groups


def group_window(group: Sequence[date]) -> tuple[datetime, datetime]:
    """[start, end) of consecutive whole UTC days as naive datetimes."""
    return datetime.combine(group[0], time()), datetime.combine(group[-1], time()) + timedelta(days=1)


def describe_window(start: datetime, end: datetime) -> str:
    """`2026-10-01` for one day, `2026-10-01..2026-10-03` for several."""
    last = (end - timedelta(days=1)).date()
    return f"{start:%Y-%m-%d}" if last == start.date() else f"{start:%Y-%m-%d}..{last:%Y-%m-%d}"


def write_windows(
    conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime, events_per_write: int = EVENTS_PER_WRITE
) -> list[tuple[datetime, datetime]]:
    """The windows, each of whole days, in which a derived table over [start, end) is read and replaced."""
    try:
        events = dict(conn.execute(EVENTS_PER_DAY_SQL, {"start": start, "end": end}).fetchall())
    except duckdb.CatalogException:
        events = {}  # no store tables yet: the reads will say what is missing
    return [group_window(group) for group in group_days(days_in_window(start, end), events, events_per_write)]


def replace_days_in_groups(
    context: dg.AssetExecutionContext,
    duckdb_resource: AnomaLensDuckDB,
    schema: str,
    table: str,
    time_column: str,
    read: Callable[[duckdb.DuckDBPyConnection, datetime, datetime], Inputs],
    compute: Callable[[Inputs, datetime, datetime], Sequence[pd.DataFrame]],
    sources: Sequence[tuple[str, str]],
    events_per_write: int = EVENTS_PER_WRITE,
) -> tuple[int, dict[str, Any]]:
    """Replace `schema.table` over the run's partitions a few days at a time; the rows written and the metadata.

    `read(conn, start, end)` gets the inputs of a group of days through a read-only connection
    (SQL that computes, such as window queries, counts as reading: it scales with the group);
    `compute(inputs, start, end)` turns them into the group's rows with the file closed. Each group
    is replaced in its own transaction. `sources` are the (`schema.table`, time column) pairs the
    rows come from: days where none has a row are named in the metadata and the run log.
    `events_per_write` sizes the groups (see EVENTS_PER_WRITE).
    """
    start, end = naive_utc_window(context)
    with duckdb_resource.read_connection() as conn:
        windows = write_windows(conn, start, end, events_per_write)
    if not windows:
        raise ValueError(f"the run's partition window [{start}, {end}) holds no whole day to write to {schema}.{table}")
    rows, preview = 0, None
    for window_start, window_end in windows:
        with duckdb_resource.read_connection() as conn:
            inputs = read(conn, window_start, window_end)
        frames = compute(inputs, window_start, window_end)
        with duckdb_resource.get_connection() as conn:
            written, first = replace_window(conn, schema, table, frames, time_column, window_start, window_end)
        rows += written
        preview = first if preview is None else preview
    context.log.info(f"wrote {rows} rows for {describe_window(start, end)} to {schema}.{table}")
    with duckdb_resource.read_connection() as conn:
        return rows, {
            **table_metadata(conn, schema, table, preview, rows, context.partition_keys),
            **empty_days_metadata(context, conn, sources, start, end),
        }
