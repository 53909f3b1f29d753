"""Materialisation metadata every table asset carries: row count, a preview, the column schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.core.warehouse import table_columns

PREVIEW_ROWS = 5


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
