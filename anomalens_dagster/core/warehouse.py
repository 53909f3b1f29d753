"""DuckDB layout of the store and the atomic writes of simulated data (no dagster import).

Every write here replaces whole days inside one transaction: a re-run never duplicates rows and a
run that dies mid-write leaves the previous contents in place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
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


def is_ducklake(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's database is a DuckLake (no PRIMARY KEY, UNIQUE or indexes there)."""
    ((kind,),) = conn.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return kind == "ducklake"


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
    first frame's columns when missing, and migrated when the first frame's columns differ from it
    (a feature was added or removed; see `fit_table_to_incoming`): the rows of every other day stay.
    Rows are inserted by column name, so the table's column order does not matter. Returns the rows
    written and the first frame (for a preview).
    """
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    rows, first = 0, None
    with transaction(conn):
        for frame in frames:
            _register(conn, "incoming", frame)
            if first is None:
                first = frame
                fit_table_to_incoming(conn, schema, table)
                conn.execute(
                    f"DELETE FROM {schema}.{table} WHERE {time_column} >= $start AND {time_column} < $end",
                    {"start": start, "end": end},
                )
            conn.execute(f"INSERT INTO {schema}.{table} BY NAME SELECT * FROM incoming")
            conn.unregister("incoming")
            rows += len(frame)
        if first is None:
            raise ValueError(f"no frame to write to {schema}.{table}: the computation yielded nothing")
    return rows, first


def replace_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Replace a whole derived table with `frame` (one statement, so atomic).

    The table is recreated with `frame`'s columns, whatever they were before: every row is replaced
    at once, so unlike a partial write (`replace_window`) no stored row can be lost by it.
    """
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    _register(conn, "incoming", frame)
    conn.execute(f"CREATE OR REPLACE TABLE {schema}.{table} AS SELECT * FROM incoming")
    conn.unregister("incoming")


class SchemaMigrationError(ValueError):
    """A derived table cannot take new rows in place without losing data; the message says what to do."""


def fit_table_to_incoming(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> None:
    """Create `schema.table` shaped like the registered `incoming` relation, or migrate it to take its rows.

    Migrating never drops a table, a column or a row. A column new in `incoming` is added (NULL in
    the rows already stored, which read as stale until their days are re-materialised); a column
    `incoming` no longer has stays, NULL in the new rows. Raises SchemaMigrationError when that
    cannot be done: a column whose new values DuckDB cannot cast implicitly to its stored type
    (DOUBLE into BIGINT, text into a number), or a column left out of the new rows that is NOT NULL.
    """
    incoming = dict(conn.execute("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM incoming)").fetchall())
    stored = {
        name: (dtype, nullable)
        for name, dtype, nullable in conn.execute(
            "SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = $schema AND table_name = $table "
            "ORDER BY column_index",
            {"schema": schema, "table": table},
        ).fetchall()
    }
    qualified_name = f"{schema}.{table}"
    if not stored:
        conn.execute(f"CREATE TABLE {qualified_name} AS SELECT * FROM incoming LIMIT 0")
        return
    retyped = [
        f"{name} is {stored[name][0]}, the new rows have {dtype}"
        for name, dtype in incoming.items()
        if name in stored and not _casts_implicitly(conn, dtype, stored[name][0])
    ]
    if retyped:
        raise SchemaMigrationError(
            f"{qualified_name}: {'; '.join(retyped)}. A column cannot change type in place: give the new "
            "values a new column name, or convert the stored column yourself "
            f"(ALTER TABLE {qualified_name} ALTER COLUMN ... TYPE ...) and re-materialise its days"
        )
    left_out = [name for name in stored if name not in incoming]
    required = [name for name in left_out if not stored[name][1]]
    if required:
        raise SchemaMigrationError(
            f"{qualified_name}: the new rows have no {', '.join(required)}, which is NOT NULL. Keep writing "
            f"the column, or allow NULL in it (ALTER TABLE {qualified_name} ALTER COLUMN ... DROP NOT NULL)"
        )
    added = {name: dtype for name, dtype in incoming.items() if name not in stored}
    for name, dtype in added.items():
        conn.execute(f'ALTER TABLE {qualified_name} ADD COLUMN "{name}" {dtype}')
    if added:
        logger.warning(
            "migrated %s: added columns %s; the rows already stored have NULL there until their days are "
            "re-materialised (`anomalens rebuild %s`)",
            qualified_name,
            added,
            table,
        )
    if left_out:
        logger.warning(
            "%s: the new rows have no %s, stored as NULL; drop the columns by hand "
            "(ALTER TABLE ... DROP COLUMN) once no reader needs their old values",
            qualified_name,
            left_out,
        )


def _casts_implicitly(conn: duckdb.DuckDBPyConnection, source_type: str, target_type: str) -> bool:
    if source_type == target_type:
        return True
    ((castable,),) = conn.execute(f"SELECT can_cast_implicitly(NULL::{source_type}, NULL::{target_type})").fetchall()
    return bool(castable)


def table_shape_version(dtypes: Mapping[str, str]) -> str:
    """A short digest of a table's ordered columns and their dtypes, e.g. `columns-1a2b3c4d5e6f`.

    The daily derived assets take it as their Dagster `code_version`: adding, removing, renaming,
    reordering or retyping a column then marks every day written before as stale in the UI, and
    `anomalens rebuild` finds those days, with no version bumped by hand. A change of logic that
    keeps the columns does not change it: re-materialise the days yourself then.
    """
    digest = hashlib.sha256(json.dumps(list(dtypes.items())).encode()).hexdigest()
    return f"columns-{digest[:12]}"
