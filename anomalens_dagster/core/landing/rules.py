"""Landing-zone rules shared by the readers, the validation and the writes: names, kinds, columns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from anomalens_dagster.constants import (
    ACTION_TYPES,
    CUSTOMERS,
    OPS_SCHEMA,
    ORDER_ITEMS,
    ORDER_STATUSES,
    ORDERS,
    PARTITIONS_START_DATE,
    PRODUCTS,
    USER_ACTIVITIES,
)

INGESTED_FILES = "ingested_files"  # table in OPS_SCHEMA: one row per file ingested
INGEST_REJECTIONS = "ingest_rejections"  # table in OPS_SCHEMA: one row per rejected input row
LANDING_KINDS = (ORDERS, ORDER_ITEMS, USER_ACTIVITIES)  # in the order files are validated and written
LANDING_EXTENSIONS = (".jsonl", ".csv", ".parquet")
QUARANTINE_DIR = "quarantine"  # inside the landing folder

STATUS_LOADED = "loaded"  # read and validated: its good rows loaded, its bad rows rejected
STATUS_QUARANTINED = "quarantined"  # unreadable as a whole: nothing loaded, the file is moved away
STATUS_DUPLICATE = "duplicate"  # identical content was already loaded: nothing done

# Rows before the first daily partition would load and never be scored: they are rejected.
EARLIEST_TIMESTAMP = dt.datetime.fromisoformat(PARTITIONS_START_DATE)
FUTURE_TOLERANCE = dt.timedelta(days=1)

OPS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OPS_SCHEMA};
CREATE TABLE IF NOT EXISTS {OPS_SCHEMA}.{INGESTED_FILES} (
    file VARCHAR NOT NULL, kind VARCHAR, sha256 VARCHAR NOT NULL, rows_in BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL, rows_rejected BIGINT NOT NULL, status VARCHAR NOT NULL, reason VARCHAR,
    ingested_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS {OPS_SCHEMA}.{INGEST_REJECTIONS} (
    file VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, line BIGINT, "column" VARCHAR, value VARCHAR,
    reason VARCHAR NOT NULL, ingested_at TIMESTAMP NOT NULL);
"""

REJECTION_COLUMNS = ("file", "line", "column", "value", "reason")
_MAX_VALUE_CHARS = 200


INTEGER, NUMBER, TIMESTAMP, TEXT, JSON_OBJECT = "integer", "number", "timestamp", "text", "JSON object"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = True
    non_negative: bool = False
    vocabulary: tuple[str, ...] = ()
    references: str | None = None  # store table whose ids this column must name


_ID = Column("id", INTEGER)
COLUMNS_BY_KIND: dict[str, tuple[Column, ...]] = {
    ORDERS: (
        _ID,
        Column("customer_id", INTEGER, references=CUSTOMERS),
        Column("created_at", TIMESTAMP),
        Column("total_amount", NUMBER, non_negative=True),
        Column("status", TEXT, vocabulary=ORDER_STATUSES),
    ),
    ORDER_ITEMS: (
        _ID,
        Column("order_id", INTEGER, references=ORDERS),
        Column("product_id", INTEGER, references=PRODUCTS),
        Column("quantity", INTEGER, non_negative=True),
        Column("price", NUMBER, non_negative=True),
    ),
    USER_ACTIVITIES: (
        _ID,
        Column("customer_id", INTEGER, required=False, references=CUSTOMERS),
        Column("session_id", TEXT, required=False),
        Column("timestamp", TIMESTAMP),
        Column("action_type", TEXT, vocabulary=ACTION_TYPES),
        Column("details", JSON_OBJECT, required=False),
        Column("ip_address", TEXT, required=False),
        Column("user_agent", TEXT, required=False),
    ),
}
TIME_COLUMN_BY_KIND = {ORDERS: "created_at", USER_ACTIVITIES: "timestamp"}  # order items take their order's


def landing_columns(kind: str) -> tuple[str, ...]:
    """Columns a landing file of `kind` carries: the store table's, without `source`."""
    return tuple(column.name for column in COLUMNS_BY_KIND[kind])


def store_columns(kind: str) -> tuple[str, ...]:
    """Columns of the store table `kind`, as a loaded frame holds them."""
    return (*landing_columns(kind), "source")


class UnreadableFileError(ValueError):
    """A landing file that cannot be read as a whole; it goes to quarantine with `reason`."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


def clip_values(values: pd.Series) -> pd.Series:
    """Rejected values cut to _MAX_VALUE_CHARS: enough to see the value, not a whole blob."""
    long = values.str.len() > _MAX_VALUE_CHARS
    return values.where(~long, values.str.slice(0, _MAX_VALUE_CHARS - 1) + "…")


def rejection_frame(rejections: Sequence[tuple], file: str) -> pd.DataFrame:
    """Rejections given as (line, column, value, reason) tuples, as a frame of REJECTION_COLUMNS."""
    lines, columns, values, reasons = zip(*rejections, strict=True) if rejections else ((), (), (), ())
    return pd.DataFrame(
        {
            "file": pd.Series([file] * len(lines), dtype="str"),
            "line": pd.Series(lines, dtype="Int64"),
            "column": pd.Series(columns, dtype="str"),
            "value": clip_values(pd.Series(values, dtype="str")),
            "reason": pd.Series(reasons, dtype="str"),
        }
    )


def naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
