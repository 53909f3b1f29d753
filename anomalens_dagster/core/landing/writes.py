"""What the store already holds, and writing landed rows and the ingest log (ops tables) to it."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from anomalens_dagster.constants import OPS_SCHEMA, ORDERS
from anomalens_dagster.core.landing.ids import ID_MAP_COLUMNS, IdMap
from anomalens_dagster.core.landing.rules import (
    CATALOG_KINDS,
    COLUMNS_BY_KIND,
    ID_MAP,
    INGEST_REJECTIONS,
    JSON_OBJECT,
    OPS_DDL,
    PENDING_ROWS,
    REJECTION_COLUMNS,
    clip_values,
    landing_columns,
    store_columns,
)
from anomalens_dagster.core.landing.validation import KeyLookup
from anomalens_dagster.core.warehouse import _register, qualified, table_exists


def ensure_ops_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the ops schema and the ingest log tables when missing, add newer columns (idempotent)."""
    conn.execute(OPS_DDL)


def store_id_map(conn: duckdb.DuckDBPyConnection) -> IdMap:
    """An IdMap over the store's ops.id_map (created when missing)."""
    ensure_ops_tables(conn)
    table = qualified(ID_MAP, OPS_SCHEMA)

    def stored(kind: str, source_ids: list[str]) -> dict[str, int]:
        rows = conn.execute(
            f"SELECT source_id, id FROM {table} WHERE kind = $kind AND list_contains($ids, source_id)",
            {"kind": kind, "ids": [str(text) for text in source_ids]},
        ).fetchall()
        return dict(rows)

    def largest(kind: str) -> int | None:
        ((found,),) = conn.execute(f"SELECT max(id) FROM {table} WHERE kind = $kind", {"kind": kind}).fetchall()
        return found

    return IdMap(stored, largest)


def insert_id_map(conn: duckdb.DuckDBPyConnection, entries: pd.DataFrame, at: dt.datetime) -> None:
    """Record text ids given an integer id (those already recorded are left as they are)."""
    if entries.empty:
        return
    _register(conn, "new_ids", entries[list(ID_MAP_COLUMNS)])
    try:
        conn.execute(
            f"""INSERT INTO {qualified(ID_MAP, OPS_SCHEMA)} (kind, source_id, id, mapped_at)
                SELECT n.kind, n.source_id, n.id, $at FROM new_ids AS n
                WHERE NOT EXISTS (SELECT 1 FROM {qualified(ID_MAP, OPS_SCHEMA)} AS m
                                  WHERE m.kind = n.kind AND m.source_id = n.source_id)""",
            {"at": at},
        )
    finally:
        conn.unregister("new_ids")


def store_key_lookup(conn: duckdb.DuckDBPyConnection) -> KeyLookup:
    """A KeyLookup answered by the store: which of the given ids a store table holds."""

    def in_store(table: str, ids: np.ndarray) -> np.ndarray:
        if not len(ids) or not table_exists(conn, table):
            return np.zeros(0, dtype="int64")
        conn.register("candidate_ids", pa.table({"id": pa.array(ids, pa.int64())}))
        try:
            found = conn.execute(
                f"SELECT id FROM candidate_ids WHERE id IN (SELECT id FROM {qualified(table)})"
            ).fetchnumpy()["id"]
        finally:
            conn.unregister("candidate_ids")
        return np.asarray(found, dtype="int64")

    return in_store


@dataclass(frozen=True, eq=False)
class Compared:
    """Good rows of one kind against the store: `new` to insert, `updated` catalogue rows to replace,
    `identical` already stored as they are, `conflicts` facts whose id the store holds with other
    content (rejections: REJECTION_COLUMNS). Each frame keeps `file` and `line`."""

    new: pd.DataFrame
    updated: pd.DataFrame
    identical: pd.DataFrame
    conflicts: pd.DataFrame


def compare_with_store(conn: duckdb.DuckDBPyConnection, kind: str, good: pd.DataFrame) -> Compared:
    """Split good rows by what the store holds under their ids (see Compared).

    Catalogue rows are upserted: an optional value the file leaves empty keeps the stored one, so a
    customer file without names does not erase them. Facts are immutable: same id, other content is
    a rejection naming the first column that differs.
    """
    stored = _stored_rows(conn, kind, good["id"].to_numpy(dtype="int64"))
    known = good["id"].isin(stored.index).to_numpy()
    new = good[~known].reset_index(drop=True)
    existing = good[known].reset_index(drop=True)
    if kind in CATALOG_KINDS:
        existing = _keep_stored_where_empty(kind, existing, stored)
    differing = _first_difference(kind, existing, stored)
    same = differing.isna().to_numpy()
    identical = existing[same].reset_index(drop=True)
    changed = existing[~same].reset_index(drop=True)
    if kind in CATALOG_KINDS:
        return Compared(new, changed, identical, empty_rejections())
    conflicts = pd.DataFrame(
        {
            "file": changed["file"].astype("str"),
            "line": changed["line"].astype("Int64"),
            "column": differing[~same].to_numpy(),
            "value": changed["id"].astype("str"),
            "reason": (
                "id "
                + changed["id"].astype("str")
                + " is already in the store with different content ("
                + differing[~same].reset_index(drop=True)
                + " differs): facts are immutable"
            ).to_numpy(),
        }
    )
    return Compared(new, changed.iloc[0:0], identical, conflicts)


def _stored_rows(conn: duckdb.DuckDBPyConnection, kind: str, ids: np.ndarray) -> pd.DataFrame:
    columns = landing_columns(kind)
    if not len(ids) or not table_exists(conn, kind):
        return pd.DataFrame(columns=list(columns)).set_index("id")
    conn.register("compared_ids", pa.table({"id": pa.array(np.unique(ids), pa.int64())}))
    try:
        select = ", ".join(f"CAST({name} AS VARCHAR) AS {name}" if name == "details" else name for name in columns)
        stored = conn.execute(f"SELECT {select} FROM {qualified(kind)} WHERE id IN (SELECT id FROM compared_ids)").df()
    finally:
        conn.unregister("compared_ids")
    return stored.drop_duplicates("id").set_index("id")


def _keep_stored_where_empty(kind: str, rows: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    for column in COLUMNS_BY_KIND[kind]:
        if not column.required:
            kept = stored.loc[rows["id"], column.name].to_numpy()
            rows[column.name] = rows[column.name].where(rows[column.name].notna(), pd.Series(kept, index=rows.index))
    return rows


def _first_difference(kind: str, rows: pd.DataFrame, stored: pd.DataFrame) -> pd.Series:
    """Per row, the first column whose value differs from the stored row's (None: identical)."""
    differing = pd.Series(None, index=rows.index, dtype="object")
    if rows.empty:
        return differing
    theirs = stored.loc[rows["id"]].reset_index(drop=True)
    for column in COLUMNS_BY_KIND[kind][1:]:
        mine, held = rows[column.name].reset_index(drop=True), theirs[column.name]
        if column.type == JSON_OBJECT:
            same = [_same_json(a, b) for a, b in zip(mine, held, strict=True)]
        else:
            # Object arrays compare element by element, None equal to None: one pass, no Python loop.
            same = _as_objects(mine) == _as_objects(held)
        differing = differing.where(differing.notna() | np.asarray(same, dtype=bool), column.name)
    return differing


def _as_objects(values: pd.Series) -> np.ndarray:
    """Values as Python objects, every kind of missing (NaN, NaT, NA) as None."""
    objects = values.astype("object").to_numpy(copy=True)
    objects[pd.isna(objects)] = None
    return objects


def _same_json(mine: object, held: object) -> bool:
    if pd.isna(mine) or pd.isna(held):
        return bool(pd.isna(mine) and pd.isna(held))
    return mine == held or json.loads(mine) == json.loads(held)  # same text: no parse needed


def empty_rejections() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="Int64" if name == "line" else "str") for name in REJECTION_COLUMNS})


def insert_new_rows(conn: duckdb.DuckDBPyConnection, kind: str, rows: pd.DataFrame) -> None:
    """Insert rows whose ids the store does not hold (a row that meanwhile arrived is left alone)."""
    if rows.empty:
        return
    columns = ", ".join(store_columns(kind))
    _register(conn, "landed_rows", rows[list(store_columns(kind))])
    try:
        conn.execute(
            f"""INSERT INTO {qualified(kind)} ({columns}) SELECT {columns} FROM landed_rows
                WHERE id NOT IN (SELECT id FROM {qualified(kind)})"""
        )
    finally:
        conn.unregister("landed_rows")


def replace_rows(conn: duckdb.DuckDBPyConnection, kind: str, rows: pd.DataFrame) -> None:
    """Replace catalogue rows by id with their new content."""
    if rows.empty:
        return
    columns = ", ".join(store_columns(kind))
    _register(conn, "updated_rows", rows[list(store_columns(kind))])
    try:
        conn.execute(f"DELETE FROM {qualified(kind)} WHERE id IN (SELECT id FROM updated_rows)")
        conn.execute(f"INSERT INTO {qualified(kind)} ({columns}) SELECT {columns} FROM updated_rows")
    finally:
        conn.unregister("updated_rows")


def insert_rejections(
    conn: duckdb.DuckDBPyConnection, rejections: pd.DataFrame, sha256: str, delivery_id: str, at: dt.datetime
) -> None:
    if rejections.empty:
        return
    frame = rejections[list(REJECTION_COLUMNS)].assign(value=lambda f: clip_values(f["value"].astype("str")))
    _register(conn, "landed_rejections", frame)
    try:
        conn.execute(
            f"""INSERT INTO {qualified(INGEST_REJECTIONS, OPS_SCHEMA)}
                (file, sha256, line, "column", value, reason, ingested_at, delivery_id)
                SELECT file, $sha256, line, "column", value, reason, $at, $delivery FROM landed_rejections""",
            {"sha256": sha256, "at": at, "delivery": delivery_id},
        )
    finally:
        conn.unregister("landed_rejections")


def park_pending_rows(
    conn: duckdb.DuckDBPyConnection, kind: str, pending: pd.DataFrame, delivery_id: str, at: dt.datetime
) -> None:
    """Keep rows waiting for a reference in ops.pending_rows, as given (text), to retry on later ingests."""
    if pending.empty:
        return
    texts = pending[list(landing_columns(kind))]
    frame = pd.DataFrame(
        {
            "file": pending["file"].astype("str"),
            "line": pending["line"].astype("int64"),
            "row": [
                json.dumps({k: v for k, v in row.items() if isinstance(v, str)}) for row in texts.to_dict("records")
            ],
            "column": pending["column"].astype("str"),
            "reason": pending["reason"].astype("str"),
        }
    )
    _register(conn, "parked_rows", frame)
    try:
        conn.execute(
            f"""INSERT INTO {qualified(PENDING_ROWS, OPS_SCHEMA)}
                (delivery_id, file, kind, line, "row", "column", reason, parked_at)
                SELECT $delivery, file, $kind, line, "row", "column", reason, $at FROM parked_rows""",
            {"delivery": delivery_id, "kind": kind, "at": at},
        )
    finally:
        conn.unregister("parked_rows")


def days_of(times: pd.Series) -> tuple[dt.date, ...]:
    return tuple(sorted(pd.to_datetime(times).dt.date.unique()))


def order_days(
    conn: duckdb.DuckDBPyConnection, order_ids: pd.Series, delivered_orders: pd.DataFrame
) -> tuple[dt.date, ...]:
    """Days of the orders that order items belong to, from this delivery's orders or the store's."""
    ids = np.unique(order_ids.to_numpy(dtype="int64"))
    days = set(days_of(delivered_orders.loc[delivered_orders["id"].isin(ids), "created_at"]))
    if len(ids) and table_exists(conn, ORDERS):
        conn.register("item_order_ids", pa.table({"id": pa.array(ids, pa.int64())}))
        try:
            stored = conn.execute(
                f"""SELECT DISTINCT CAST(created_at AS DATE) FROM {qualified(ORDERS)}
                    WHERE id IN (SELECT id FROM item_order_ids)"""
            ).fetchall()
        finally:
            conn.unregister("item_order_ids")
        days.update(day for (day,) in stored)
    return tuple(sorted(days))
