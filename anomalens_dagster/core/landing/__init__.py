"""Landing-zone ingestion: read, validate and load a store's own files (no dagster import).

Files of categories, products, customers, orders, order items and user activities arrive in a
landing folder as JSON Lines (``.jsonl``), CSV (``.csv``) or Parquet (``.parquet``). A file's kind
is the start of its name (``orders-2026-03-01.csv``, ``order_items_batch7.parquet``); its columns
are the store table's (facts' ``source`` becomes the file's name), under the store's own names and
values where the settings file's ``landing`` section maps them (``mapping``). ``details`` is a JSON
object, nested (JSON Lines, Parquet struct) or as JSON text. The modules, in the order a file meets them:

- ``rules``: kinds, columns, statuses and the ops tables' DDL;
- ``mapping``: the ``landing`` settings (column and value maps, time zone) and timestamps (ISO 8601
  with or without offset, epoch seconds or milliseconds);
- ``readers``: files read as text rows with their line numbers, quarantine;
- ``ids``: text ids (``WC-1001``, UUIDs) given stable integer ids, kept in ``ops.id_map``;
- ``validation``: text rows into typed good rows, rejections and rows pending a reference;
- ``writes``: good rows against the store (new, updated, identical, conflicting) and the writes;
- ``delivery``: a delivery prepared in dependency order and written, one transaction per file;
- ``pending``: parked rows retried on every ingest, loaded once their reference arrives, aged out;
- ``sample``: a small simulated delivery to try the landing zone with.
- ``verdicts``: files of analysts' verdicts (``feedback…``), taken last in a delivery: each row is
  validated by ``core.feedback`` and appended to ``ops.analyst_feedback`` or rejected with its
  reason; the same bytes delivered again append nothing (their rows are ``already_loaded``).

Every row of every delivery ends in exactly one of loaded, updated, already_loaded, pending or
rejected, and ``rows_in`` is their sum per delivery. The rules:

- **File level** (the file is quarantined, nothing of it loads): unknown kind or extension, not
  readable as its format (binary, not UTF-8, corrupt Parquet, no line of a ``.jsonl`` is a JSON
  object), empty, or a required column missing altogether (every row would be bad). Unknown extra
  columns are ignored.
- **Row level** (one rejection per bad row, naming its *first* problem in this order: the line
  itself, then each column in table order — presence, type, range — then references, then
  duplicate ids): a malformed JSON line or a CSV record with the wrong number of fields, a missing
  required value, a value that is not an integer / number / timestamp / JSON object, a negative
  quantity, price or total, a fact timestamp before the first daily partition
  (``PARTITIONS_START_DATE``) or more than a day after ``now``, an id that an earlier good row of
  the delivery has (the reason names that row's line). A row whose first problem is a reference
  that neither the store nor the delivery holds is **pending**, not rejected. A fact whose id the
  store holds with other content is rejected (facts are immutable); a catalogue row is upserted.
  Status is free text and action types match case-insensitively: values outside the known ones
  load and are counted.

Re-delivering the same bytes is a delivery of its own (``duplicate`` when it changed nothing). Each
file is written in one transaction: its rows, its rejections, its pending rows and its line in
``ops.ingested_files`` land together or not at all.
"""

from anomalens_dagster.core.landing.delivery import (
    FileIngest,
    file_status,
    ingest_delivery,
    prepare_delivery,
    write_file_ingest,
)
from anomalens_dagster.core.landing.mapping import LandingSettings, LandingSettingsError, parse_timestamps
from anomalens_dagster.core.landing.pending import PendingRetry, retry_pending_rows
from anomalens_dagster.core.landing.readers import (
    RawFile,
    file_sha256,
    landing_file_kind,
    list_landing_files,
    move_to_quarantine,
    quarantine_path,
    read_landing_file,
)
from anomalens_dagster.core.landing.rules import (
    CATALOG_KINDS,
    COLUMNS_BY_KIND,
    FACT_KINDS,
    INGEST_REJECTIONS,
    INGESTED_FILES,
    LANDING_EXTENSIONS,
    LANDING_KINDS,
    PENDING_ROWS,
    QUARANTINE_DIR,
    REJECTION_COLUMNS,
    ROW_OUTCOMES,
    STATUS_DUPLICATE,
    STATUS_LOADED,
    STATUS_PARTIAL,
    STATUS_QUARANTINED,
    STATUS_REJECTED,
    UnreadableFileError,
    landing_columns,
    store_columns,
)
from anomalens_dagster.core.landing.sample import LANDING_SAMPLE_ID_OFFSET, write_landing_sample
from anomalens_dagster.core.landing.validation import KeyLookup, ValidatedRows, validate_rows
from anomalens_dagster.core.landing.writes import ensure_ops_tables, store_key_lookup

__all__ = [
    "CATALOG_KINDS",
    "FACT_KINDS",
    "PENDING_ROWS",
    "ROW_OUTCOMES",
    "STATUS_PARTIAL",
    "STATUS_REJECTED",
    "LandingSettings",
    "LandingSettingsError",
    "PendingRetry",
    "ValidatedRows",
    "file_status",
    "parse_timestamps",
    "retry_pending_rows",
    "COLUMNS_BY_KIND",
    "INGEST_REJECTIONS",
    "INGESTED_FILES",
    "LANDING_EXTENSIONS",
    "LANDING_KINDS",
    "LANDING_SAMPLE_ID_OFFSET",
    "QUARANTINE_DIR",
    "REJECTION_COLUMNS",
    "STATUS_DUPLICATE",
    "STATUS_LOADED",
    "STATUS_QUARANTINED",
    "FileIngest",
    "KeyLookup",
    "RawFile",
    "UnreadableFileError",
    "ensure_ops_tables",
    "file_sha256",
    "ingest_delivery",
    "landing_columns",
    "landing_file_kind",
    "list_landing_files",
    "move_to_quarantine",
    "prepare_delivery",
    "quarantine_path",
    "read_landing_file",
    "store_columns",
    "store_key_lookup",
    "validate_rows",
    "write_file_ingest",
    "write_landing_sample",
]
