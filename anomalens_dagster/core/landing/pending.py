"""Rows waiting for a reference: retried on every ingest, loaded once it arrives, rejected when too old.

A row whose only fault is a reference the store does not hold yet (an order of a customer whose
file comes tomorrow) is parked in ``ops.pending_rows`` as it was delivered. Every ingest, after
writing its delivery, validates the parked rows again, kind by kind in dependency order: rows that
now pass are loaded (or found already loaded), rows that still wait longer than
``landing.pending_max_age_days`` are rejected with the reason, and the delivery that brought them
gets its counts moved from ``rows_pending`` to the row's outcome, so its line in
``ops.ingested_files`` always says where each of its rows is.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from anomalens_dagster.constants import OPS_SCHEMA, ORDER_ITEMS
from anomalens_dagster.core.landing.ids import IdMap
from anomalens_dagster.core.landing.mapping import LandingSettings
from anomalens_dagster.core.landing.rules import (
    FACT_KINDS,
    INGESTED_FILES,
    LANDING_KINDS,
    PENDING_ROWS,
    STATUS_PARTIAL,
    STATUS_REJECTED,
    TIME_COLUMN_BY_KIND,
    landing_columns,
    naive_utc,
)
from anomalens_dagster.core.landing.validation import validate_rows
from anomalens_dagster.core.landing.writes import (
    compare_with_store,
    days_of,
    ensure_ops_tables,
    insert_id_map,
    insert_new_rows,
    insert_rejections,
    order_days,
    replace_rows,
    store_id_map,
    store_key_lookup,
)
from anomalens_dagster.core.warehouse import ensure_store_tables, qualified, transaction

logger = logging.getLogger(__name__)


@dataclass
class PendingRetry:
    """What retrying the parked rows did: rows per outcome, and the store days / catalogue kinds changed."""

    loaded: int = 0
    updated: int = 0
    already_loaded: int = 0
    rejected: int = 0
    still_pending: int = 0
    days_by_kind: dict[str, set[dt.date]] = field(default_factory=dict)
    catalog_kinds_changed: set[str] = field(default_factory=set)


def retry_pending_rows(
    conn: duckdb.DuckDBPyConnection, now: dt.datetime, settings: LandingSettings | None = None
) -> PendingRetry:
    """Validate the parked rows again against the store and settle those that can be (see the module docstring)."""
    settings = settings or LandingSettings()
    ensure_store_tables(conn)
    ensure_ops_tables(conn)
    now = naive_utc(now)
    retry = PendingRetry()
    id_map = store_id_map(conn)  # one for every kind: a pending item finds its pending order's new id
    parked = conn.execute(
        f"""SELECT p.delivery_id, p.file, p.kind, p.line, CAST(p."row" AS VARCHAR) AS row_text, p.parked_at, f.sha256
            FROM {qualified(PENDING_ROWS, OPS_SCHEMA)} AS p
            LEFT JOIN {qualified(INGESTED_FILES, OPS_SCHEMA)} AS f USING (delivery_id)
            ORDER BY p.parked_at, p.file, p.line"""
    ).df()
    for kind in LANDING_KINDS:
        for (delivery_id, sha256), rows in parked[parked["kind"] == kind].groupby(
            ["delivery_id", "sha256"], sort=False
        ):
            _retry_delivery_rows(conn, kind, delivery_id, sha256, rows, now, settings, id_map, retry)
    if len(parked):
        logger.info(
            "pending rows retried: %d loaded, %d updated, %d already loaded, %d rejected, %d still pending",
            retry.loaded,
            retry.updated,
            retry.already_loaded,
            retry.rejected,
            retry.still_pending,
        )
    return retry


def _retry_delivery_rows(
    conn: duckdb.DuckDBPyConnection,
    kind: str,
    delivery_id: str,
    sha256: str,
    parked: pd.DataFrame,
    now: dt.datetime,
    settings: LandingSettings,
    id_map: IdMap,
    retry: PendingRetry,
) -> None:
    """Settle one delivery's parked rows of one kind, in one transaction with its counts."""
    texts = pd.DataFrame([json.loads(text) for text in parked["row_text"]], index=parked.index)
    rows = pd.DataFrame({"file": parked["file"].to_numpy(), "line": parked["line"].to_numpy()})
    for name in landing_columns(kind):
        rows[name] = pd.Series(texts[name].to_numpy() if name in texts else None, dtype="str")
    validated = validate_rows(
        kind, rows, now=now, in_store=store_key_lookup(conn), timezone=settings.timezone, id_map=id_map
    )
    compared = compare_with_store(conn, kind, validated.good)

    parked_at = parked.set_index("line")["parked_at"]
    waiting = validated.pending
    age = now - pd.to_datetime(parked_at.loc[waiting["line"]].to_numpy())
    too_old = np.asarray(age > pd.Timedelta(days=settings.pending_max_age_days), dtype=bool)
    expired = waiting[too_old]
    expired_rejections = pd.DataFrame(
        {
            "file": expired["file"],
            "line": expired["line"].astype("Int64"),
            "column": expired["column"],
            "value": [row[column] for row, column in zip(expired.to_dict("records"), expired["column"], strict=True)],
            "reason": f"pending longer than {settings.pending_max_age_days:g} days: " + expired["reason"],
        }
    )
    rejections = pd.concat([validated.rejections, compared.conflicts, expired_rejections], ignore_index=True)
    settled_lines = [*validated.good["line"], *rejections["line"]]
    counts = {
        "loaded": len(compared.new),
        "updated": len(compared.updated),
        "already_loaded": len(compared.identical),
        "rejected": len(rejections),
    }
    with transaction(conn):
        insert_new_rows(conn, kind, compared.new)
        replace_rows(conn, kind, compared.updated)
        insert_id_map(conn, id_map.assigned(kind, validated.good["id"]), now)
        insert_rejections(conn, rejections, sha256, delivery_id, now)
        conn.execute(
            f"""DELETE FROM {qualified(PENDING_ROWS, OPS_SCHEMA)}
                WHERE delivery_id = $delivery AND kind = $kind AND list_contains($lines, line)""",
            {"delivery": delivery_id, "kind": kind, "lines": [int(line) for line in settled_lines]},
        )
        _move_counts(conn, delivery_id, counts)
    retry.loaded += counts["loaded"]
    retry.updated += counts["updated"]
    retry.already_loaded += counts["already_loaded"]
    retry.rejected += counts["rejected"]
    retry.still_pending += len(waiting) - len(expired)
    if compared.new.empty and compared.updated.empty:
        return
    if kind not in FACT_KINDS:
        retry.catalog_kinds_changed.add(kind)
    elif kind == ORDER_ITEMS:
        no_orders = pd.DataFrame({"id": pd.Series(dtype="int64"), "created_at": pd.Series(dtype="datetime64[us]")})
        retry.days_by_kind.setdefault(kind, set()).update(order_days(conn, compared.new["order_id"], no_orders))
    else:
        retry.days_by_kind.setdefault(kind, set()).update(days_of(compared.new[TIME_COLUMN_BY_KIND[kind]]))


def _move_counts(conn: duckdb.DuckDBPyConnection, delivery_id: str, counts: dict[str, int]) -> None:
    """Move settled rows from the delivery's `rows_pending` to their outcomes, and update its status."""
    settled = sum(counts.values())
    if not settled:
        return
    conn.execute(
        f"""UPDATE {qualified(INGESTED_FILES, OPS_SCHEMA)} SET
                rows_pending = rows_pending - $settled,
                rows_loaded = rows_loaded + $loaded,
                rows_updated = rows_updated + $updated,
                rows_already_loaded = rows_already_loaded + $already_loaded,
                rows_rejected = rows_rejected + $rejected,
                status = CASE
                    WHEN rows_rejected + $rejected = rows_in THEN $all_rejected
                    WHEN rows_rejected + $rejected > 0 THEN $partial
                    ELSE status END
            WHERE delivery_id = $delivery""",
        {
            "settled": settled,
            **counts,
            "all_rejected": STATUS_REJECTED,
            "partial": STATUS_PARTIAL,
            "delivery": delivery_id,
        },
    )
