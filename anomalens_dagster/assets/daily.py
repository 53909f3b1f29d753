"""Day-by-day replacement of a derived table, holding the DuckDB file only for short reads and writes.

DuckDB lets one process at a time open a file for writing, and while it is open no other process
can read it (not even read-only). A run over many days therefore never keeps its connection across
the range: for each day it opens the file, reads the day's inputs, closes it, computes with the
file free, then opens it again to replace that day in one transaction. A reader (the command line,
a notebook) gets in between, and a run that fails leaves every day either whole or untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.assets.metadata import empty_days_metadata, table_metadata
from anomalens_dagster.core.warehouse import replace_window
from anomalens_dagster.partitions import days_in_window, naive_utc_window
from anomalens_dagster.resources import AnomaLensDuckDB

Inputs = TypeVar("Inputs")


def day_window(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as naive datetimes."""
    start = datetime.combine(day, time())
    return start, start + timedelta(days=1)


def replace_day_by_day(
    context: dg.AssetExecutionContext,
    duckdb_resource: AnomaLensDuckDB,
    schema: str,
    table: str,
    time_column: str,
    read: Callable[[duckdb.DuckDBPyConnection, datetime, datetime], Inputs],
    compute: Callable[[Inputs, date], Sequence[pd.DataFrame]],
    sources: Sequence[tuple[str, str]],
) -> tuple[int, dict[str, Any]]:
    """Replace `schema.table` day by day over the run's partitions; the rows written and the table metadata.

    `read(conn, day_start, day_end)` gets a day's inputs with the file open (SQL that computes, such
    as window queries, counts as reading: it scales with a day); `compute(inputs, day)` turns them
    into the day's rows with the file closed. Each day is replaced in its own transaction. `sources`
    are the (`schema.table`, time column) pairs the rows come from: days where none has a row are
    named in the metadata and the run log.
    """
    start, end = naive_utc_window(context)
    rows, preview = 0, None
    for day in days_in_window(start, end):
        day_start, day_end = day_window(day)
        with duckdb_resource.get_connection() as conn:
            inputs = read(conn, day_start, day_end)
        frames = compute(inputs, day)
        with duckdb_resource.get_connection() as conn:
            written, first = replace_window(conn, schema, table, frames, time_column, day_start, day_end)
        rows += written
        preview = first if preview is None else preview
    if preview is None:
        raise ValueError(f"the run's partition window [{start}, {end}) holds no whole day to write to {schema}.{table}")
    context.log.info(f"wrote {rows} rows for [{start}, {end}) to {schema}.{table}")
    with duckdb_resource.get_connection() as conn:
        return rows, {
            **table_metadata(conn, schema, table, preview, rows, context.partition_keys),
            **empty_days_metadata(context, conn, sources, start, end),
        }
