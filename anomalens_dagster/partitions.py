"""Partitioning shared by every daily asset: one UTC day per partition, up to and including today."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from anomalens_dagster.constants import PARTITIONS_START_DATE

# end_offset=1 adds today's partition: landed events of the current day are scored as they arrive
# instead of waiting for the day to end.
daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START_DATE, end_offset=1)


def naive_utc_window(context: dg.AssetExecutionContext) -> tuple[dt.datetime, dt.datetime]:
    """The run's partition window as naive UTC datetimes.

    Dagster's window is timezone-aware; DuckDB TIMESTAMP columns are naive UTC and refuse an aware
    value as a bound parameter, so the tzinfo is dropped here once.
    """
    window = context.partition_time_window
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


def days_in_window(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """Each UTC day in [start, end)."""
    return [start.date() + dt.timedelta(days=offset) for offset in range((end - start).days)]


def checked_window(context: dg.AssetCheckExecutionContext) -> tuple[dt.datetime, dt.datetime] | None:
    """The days a check judges: the partitions its run materialised (naive UTC), or None for a run
    without partitions, where the check looks at the whole table.

    A check that looked at every day would fail a run for rows it did not write, such as the next
    day's freshly landed rows that have no features yet.
    """
    run = context.op_execution_context
    if not (run.has_partition_key or run.has_partition_key_range):
        return None
    window = run.partition_time_window
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
