"""Materialisation metadata the assets share: row count, preview and column schema of a table, numbers
rounded to what a person reads, and the days a run found nothing to compute."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.core.warehouse import table_columns, table_exists
from anomalens_dagster.partitions import days_in_window

PREVIEW_ROWS = 5
SIGNIFICANT_DIGITS = 4
# An empty backfill of a year would otherwise write every date into the log line.
DAYS_NAMED_IN_LOG = 5


def table_metadata(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    written: pd.DataFrame,
    row_count: int | None = None,
    partition_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Row count and preview of the rows just written, plus the table's column schema in DuckDB.

    `row_count` defaults to the rows of `written`; give it when `written` is only the first chunk.
    A run over a range of partitions (`partition_keys`, more than one) records the same metadata on
    every partition's materialisation: its rows are then `rows_in_range`, next to the `range`, and
    not `dagster/row_count`, which the UI would show as each day's size.
    """
    columns = [dg.TableColumn(name=name, type=dtype) for name, dtype in table_columns(conn, table, schema)]
    preview = written.head(PREVIEW_ROWS).to_markdown(index=False) if len(written) else "_no rows_"
    rows = dg.MetadataValue.int(len(written) if row_count is None else row_count)
    if len(partition_keys) > 1:
        count = {
            "range": dg.MetadataValue.text(
                f"{partition_keys[0]} .. {partition_keys[-1]} ({len(partition_keys)} partitions, one run): "
                "counts are for the whole range"
            ),
            "rows_in_range": rows,
        }
    else:
        count = {"dagster/row_count": rows}
    return {
        **count,
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/table_name": f"{schema}.{table}",
        "preview": dg.MetadataValue.md(preview),
    }


def readable_number(value: Any) -> Any:
    """A float rounded to `SIGNIFICANT_DIGITS` significant digits (0.2915519558 -> 0.2916); ints, bools,
    NaN, infinities and anything else are returned as they are."""
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def readable_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """`metadata` with every float, plain or `MetadataValue.float`, rounded by `readable_number`.

    The UI shows and plots a float with all its digits (0.019857142857142858); rounding keeps the
    numbers plottable and readable. numpy floats count as floats; ints stay ints.
    """
    rounded: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dg.FloatMetadataValue):
            rounded[key] = dg.MetadataValue.float(readable_number(value.value))
        elif isinstance(value, float):  # numpy.float64 is a float subclass
            rounded[key] = readable_number(float(value))
        else:
            rounded[key] = value
    return rounded


def empty_days_metadata(
    context: dg.AssetExecutionContext,
    conn: duckdb.DuckDBPyConnection,
    inputs: Sequence[tuple[str, str]],
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """Name the days of [start, end) without input rows, in the run log and in the metadata.

    Such a day materialises successfully with 0 rows; said nowhere, it would pass for a day that
    was computed and held nothing unusual. `inputs` are (`schema.table`, time column) pairs; a day
    is empty when none of them has a row in it. Returns {} when every day has input.
    """
    days_with_rows = set()
    for table, time_column in inputs:
        schema, name = table.split(".")
        if table_exists(conn, name, schema):
            days_with_rows.update(
                day
                for (day,) in conn.execute(
                    f"SELECT DISTINCT CAST({time_column} AS DATE) FROM {table} "
                    f"WHERE {time_column} >= $start AND {time_column} < $end",
                    {"start": start, "end": end},
                ).fetchall()
            )
    days = days_in_window(start, end)
    empty = [day.isoformat() for day in days if day not in days_with_rows]
    if not empty:
        return {}
    named = ", ".join(empty[:DAYS_NAMED_IN_LOG])
    if len(empty) > DAYS_NAMED_IN_LOG:
        named += f" and {len(empty) - DAYS_NAMED_IN_LOG} more days"
    sources = " or ".join(table for table, _ in inputs)
    these = "that day has" if len(empty) == 1 else "those days have"
    context.log.warning(f"no rows in {sources} for {named}: nothing to compute, so {these} no rows here")
    return {
        "empty_days": dg.MetadataValue.json(empty),
        "note": dg.MetadataValue.text(
            f"{len(empty)} of {len(days)} days had no rows in {sources}, so nothing was computed for them: {named}"
        ),
    }
