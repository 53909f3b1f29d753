"""Partitioning shared by every daily asset: one UTC day per partition, ending yesterday."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from anomalens_dagster.constants import PARTITIONS_START_DATE

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START_DATE)


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
