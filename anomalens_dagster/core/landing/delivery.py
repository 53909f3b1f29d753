"""A delivery of landing files prepared against the store and written, one transaction per file."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from anomalens_dagster.constants import OPS_SCHEMA, ORDER_ITEMS, ORDERS
from anomalens_dagster.core.landing.readers import RawFile, file_sha256, landing_file_kind, read_landing_file
from anomalens_dagster.core.landing.rules import (
    INGEST_REJECTIONS,
    INGESTED_FILES,
    LANDING_KINDS,
    OPS_DDL,
    REJECTION_COLUMNS,
    STATUS_DUPLICATE,
    STATUS_LOADED,
    STATUS_QUARANTINED,
    TIME_COLUMN_BY_KIND,
    UnreadableFileError,
    naive_utc,
    rejection_frame,
    store_columns,
)
from anomalens_dagster.core.landing.validation import KeyLookup, validate_rows
from anomalens_dagster.core.warehouse import _register, ensure_store_tables, qualified, table_exists, transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FileIngest:
    """What ingesting one landing file does: its rows to load, its rejections, its status.

    `loaded` has the store table's columns (`source` = file); `rejections` REJECTION_COLUMNS;
    `days` are the days (UTC) the loaded rows fall on — an order item's is its order's — so the
    caller can refresh those partitions. `reason` says why a file was quarantined.
    """

    path: Path
    file: str
    kind: str | None
    sha256: str
    rows_in: int
    loaded: pd.DataFrame
    rejections: pd.DataFrame
    status: str
    reason: str | None = None
    days: tuple[dt.date, ...] = ()

    def __post_init__(self) -> None:
        if self.rows_in != self.rows_loaded + self.rows_rejected:
            raise ValueError(
                f"{self.file}: {self.rows_in} rows in but {self.rows_loaded} loaded + {self.rows_rejected} rejected"
            )

    @property
    def rows_loaded(self) -> int:
        return len(self.loaded)

    @property
    def rows_rejected(self) -> int:
        return len(self.rejections)


def prepare_delivery(
    conn: duckdb.DuckDBPyConnection, paths: Iterable[str | os.PathLike], now: dt.datetime
) -> list[FileIngest]:
    """Read and validate a delivery of landing files against the store; writes nothing.

    References see the store and the good rows of the delivery's other files (an orders file and
    its order items delivered together). Content already loaded (same SHA-256) is a `duplicate`;
    an unreadable file is `quarantined` with its reason. Results come orders first, then order
    items, then activities (each kind in the given order), unknown kinds last: write them in this
    order so an item's order is in the store before it.
    """
    paths = sorted(dict.fromkeys(Path(path) for path in paths), key=_kind_rank)
    lookup = store_key_lookup(conn)
    results: dict[Path, FileIngest] = {}
    raw_by_kind: dict[str, list[tuple[Path, str, RawFile]]] = {kind: [] for kind in LANDING_KINDS}
    delivered_shas: set[str] = set()
    for path in paths:
        sha = file_sha256(path)
        if sha in delivered_shas or _already_loaded(conn, sha):
            results[path] = _empty_result(path, sha, STATUS_DUPLICATE)
            logger.info("%s: identical content already loaded, skipping", path.name)
            continue
        try:
            raw = read_landing_file(path)
        except UnreadableFileError as error:
            results[path] = _empty_result(path, sha, STATUS_QUARANTINED, reason=error.reason)
            continue
        delivered_shas.add(sha)
        raw_by_kind[raw.kind].append((path, sha, raw))

    delivered: dict[str, np.ndarray] = {}
    order_times = pd.DataFrame({"id": pd.Series(dtype="int64"), "created_at": pd.Series(dtype="datetime64[us]")})
    for kind in LANDING_KINDS:
        files = raw_by_kind[kind]
        if not files:
            continue
        rows = pd.concat([raw.rows.assign(file=raw.file) for _, _, raw in files], ignore_index=True)
        loaded, rejections = validate_rows(kind, rows, now=now, in_store=lookup, delivered=delivered)
        if kind == ORDERS:
            delivered[ORDERS] = loaded["id"].to_numpy()
            order_times = loaded[["id", "created_at"]]
        for path, sha, raw in files:
            mine = loaded[loaded["source"] == raw.file].reset_index(drop=True)
            refused = pd.concat(
                [raw.unreadable_rows, rejections[rejections["file"] == raw.file]], ignore_index=True
            ).sort_values("line", kind="stable", ignore_index=True)
            days = (
                _order_days(conn, mine["order_id"], order_times)
                if kind == ORDER_ITEMS
                else _days(mine[TIME_COLUMN_BY_KIND[kind]])
            )
            results[path] = FileIngest(path, raw.file, kind, sha, raw.rows_in, mine, refused, STATUS_LOADED, days=days)
            logger.info("%s: %d rows in, %d to load, %d rejected", raw.file, raw.rows_in, len(mine), len(refused))
    return [results[path] for path in paths]


def write_file_ingest(conn: duckdb.DuckDBPyConnection, result: FileIngest, ingested_at: dt.datetime) -> FileIngest:
    """Write one file's ingest in one transaction: its rows, its rejections and its ops record.

    A duplicate writes nothing. Content that is already recorded as loaded by the time of the write
    (a re-run after a write that did commit) is turned into a duplicate, so a re-run never loads
    rows twice. Returns the result as written.
    """
    if result.status == STATUS_DUPLICATE:
        return result
    ensure_store_tables(conn)
    ensure_ops_tables(conn)
    ingested_at = naive_utc(ingested_at)
    with transaction(conn):
        if result.status == STATUS_LOADED and _already_loaded(conn, result.sha256):
            return _empty_result(result.path, result.sha256, STATUS_DUPLICATE, kind=result.kind)
        if result.rows_loaded:
            _insert_loaded(conn, result.kind, result.loaded)
        _insert_rejections(conn, result, ingested_at)
        conn.execute(
            f"""INSERT INTO {qualified(INGESTED_FILES, OPS_SCHEMA)}
                (file, kind, sha256, rows_in, rows_loaded, rows_rejected, status, reason, ingested_at)
                VALUES ($file, $kind, $sha256, $rows_in, $rows_loaded, $rows_rejected, $status, $reason, $at)""",
            {
                "file": result.file,
                "kind": result.kind,
                "sha256": result.sha256,
                "rows_in": result.rows_in,
                "rows_loaded": result.rows_loaded,
                "rows_rejected": result.rows_rejected,
                "status": result.status,
                "reason": result.reason,
                "at": ingested_at,
            },
        )
    return result


def ingest_delivery(
    conn: duckdb.DuckDBPyConnection, paths: Iterable[str | os.PathLike], now: dt.datetime
) -> list[FileIngest]:
    """Prepare a delivery and write each file's result (one transaction per file), in order.

    Moving quarantined files away is left to the caller (`move_to_quarantine`).
    """
    return [write_file_ingest(conn, result, now) for result in prepare_delivery(conn, paths, now)]


def ensure_ops_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the ops schema and the ingest log tables when missing (idempotent)."""
    conn.execute(OPS_DDL)


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


def _kind_rank(path: Path) -> int:
    try:
        return LANDING_KINDS.index(landing_file_kind(path))
    except UnreadableFileError:
        return len(LANDING_KINDS)


def _already_loaded(conn: duckdb.DuckDBPyConnection, sha256: str) -> bool:
    if not table_exists(conn, INGESTED_FILES, OPS_SCHEMA):
        return False
    # fetchall, not fetchone: a half-read result blocks the connection for the statements that follow.
    ((found,),) = conn.execute(
        f"SELECT count(*) FROM {qualified(INGESTED_FILES, OPS_SCHEMA)} WHERE sha256 = $sha256 AND status = $loaded",
        {"sha256": sha256, "loaded": STATUS_LOADED},
    ).fetchall()
    return found > 0


def _empty_result(
    path: Path, sha256: str, status: str, reason: str | None = None, kind: str | None = None
) -> FileIngest:
    if kind is None:
        try:
            kind = landing_file_kind(path)
        except UnreadableFileError:
            kind = None
    loaded = pd.DataFrame(columns=list(store_columns(kind))) if kind else pd.DataFrame()
    return FileIngest(path, path.name, kind, sha256, 0, loaded, rejection_frame([], path.name), status, reason)


def _days(times: pd.Series) -> tuple[dt.date, ...]:
    return tuple(sorted(pd.to_datetime(times).dt.date.unique()))


def _order_days(
    conn: duckdb.DuckDBPyConnection, order_ids: pd.Series, delivered_orders: pd.DataFrame
) -> tuple[dt.date, ...]:
    """Days of the orders that order items belong to, from this delivery's orders or the store's."""
    ids = np.unique(order_ids.to_numpy(dtype="int64"))
    days = set(_days(delivered_orders.loc[delivered_orders["id"].isin(ids), "created_at"]))
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


def _insert_loaded(conn: duckdb.DuckDBPyConnection, kind: str, loaded: pd.DataFrame) -> None:
    columns = ", ".join(store_columns(kind))
    _register(conn, "landed_rows", loaded[list(store_columns(kind))])
    conn.execute(f"INSERT INTO {qualified(kind)} ({columns}) SELECT {columns} FROM landed_rows")
    conn.unregister("landed_rows")


def _insert_rejections(conn: duckdb.DuckDBPyConnection, result: FileIngest, ingested_at: dt.datetime) -> None:
    if not result.rows_rejected:
        return
    _register(conn, "landed_rejections", result.rejections[list(REJECTION_COLUMNS)])
    conn.execute(
        f"""INSERT INTO {qualified(INGEST_REJECTIONS, OPS_SCHEMA)}
            (file, sha256, line, "column", value, reason, ingested_at)
            SELECT file, $sha256, line, "column", value, reason, $at FROM landed_rejections""",
        {"sha256": result.sha256, "at": ingested_at},
    )
    conn.unregister("landed_rejections")
