"""Landing-zone rules shared by the readers, the validation and the writes: names, kinds, columns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from anomalens_dagster.constants import (
    ACTION_TYPES,
    ALLOW_KINDS,
    CATEGORIES,
    CUSTOMERS,
    ENTITY_TYPES,
    FEEDBACK_LANDING_KIND,
    OPS_SCHEMA,
    ORDER_ITEMS,
    ORDER_STATUSES,
    ORDERS,
    PARTITIONS_START_DATE,
    PRODUCTS,
    USER_ACTIVITIES,
    VERDICTS,
)

INGESTED_FILES = "ingested_files"  # table in OPS_SCHEMA: one row per delivered file
INGEST_REJECTIONS = "ingest_rejections"  # table in OPS_SCHEMA: one row per rejected input row
PENDING_ROWS = "pending_rows"  # table in OPS_SCHEMA: rows waiting for a reference to arrive
ID_MAP = "id_map"  # table in OPS_SCHEMA: the integer id given to each text id of a store's files
CATALOG_KINDS = (CATEGORIES, PRODUCTS, CUSTOMERS)  # upserted by id
FACT_KINDS = (ORDERS, ORDER_ITEMS, USER_ACTIVITIES)  # immutable once loaded
# Dependency order: files are validated and written in it, so a reference is in the store first.
LANDING_KINDS = (*CATALOG_KINDS, *FACT_KINDS)
# Analysts' verdicts (core/feedback.py) land too; they go to ops.analyst_feedback, not to the store.
FEEDBACK_KIND = FEEDBACK_LANDING_KIND
# Every kind a landing file may be, in the order a delivery takes them: verdicts last, so that they
# may judge rows delivered with them.
FILE_KINDS = (*LANDING_KINDS, FEEDBACK_KIND)
LANDING_EXTENSIONS = (".jsonl", ".csv", ".parquet")
QUARANTINE_DIR = "quarantine"  # inside the landing folder

# What becomes of each row of a delivery: exactly one of these.
ROW_LOADED = "loaded"  # new: inserted
ROW_UPDATED = "updated"  # a catalogue row whose content changed: replaced
ROW_ALREADY_LOADED = "already_loaded"  # identical to what the store holds: nothing to do
ROW_PENDING = "pending"  # only fault: a reference not in the store yet; retried on every ingest
ROW_REJECTED = "rejected"  # with a reason in ops.ingest_rejections
ROW_OUTCOMES = (ROW_LOADED, ROW_UPDATED, ROW_ALREADY_LOADED, ROW_PENDING, ROW_REJECTED)

# What became of a file.
STATUS_LOADED = "loaded"  # read and validated, no row rejected (some may be pending)
STATUS_PARTIAL = "partial"  # some rows rejected
STATUS_REJECTED = "rejected"  # every row rejected
STATUS_QUARANTINED = "quarantined"  # unreadable as a whole: nothing loaded, the file is moved away
STATUS_DUPLICATE = "duplicate"  # the same bytes were delivered before: nothing in it changed the store

# Fact rows before the first daily partition would load and never be scored: they are rejected.
EARLIEST_TIMESTAMP = dt.datetime.fromisoformat(PARTITIONS_START_DATE)
FUTURE_TOLERANCE = dt.timedelta(days=1)
DEFAULT_PENDING_MAX_AGE_DAYS = 7

# ADD COLUMN IF NOT EXISTS: stores written before per-row outcomes and delivery ids keep working.
OPS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OPS_SCHEMA};
CREATE TABLE IF NOT EXISTS {OPS_SCHEMA}.{INGESTED_FILES} (
    file VARCHAR NOT NULL, kind VARCHAR, sha256 VARCHAR NOT NULL, rows_in BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL, rows_rejected BIGINT NOT NULL, status VARCHAR NOT NULL, reason VARCHAR,
    ingested_at TIMESTAMP NOT NULL);
ALTER TABLE {OPS_SCHEMA}.{INGESTED_FILES} ADD COLUMN IF NOT EXISTS delivery_id VARCHAR;
ALTER TABLE {OPS_SCHEMA}.{INGESTED_FILES} ADD COLUMN IF NOT EXISTS rows_updated BIGINT DEFAULT 0;
ALTER TABLE {OPS_SCHEMA}.{INGESTED_FILES} ADD COLUMN IF NOT EXISTS rows_already_loaded BIGINT DEFAULT 0;
ALTER TABLE {OPS_SCHEMA}.{INGESTED_FILES} ADD COLUMN IF NOT EXISTS rows_pending BIGINT DEFAULT 0;
CREATE TABLE IF NOT EXISTS {OPS_SCHEMA}.{INGEST_REJECTIONS} (
    file VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, line BIGINT, "column" VARCHAR, value VARCHAR,
    reason VARCHAR NOT NULL, ingested_at TIMESTAMP NOT NULL);
ALTER TABLE {OPS_SCHEMA}.{INGEST_REJECTIONS} ADD COLUMN IF NOT EXISTS delivery_id VARCHAR;
CREATE TABLE IF NOT EXISTS {OPS_SCHEMA}.{PENDING_ROWS} (
    delivery_id VARCHAR NOT NULL, file VARCHAR NOT NULL, kind VARCHAR NOT NULL, line BIGINT,
    "row" JSON NOT NULL, "column" VARCHAR, reason VARCHAR NOT NULL, parked_at TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS {OPS_SCHEMA}.{ID_MAP} (
    kind VARCHAR NOT NULL, source_id VARCHAR NOT NULL, id BIGINT NOT NULL, mapped_at TIMESTAMP NOT NULL);
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
    # Known values: matched case-insensitively and stored as written here; others load as given and are counted.
    vocabulary: tuple[str, ...] = ()
    lower_case: bool = False  # free text stored trimmed and lower-cased (an order's status)
    references: str | None = None  # store table whose ids this column must name
    bounded: bool = True  # a timestamp within the days AnomaLens scores (a customer's sign-up need not be)


_ID = Column("id", INTEGER)
COLUMNS_BY_KIND: dict[str, tuple[Column, ...]] = {
    CATEGORIES: (_ID, Column("name", TEXT), Column("description", TEXT, required=False)),
    PRODUCTS: (
        _ID,
        Column("name", TEXT),
        Column("description", TEXT, required=False),
        Column("price", NUMBER, non_negative=True),
        Column("category_id", INTEGER, references=CATEGORIES),
    ),
    CUSTOMERS: (
        _ID,
        Column("email", TEXT),
        Column("first_name", TEXT, required=False),
        Column("last_name", TEXT, required=False),
        # When not given: the first time the delivery sees the customer, else the time of the ingest.
        Column("created_at", TIMESTAMP, required=False, bounded=False),
    ),
    ORDERS: (
        _ID,
        Column("customer_id", INTEGER, references=CUSTOMERS),
        Column("created_at", TIMESTAMP),
        Column("total_amount", NUMBER, non_negative=True),
        Column("status", TEXT, vocabulary=ORDER_STATUSES, lower_case=True),
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
# A verdict names an incident, or an entity by type and id (core/feedback.py checks which).
COLUMNS_BY_KIND[FEEDBACK_KIND] = (
    Column("incident_id", TEXT, required=False),
    Column("entity_type", TEXT, required=False, vocabulary=ENTITY_TYPES),
    Column("entity_id", INTEGER, required=False),
    Column("verdict", TEXT, vocabulary=VERDICTS),
    Column("note", TEXT, required=False),
    Column("by", TEXT, required=False),
    Column("allow", TEXT, required=False, vocabulary=ALLOW_KINDS),
    Column("days", NUMBER, required=False),
)
TIME_COLUMN_BY_KIND = {ORDERS: "created_at", USER_ACTIVITIES: "timestamp"}  # order items take their order's


def landing_columns(kind: str) -> tuple[str, ...]:
    """Columns a landing file of `kind` carries: the store table's, without `source`."""
    return tuple(column.name for column in COLUMNS_BY_KIND[kind])


def store_columns(kind: str) -> tuple[str, ...]:
    """Columns of the store table `kind`, as a loaded frame holds them: facts name their file in `source`."""
    return (*landing_columns(kind), "source") if kind in FACT_KINDS else landing_columns(kind)


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
