"""DuckDB layout of the store and the atomic writes of simulated data (no dagster import).

Every write here replaces whole days inside one transaction: a re-run never duplicates rows and a
run that dies mid-write leaves the previous contents in place.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import duckdb
import pandas as pd
import pyarrow as pa

from anomalens_dagster.constants import (
    CATEGORIES,
    CUSTOMERS,
    ORDER_ITEMS,
    ORDERS,
    PRODUCTS,
    SIMULATION_LABELS,
    SIMULATOR_SOURCE,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.simulator import SimulatedDay

logger = logging.getLogger(__name__)

T = TypeVar("T")

STORE_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {STORE_SCHEMA};
CREATE TABLE IF NOT EXISTS {STORE_SCHEMA}.{CATEGORIES} (
    id BIGINT NOT NULL, name VARCHAR NOT NULL, description VARCHAR);
CREATE TABLE IF NOT EXISTS {STORE_SCHEMA}.{PRODUCTS} (
    id BIGINT NOT NULL, name VARCHAR NOT NULL, description VARCHAR,
    price DOUBLE NOT NULL, category_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {STORE_SCHEMA}.{CUSTOMERS} (
    id BIGINT NOT NULL, email VARCHAR NOT NULL, first_name VARCHAR, last_name VARCHAR,
    created_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS {STORE_SCHEMA}.{ORDERS} (
    id BIGINT NOT NULL, customer_id BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
    total_amount DOUBLE NOT NULL, status VARCHAR NOT NULL, source VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {STORE_SCHEMA}.{ORDER_ITEMS} (
    id BIGINT NOT NULL, order_id BIGINT NOT NULL, product_id BIGINT NOT NULL,
    quantity BIGINT NOT NULL, price DOUBLE NOT NULL, source VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {STORE_SCHEMA}.{USER_ACTIVITIES} (
    id BIGINT NOT NULL, customer_id BIGINT, session_id VARCHAR, timestamp TIMESTAMP NOT NULL,
    action_type VARCHAR NOT NULL, details JSON, ip_address VARCHAR, user_agent VARCHAR,
    source VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {STORE_SCHEMA}.{SIMULATION_LABELS} (
    entity_type VARCHAR NOT NULL, entity_id BIGINT NOT NULL, anomaly_kind VARCHAR NOT NULL,
    episode_id VARCHAR NOT NULL);
"""

CATALOG_TABLES = (CATEGORIES, PRODUCTS, CUSTOMERS)


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Run the block in one DuckDB transaction: committed if it ends, rolled back if it raises."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def ensure_store_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the store schema and tables when missing (idempotent)."""
    conn.execute(STORE_DDL)


def qualified(table: str, schema: str = STORE_SCHEMA) -> str:
    return f"{schema}.{table}"


def replace_catalog(conn: duckdb.DuckDBPyConnection, tables: dict[str, pd.DataFrame]) -> None:
    """Replace the catalog tables (categories, products, customers) in one transaction."""
    ensure_store_tables(conn)
    with transaction(conn):
        for table in CATALOG_TABLES:
            frame = tables[table]
            conn.execute(f"DELETE FROM {qualified(table)}")
            _register(conn, "incoming", frame)
            columns = ", ".join(frame.columns)
            conn.execute(f"INSERT INTO {qualified(table)} ({columns}) SELECT {columns} FROM incoming")
            conn.unregister("incoming")


def details_json_sql(detail_keys_by_action: dict[str, tuple[str, ...]]) -> str:
    """SQL expression building the `details` JSON from the simulator's typed `details_*` columns.

    Each action type gets exactly its own keys (a search has `query` and `url`, never a null
    `product_id`), and JSON is built by DuckDB in the INSERT — orders of magnitude faster than
    serialising a million Python dicts.
    """
    branches = []
    for action, keys in detail_keys_by_action.items():
        pairs = ", ".join(f"'{key}', details_{key}" for key in keys)
        branches.append(f"WHEN '{action}' THEN json_object({pairs})")
    return "CASE action_type " + " ".join(branches) + " ELSE json_object() END"


def replace_simulated_days(
    conn: duckdb.DuckDBPyConnection,
    start: dt.datetime,
    end: dt.datetime,
    label_id_range: tuple[int, int],
    days: Iterable[SimulatedDay],
    detail_keys_by_action: dict[str, tuple[str, ...]],
) -> dict[str, int]:
    """Replace the simulated rows of the days in [start, end) with `days`, atomically.

    `days` are simulated days or batches of them (`simulate_days`), inserted one after the other
    inside one transaction, so they may come from a lazy iterator (see `read_ahead`) and a long
    range never has to be held in memory at once. Rows loaded
    from landing files (another `source`) are left untouched. Labels are matched by the simulated
    id range of the days, `label_id_range` = (first id, last id) inclusive. Returns rows written
    per table.
    """
    ensure_store_tables(conn)
    written = dict.fromkeys((ORDERS, ORDER_ITEMS, USER_ACTIVITIES, SIMULATION_LABELS), 0)
    with transaction(conn):
        _delete_simulated_rows(conn, start, end, label_id_range)
        for day in days:
            _insert_frame(conn, ORDERS, day.orders, ("id", "customer_id", "created_at", "total_amount", "status"))
            _insert_frame(conn, ORDER_ITEMS, day.order_items, ("id", "order_id", "product_id", "quantity", "price"))
            _register(conn, "incoming_activities", day.user_activities)
            conn.execute(
                f"""INSERT INTO {qualified(USER_ACTIVITIES)}
                    (id, customer_id, session_id, timestamp, action_type, details, ip_address, user_agent, source)
                    SELECT id, customer_id, session_id, timestamp, action_type,
                           {details_json_sql(detail_keys_by_action)}, ip_address, user_agent, $source
                    FROM incoming_activities""",
                {"source": SIMULATOR_SOURCE},
            )
            conn.unregister("incoming_activities")
            _register(conn, "incoming_labels", day.simulation_labels)
            conn.execute(
                f"INSERT INTO {qualified(SIMULATION_LABELS)} "
                "SELECT entity_type, entity_id, anomaly_kind, episode_id FROM incoming_labels"
            )
            conn.unregister("incoming_labels")
            for table in written:
                written[table] += len(getattr(day, table))
    logger.info("replaced simulated rows in [%s, %s): %s", start, end, written)
    return written


def _delete_simulated_rows(
    conn: duckdb.DuckDBPyConnection, start: dt.datetime, end: dt.datetime, label_id_range: tuple[int, int]
) -> None:
    window = {"source": SIMULATOR_SOURCE, "start": start, "end": end}
    conn.execute(
        f"""DELETE FROM {qualified(ORDER_ITEMS)} WHERE source = $source AND order_id IN (
                SELECT id FROM {qualified(ORDERS)}
                WHERE source = $source AND created_at >= $start AND created_at < $end)""",
        window,
    )
    conn.execute(
        f"DELETE FROM {qualified(ORDERS)} WHERE source = $source AND created_at >= $start AND created_at < $end",
        window,
    )
    conn.execute(
        f"DELETE FROM {qualified(USER_ACTIVITIES)} WHERE source = $source AND timestamp >= $start AND timestamp < $end",
        window,
    )
    conn.execute(
        f"DELETE FROM {qualified(SIMULATION_LABELS)} WHERE entity_id BETWEEN $low AND $high",
        {"low": label_id_range[0], "high": label_id_range[1]},
    )


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """Yield `items`, computing the next one in a background thread while the caller uses this one.

    Simulating a day (numpy) and inserting the previous one (DuckDB) both release the GIL, so on
    two cores the writer no longer waits for the simulator. An exception in the producer is
    raised here, at the item it concerns.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, items, _EXHAUSTED)
        while (item := pending.result()) is not _EXHAUSTED:
            pending = pool.submit(next, items, _EXHAUSTED)
            yield item


_EXHAUSTED = object()


def _insert_frame(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, columns: Iterable[str]) -> None:
    column_list = ", ".join(columns)
    _register(conn, "incoming", frame)
    conn.execute(
        f"INSERT INTO {qualified(table)} ({column_list}, source) SELECT {column_list}, $source FROM incoming",
        {"source": SIMULATOR_SOURCE},
    )
    conn.unregister("incoming")


def _register(conn: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> None:
    """Expose a frame to SQL as `name`, through Arrow: DuckDB scans an Arrow table about twice as
    fast as the same pandas frame (0.4 s against 0.8 s for a million feature rows here)."""
    conn.register(name, pa.Table.from_pandas(frame, preserve_index=False))


def table_exists(conn: duckdb.DuckDBPyConnection, table: str, schema: str = STORE_SCHEMA) -> bool:
    """Whether the connection's database holds `schema.table`."""
    ((count,),) = conn.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = $schema AND table_name = $table",
        {"schema": schema, "table": table},
    ).fetchall()
    return count > 0


def table_columns(conn: duckdb.DuckDBPyConnection, table: str, schema: str = STORE_SCHEMA) -> list[tuple[str, str]]:
    """(name, type) of a table's columns, in order."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $schema AND table_name = $table ORDER BY ordinal_position",
        {"schema": schema, "table": table},
    ).fetchall()
    return [(name, dtype) for name, dtype in rows]


def replace_window(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    frames: Iterable[pd.DataFrame],
    time_column: str,
    start: dt.datetime,
    end: dt.datetime,
) -> tuple[int, pd.DataFrame]:
    """Replace the rows of a derived table whose `time_column` lies in [start, end), atomically.

    `frames` are the new rows in chunks (a long range is computed chunk by chunk to bound memory);
    all of them land in one transaction, together with the delete. The table is created from the
    first frame's columns when missing. Derived tables hold nothing that cannot be recomputed, so
    when the columns differ from the table's (a feature was added) the table is rebuilt and the
    change is logged. Returns the rows written and the first frame (for a preview).
    """
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    rows, first = 0, None
    with transaction(conn):
        for frame in frames:
            _register(conn, "incoming", frame)
            if first is None:
                first = frame
                _ensure_table_like(conn, schema, table, list(frame.columns))
                conn.execute(
                    f"DELETE FROM {schema}.{table} WHERE {time_column} >= $start AND {time_column} < $end",
                    {"start": start, "end": end},
                )
            conn.execute(f"INSERT INTO {schema}.{table} SELECT * FROM incoming")
            conn.unregister("incoming")
            rows += len(frame)
        if first is None:
            raise ValueError(f"no frame to write to {schema}.{table}: the computation yielded nothing")
    return rows, first


def replace_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Replace a whole derived table with `frame` (one statement, so atomic)."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    _register(conn, "incoming", frame)
    conn.execute(f"CREATE OR REPLACE TABLE {schema}.{table} AS SELECT * FROM incoming")
    conn.unregister("incoming")


def _ensure_table_like(conn: duckdb.DuckDBPyConnection, schema: str, table: str, columns: list[str]) -> None:
    """Create `schema.table` shaped like the registered `incoming` frame, or rebuild it if its columns differ."""
    existing = [name for name, _ in table_columns(conn, table, schema)]
    if existing and existing != columns:
        logger.warning("columns of %s.%s changed from %s to %s: rebuilding it", schema, table, existing, columns)
        conn.execute(f"DROP TABLE {schema}.{table}")
        existing = []
    if not existing:
        conn.execute(f"CREATE TABLE {schema}.{table} AS SELECT * FROM incoming LIMIT 0")
