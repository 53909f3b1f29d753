"""Landing-zone ingestion: read, validate and load files of store events (no dagster import).

Files of orders, order items and user activities arrive in a landing folder as JSON Lines
(``.jsonl``), CSV (``.csv``) or Parquet (``.parquet``). A file's kind is the start of its name
(``orders-2026-03-01.csv``, ``order_items_batch7.parquet``, ``user_activities.jsonl``); its columns
are the store table's minus ``source``, which becomes the file's name. Timestamps are ISO 8601, read
as UTC when they carry no offset and converted to naive UTC when they do; ``details`` is a JSON
object, nested (JSON Lines, Parquet struct) or as JSON text.

Every input row ends up loaded or rejected, never both and never lost: ``rows_in = rows_loaded +
rows_rejected`` for every file. The rules:

- **File level** (the file is quarantined, nothing of it loads): unknown kind or extension, not
  readable as its format (binary, not UTF-8, corrupt Parquet, no line of a ``.jsonl`` is a JSON
  object), empty, or a required column missing altogether (every row would be bad). Required
  columns are the store's NOT NULL ones; the nullable ones (an activity's ``customer_id``,
  ``session_id``, ``details``, ``ip_address``, ``user_agent``) read as null when absent. Unknown
  extra columns are ignored.
- **Row level** (one rejection per bad row, naming its *first* problem in this order: the line
  itself, then each column in table order — presence, type, range, vocabulary — then an id already
  in the store, then references, then duplicate ids): a malformed JSON line or a CSV record with
  the wrong number of fields, a missing required value, a value that is not an integer / number /
  timestamp / JSON object, a negative quantity, price or total, an unknown ``status`` or
  ``action_type``, a timestamp before the first daily partition (``PARTITIONS_START_DATE``) or more than a day after ``now``, an id already
  in the store, a reference to a customer, product or order that neither the store nor the
  delivery's good rows hold, an id that an earlier good row of the delivery has (the reason names
  that row's line; files of a delivery count in the order given). One rejection per row keeps a
  file's rejections table rows equal to its rejected rows.

Re-delivering content that was already loaded (same SHA-256, whatever the name) is a no-op
reported as ``duplicate``. Each file is written in one transaction: its rows, its rejections and its
line in ``ops.ingested_files`` land together or not at all.
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
