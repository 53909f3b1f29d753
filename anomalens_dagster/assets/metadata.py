"""Materialisation metadata every table asset carries: row count, a preview, the column schema."""

from __future__ import annotations

from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.core.warehouse import table_columns

PREVIEW_ROWS = 5


def table_metadata(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, written: pd.DataFrame, row_count: int | None = None
) -> dict[str, Any]:
    """Row count and preview of the rows just written, plus the table's column schema in DuckDB.

    `row_count` defaults to the rows of `written`; give it when `written` is only the first chunk.
    """
    columns = [dg.TableColumn(name=name, type=dtype) for name, dtype in table_columns(conn, table, schema)]
    preview = written.head(PREVIEW_ROWS).to_markdown(index=False) if len(written) else "_no rows_"
    return {
        "dagster/row_count": dg.MetadataValue.int(len(written) if row_count is None else row_count),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "dagster/table_name": f"{schema}.{table}",
        "preview": dg.MetadataValue.md(preview),
    }
