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

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from anomalens_dagster.constants import (
    ACTION_TYPES,
    CUSTOMERS,
    DEFAULT_SEED,
    OPS_SCHEMA,
    ORDER_ITEMS,
    ORDER_STATUSES,
    ORDERS,
    PARTITIONS_START_DATE,
    PRODUCTS,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.simulator import (
    DETAIL_KEYS_BY_ACTION,
    SimulationSettings,
    simulate_catalog,
    simulate_day,
)
from anomalens_dagster.core.warehouse import (
    _register,
    details_json_sql,
    ensure_store_tables,
    qualified,
    table_exists,
    transaction,
)

logger = logging.getLogger(__name__)

# --- Names (candidates for constants.py) -----------------------------------------------------------
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
# Landed sample rows take ids from the top tenth of each day's id range (`day_id_base`), which the
# simulator never reaches (at most 5e7 activities a day), so sample and simulated rows never collide.
LANDING_SAMPLE_ID_OFFSET = 90_000_000
_LANDING_SAMPLE_MAX_ROWS_PER_DAY = 10_000_000

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


# --- Column rules ----------------------------------------------------------------------------------

_INTEGER, _NUMBER, _TIMESTAMP, _TEXT, _JSON_OBJECT = "integer", "number", "timestamp", "text", "JSON object"


@dataclass(frozen=True)
class _Column:
    name: str
    type: str
    required: bool = True
    non_negative: bool = False
    vocabulary: tuple[str, ...] = ()
    references: str | None = None  # store table whose ids this column must name


_ID = _Column("id", _INTEGER)
COLUMNS_BY_KIND: dict[str, tuple[_Column, ...]] = {
    ORDERS: (
        _ID,
        _Column("customer_id", _INTEGER, references=CUSTOMERS),
        _Column("created_at", _TIMESTAMP),
        _Column("total_amount", _NUMBER, non_negative=True),
        _Column("status", _TEXT, vocabulary=ORDER_STATUSES),
    ),
    ORDER_ITEMS: (
        _ID,
        _Column("order_id", _INTEGER, references=ORDERS),
        _Column("product_id", _INTEGER, references=PRODUCTS),
        _Column("quantity", _INTEGER, non_negative=True),
        _Column("price", _NUMBER, non_negative=True),
    ),
    USER_ACTIVITIES: (
        _ID,
        _Column("customer_id", _INTEGER, required=False, references=CUSTOMERS),
        _Column("session_id", _TEXT, required=False),
        _Column("timestamp", _TIMESTAMP),
        _Column("action_type", _TEXT, vocabulary=ACTION_TYPES),
        _Column("details", _JSON_OBJECT, required=False),
        _Column("ip_address", _TEXT, required=False),
        _Column("user_agent", _TEXT, required=False),
    ),
}
TIME_COLUMN_BY_KIND = {ORDERS: "created_at", USER_ACTIVITIES: "timestamp"}  # order items take their order's


def landing_columns(kind: str) -> tuple[str, ...]:
    """Columns a landing file of `kind` carries: the store table's, without `source`."""
    return tuple(column.name for column in COLUMNS_BY_KIND[kind])


def store_columns(kind: str) -> tuple[str, ...]:
    """Columns of the store table `kind`, as a loaded frame holds them."""
    return (*landing_columns(kind), "source")


# --- Files -----------------------------------------------------------------------------------------


class UnreadableFileError(ValueError):
    """A landing file that cannot be read as a whole; it goes to quarantine with `reason`."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


def landing_file_kind(path: str | os.PathLike) -> str:
    """The store table a landing file feeds: the longest kind its name starts with (case-insensitive).

    Raises UnreadableFileError, naming the file, for an unknown kind or extension.
    """
    name = Path(path).name
    lowered = name.lower()
    if not lowered.endswith(LANDING_EXTENSIONS):
        raise UnreadableFileError(
            name, f"unknown extension: a landing file ends in one of {', '.join(LANDING_EXTENSIONS)}"
        )
    kinds = [kind for kind in LANDING_KINDS if lowered.startswith(kind)]
    if not kinds:
        raise UnreadableFileError(
            name, f"unknown kind: a landing file's name starts with one of {', '.join(LANDING_KINDS)}"
        )
    return max(kinds, key=len)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_landing_files(landing_dir: str | os.PathLike) -> list[Path]:
    """Files waiting in the landing folder, by name: top level only, hidden files skipped.

    Files of unknown kinds are listed too, so that they are quarantined instead of lingering.
    """
    directory = Path(landing_dir)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if path.is_file() and not path.name.startswith("."))


def quarantine_path(landing_dir: str | os.PathLike, file: str) -> Path:
    """Where a quarantined landing file goes: `<landing_dir>/quarantine/<file>`."""
    return Path(landing_dir) / QUARANTINE_DIR / Path(file).name


def move_to_quarantine(landing_dir: str | os.PathLike, path: str | os.PathLike, reason: str) -> Path:
    """Move a landing file into quarantine with its reason beside it (`<file>.reason.txt`).

    A file already quarantined under the same name is kept: the newcomer gets a numbered name.
    Returns the new path.
    """
    target = quarantine_path(landing_dir, Path(path).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    number = 0
    while target.exists():
        number += 1
        target = target.with_name(f"{Path(path).name}.{number}")
    os.replace(path, target)
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    logger.warning("quarantined %s as %s: %s", Path(path).name, target, reason)
    return target


@dataclass(frozen=True, eq=False)
class RawFile:
    """A landing file read as text, before validation.

    `rows` has `line` (1-based: the CSV header is line 1, a JSON Lines file's line, a Parquet row
    index + 1) and the kind's columns as `str` (missing and empty values as NaN). Lines that are not a
    row at all (malformed JSON, a CSV record with the wrong number of fields) are already rejections,
    in `unreadable_rows` (columns REJECTION_COLUMNS).
    """

    file: str
    kind: str
    rows: pd.DataFrame
    unreadable_rows: pd.DataFrame

    @property
    def rows_in(self) -> int:
        return len(self.rows) + len(self.unreadable_rows)


def read_landing_file(path: str | os.PathLike) -> RawFile:
    """Read a landing file into text rows with their line numbers, without judging the values.

    Raises UnreadableFileError when the file cannot be read as a whole (see the module docstring).
    """
    path = Path(path)
    kind = landing_file_kind(path)
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise UnreadableFileError(path.name, "empty file")
    if suffix == ".parquet":
        columns, unreadable = _read_parquet(path), []
    else:
        text = _read_text(path)
        if suffix == ".csv":
            columns, unreadable = _read_csv(path.name, text)
        else:
            columns, unreadable = _read_jsonl(path.name, text, landing_columns(kind))
    missing = [column.name for column in COLUMNS_BY_KIND[kind] if column.required and column.name not in columns]
    if missing:
        raise UnreadableFileError(
            path.name,
            f"missing required column(s) {', '.join(missing)} (expected {', '.join(landing_columns(kind))})",
        )
    extra = sorted(set(columns) - {"line", *landing_columns(kind)})
    if extra:
        logger.info("%s: ignoring unknown column(s) %s", path.name, ", ".join(extra))
    rows = pd.DataFrame({"line": pd.Series(columns["line"], dtype="int64")})
    for name in landing_columns(kind):
        values = columns.get(name)
        rows[name] = pd.Series(values if values is not None else [None] * len(rows), dtype="str")
        rows[name] = rows[name].where(rows[name] != "")
    return RawFile(file=path.name, kind=kind, rows=rows, unreadable_rows=_rejection_frame(unreadable, path.name))


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise UnreadableFileError(path.name, f"binary content (NUL bytes), not {path.suffix} text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableFileError(path.name, f"not UTF-8 text: {error}") from error
    if not text.strip():
        raise UnreadableFileError(path.name, "empty file")
    return text


def _read_csv(file: str, text: str) -> tuple[dict[str, list], list[tuple]]:
    """Columns (with `line`) of a CSV text, and the records with the wrong number of fields."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    lines: list[int] = []
    records: list[list[str]] = []
    unreadable: list[tuple] = []
    try:
        consumed = 0
        for record in reader:
            start, consumed = consumed + 1, reader.line_num
            if not record:
                continue
            if header is None:
                header = [name.strip().lower() for name in record]
                duplicated = sorted({name for name in header if header.count(name) > 1})
                if duplicated:
                    raise UnreadableFileError(file, f"duplicate column(s) {', '.join(duplicated)} in the header")
            elif len(record) != len(header):
                value = ",".join(record)
                unreadable.append((start, None, value, f"expected {len(header)} fields, found {len(record)}"))
            else:
                lines.append(start)
                records.append(record)
    except csv.Error as error:
        raise UnreadableFileError(file, f"malformed CSV: {error}") from error
    assert header is not None  # the text is not blank
    columns: dict[str, list] = {"line": lines}
    for position, name in enumerate(header):
        columns[name] = [record[position] for record in records]
    return columns, unreadable


def _read_jsonl(file: str, text: str, wanted: Sequence[str]) -> tuple[dict[str, list], list[tuple]]:
    """Columns (`line` and the `wanted` keys present) of a JSON Lines text, and the lines that are not
    a JSON object.

    DuckDB's JSON functions parse the lines and pull each key out as text (nested values as JSON
    text): 100k activity lines took 1.4 s here, against 10 s with `json.loads` and re-serialising
    each `details` line by line.
    """
    lines = text.split("\n")
    numbers = [number for number, line in enumerate(lines, start=1) if line.strip()]
    conn = duckdb.connect()
    try:
        conn.register(
            "jsonl", pa.table({"line": pa.array(numbers, pa.int64()), "text": [lines[n - 1] for n in numbers]})
        )
        conn.execute(
            """CREATE TEMP TABLE parsed AS
               SELECT line, text, CASE WHEN json_valid(text) THEN json_type(text) END AS json_type FROM jsonl"""
        )
        keys = {
            key
            for (key,) in conn.execute(
                "SELECT DISTINCT unnest(json_keys(text)) FROM parsed WHERE json_type = 'OBJECT'"
            ).fetchall()
        }
        present = [name for name in wanted if name in keys]
        # One JSON path list: each line is parsed once for all its keys (three times faster than a call per key).
        objects = conn.sql(
            "SELECT line, json_extract_string(text, $paths) AS vals FROM parsed WHERE json_type = 'OBJECT' ORDER BY line",
            params={"paths": [f'$."{name}"' for name in present]},
        ).to_arrow_table()
        others = conn.execute(
            "SELECT line, text, json_type FROM parsed WHERE json_type IS DISTINCT FROM 'OBJECT' ORDER BY line"
        ).fetchall()
    finally:
        conn.close()
    unreadable = [(number, None, line, _json_problem(line, json_type)) for number, line, json_type in others]
    if not objects.num_rows:
        first = unreadable[0]
        raise UnreadableFileError(file, f"no line is a JSON object, not JSON Lines (line {first[0]}: {first[3]})")
    extra = sorted(keys - set(wanted))
    if extra:
        logger.info("%s: ignoring unknown key(s) %s", file, ", ".join(extra))
    columns = {"line": objects.column("line").to_pylist()}
    vals = objects.column("vals")
    columns.update({name: pc.list_element(vals, position).to_pylist() for position, name in enumerate(present)})
    return columns, unreadable


def _json_problem(text: str, json_type: str | None) -> str:
    """Why a text is not a JSON object, `json_type` being DuckDB's type of it (None: invalid JSON)."""
    if json_type is not None:
        return f"not a JSON object but {json_type.lower()}"
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        return f"malformed JSON: {error}"
    return "malformed JSON"


def _read_parquet(path: Path) -> dict[str, list]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise UnreadableFileError(path.name, f"not a readable Parquet file: {error}") from error
    if table.num_rows == 0 and table.num_columns == 0:
        raise UnreadableFileError(path.name, "empty file")
    columns: dict[str, list] = {"line": list(range(1, table.num_rows + 1))}
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:
            values = pc.cast(column, pa.string()).to_pylist()
        except pa.ArrowNotImplementedError:  # structs, lists, maps: a nested `details`, say
            values = [_as_text(value) for value in column.to_pylist()]
        columns[name.strip().lower()] = values
    return columns


def _as_text(value: object) -> str | None:
    """A JSON or Parquet value as the text a CSV would hold: objects as JSON text, datetimes as ISO."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)


# --- Validation ------------------------------------------------------------------------------------

KeyLookup = Callable[[str, np.ndarray], np.ndarray]
"""`(table, ids) -> the ids among them that the store holds` (a query, or a set in tests)."""


def validate_rows(
    kind: str,
    rows: pd.DataFrame,
    *,
    now: dt.datetime,
    in_store: KeyLookup,
    delivered: Mapping[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split text rows of `kind` into typed rows ready to insert and rejections.

    `rows` holds `file`, `line` and the kind's columns as text (RawFile.rows with the file name),
    possibly from several files of one delivery, in delivery order: of the rows that pass every
    other check, an id's first occurrence loads and the later ones are rejected. `in_store` says which ids the store holds (for duplicates and references); `delivered`
    adds the ids of good rows of other kinds in the same delivery that references may name
    (an order item may name an order delivered with it). `now` bounds timestamps (naive UTC or aware).

    Returns (loaded, rejections): loaded has exactly the store table's columns, `source` being the
    file; rejections have REJECTION_COLUMNS, one per bad row (its first problem). Every input row
    is in exactly one of them.
    """
    rows = rows.reset_index(drop=True)
    delivered = delivered or {}
    latest = _naive_utc(now) + FUTURE_TOLERANCE
    problems = _Problems(rows)
    typed: dict[str, object] = {}
    for column in COLUMNS_BY_KIND[kind]:
        text = rows[column.name]
        present = text.notna().to_numpy()
        if column.required:
            problems.add(~present, column.name, f"missing {column.name}")
        typed[column.name] = _typed_column(column, text, present, latest, problems)

    ids = typed["id"]
    stored = np.isin(ids.to_numpy(dtype="int64", na_value=0), in_store(kind, _candidates(ids, problems.rejected)))
    problems.add(stored, "id", ("id " + ids.astype("str") + " is already in the store").to_numpy())

    for column in COLUMNS_BY_KIND[kind]:
        if column.references is None:
            continue
        values = typed[column.name]
        known = np.concatenate(
            [
                in_store(column.references, _candidates(values, problems.rejected)),
                np.asarray(delivered.get(column.references, ()), dtype="int64"),
            ]
        )
        unknown = values.notna().to_numpy() & ~np.isin(values.to_numpy(dtype="int64", na_value=0), known)
        where = "the store nor this delivery" if column.references == ORDERS else "the store"
        reasons = f"unknown {column.name} " + values.astype("str") + f": not in {where}"
        problems.add(unknown, column.name, reasons.to_numpy())

    # Last, so that the first occurrence a duplicate names is always a row that loads.
    first = _first_good_occurrence(rows, ids, problems.rejected)
    problems.add(first["line"].notna().to_numpy(), "id", _duplicate_reasons(rows, first, ids))

    good = ~problems.rejected
    loaded = pd.DataFrame({name: _take(values, good) for name, values in typed.items()})
    loaded["source"] = pd.Series(rows["file"].to_numpy()[good], dtype="str")
    for column in COLUMNS_BY_KIND[kind]:
        if column.required and column.type == _INTEGER:
            loaded[column.name] = loaded[column.name].astype("int64")
    return loaded, problems.frame()


def _typed_column(column: _Column, text: pd.Series, present: np.ndarray, latest: dt.datetime, problems: _Problems):
    """The column parsed to its type (missing where absent or bad), recording its problems."""
    name = column.name
    if column.type == _INTEGER:
        values, bad = _parse_integers(text)
        problems.add(present & bad, name, f"{name} is not an integer")
    elif column.type == _NUMBER:
        values = pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")
        bad = ~np.isfinite(values.to_numpy())
        problems.add(present & bad, name, f"{name} is not a number")
    elif column.type == _TIMESTAMP:
        parsed = pd.to_datetime(text.str.strip(), utc=True, format="ISO8601", errors="coerce")
        values = parsed.dt.tz_convert(None).astype("datetime64[us]")
        problems.add(present & values.isna().to_numpy(), name, f"{name} is not an ISO 8601 timestamp")
        problems.add((values > latest).to_numpy(), name, f"{name} is in the future (after {latest.isoformat()} UTC)")
        problems.add(
            (values < EARLIEST_TIMESTAMP).to_numpy(),
            name,
            f"{name} is before {EARLIEST_TIMESTAMP.date()}, the first day AnomaLens scores",
        )
    elif column.type == _JSON_OBJECT:
        values, reasons = _parse_json_objects(text)
        problems.add(reasons.notna().to_numpy(), name, reasons.to_numpy())
    else:
        values = text
        if column.vocabulary:
            unknown = present & ~text.isin(column.vocabulary).to_numpy()
            reasons = (
                f"unknown {name} "
                + text.map(repr, na_action="ignore")
                + f"; expected one of {', '.join(column.vocabulary)}"
            )
            problems.add(unknown, name, reasons.to_numpy())
    if column.non_negative:
        problems.add((values < 0).fillna(False).to_numpy(dtype=bool), name, f"{name} is negative")
    return values


def _parse_integers(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Integers written as digits (an integral `5.0` too), exact up to 18 digits; (values, not-integer)."""
    stripped = text.str.strip()
    ok = stripped.str.fullmatch(r"[+-]?\d{1,18}(?:\.0*)?").fillna(False).to_numpy(dtype=bool)
    values = np.zeros(len(text), dtype="int64")
    values[ok] = pd.to_numeric(stripped[ok].str.replace(r"\.0*$", "", regex=True)).to_numpy(dtype="int64")
    return pd.Series(pd.arrays.IntegerArray(values, ~ok), index=text.index), ~ok


def _parse_json_objects(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The present values that are JSON objects (as given), and a reason where one is not.

    DuckDB validates the whole column at once; Python's parser only runs on the invalid values, for
    a message that says where the JSON breaks.
    """
    conn = duckdb.connect()
    try:
        conn.register("json_values", pa.table({"text": pa.array(text.to_numpy(na_value=None), pa.string())}))
        json_type = (
            conn.sql("SELECT CASE WHEN json_valid(text) THEN json_type(text) END FROM json_values")
            .to_arrow_table()
            .column(0)
            .to_numpy(zero_copy_only=False)
        )
    finally:
        conn.close()
    present = text.notna().to_numpy()
    reasons = pd.Series(np.full(len(text), None, dtype=object), index=text.index)
    for position in np.flatnonzero(present & (json_type != "OBJECT")):
        reasons.iat[position] = "details: " + _json_problem(text.iat[position], json_type[position])
    return text.where(reasons.isna()), reasons


def _first_good_occurrence(rows: pd.DataFrame, ids: pd.Series, rejected: np.ndarray) -> pd.DataFrame:
    """For each row whose id a good row earlier in the delivery has: that row's file and line."""
    candidate = ~rejected & ids.notna().to_numpy()
    keyed = pd.DataFrame({"id": ids, "file": rows["file"].to_numpy(), "line": rows["line"].to_numpy()})[candidate]
    later = keyed.duplicated("id", keep="first")
    firsts = keyed[~later].set_index("id")
    result = pd.DataFrame(
        {
            "file": pd.Series(None, index=rows.index, dtype="str"),
            "line": pd.Series(pd.NA, index=rows.index, dtype="Int64"),
        }
    )
    repeated = keyed[later]
    result.loc[repeated.index, "file"] = firsts.loc[repeated["id"], "file"].to_numpy()
    result.loc[repeated.index, "line"] = firsts.loc[repeated["id"], "line"].to_numpy()
    return result


def _duplicate_reasons(rows: pd.DataFrame, first: pd.DataFrame, ids: pd.Series) -> np.ndarray:
    same_file = (first["file"] == rows["file"]).fillna(False)
    where = ("line " + first["line"].astype("str")).where(
        same_file, "line " + first["line"].astype("str") + " of " + first["file"]
    )
    return ("duplicate id " + ids.astype("str") + ": first seen on " + where).to_numpy()


def _candidates(values: pd.Series, rejected: np.ndarray) -> np.ndarray:
    """Distinct values of the rows still good, as int64: what to ask the store about."""
    return np.unique(values[~rejected & values.notna().to_numpy()].to_numpy(dtype="int64"))


def _take(values, mask: np.ndarray) -> pd.Series:
    return pd.Series(values).iloc[np.flatnonzero(mask)].reset_index(drop=True)


class _Problems:
    """The first problem of each row: later checks only touch rows no earlier check rejected."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self._rows = rows
        self.rejected = np.zeros(len(rows), dtype=bool)
        self._column = np.full(len(rows), None, dtype=object)
        self._reason = np.full(len(rows), None, dtype=object)

    def add(self, mask: np.ndarray, column: str, reason: str | np.ndarray) -> None:
        new = np.asarray(mask, dtype=bool) & ~self.rejected
        self.rejected |= new
        self._column[new] = column
        self._reason[new] = reason[new] if isinstance(reason, np.ndarray) else reason

    def frame(self) -> pd.DataFrame:
        bad = np.flatnonzero(self.rejected)
        columns = self._column[bad]
        values = pd.Series(None, index=range(len(bad)), dtype="str")
        for column in pd.unique(columns):
            mine = columns == column
            values[mine] = self._rows[column].iloc[bad[mine]].to_numpy()
        return pd.DataFrame(
            {
                "file": pd.Series(self._rows["file"].to_numpy()[bad], dtype="str"),
                "line": pd.Series(self._rows["line"].to_numpy()[bad], dtype="Int64"),
                "column": pd.Series(columns, dtype="str"),
                "value": _clip(values),
                "reason": pd.Series(self._reason[bad], dtype="str"),
            }
        )


def _clip(values: pd.Series) -> pd.Series:
    """Rejected values cut to _MAX_VALUE_CHARS: enough to see the value, not a whole blob."""
    long = values.str.len() > _MAX_VALUE_CHARS
    return values.where(~long, values.str.slice(0, _MAX_VALUE_CHARS - 1) + "…")


def _rejection_frame(rejections: Sequence[tuple], file: str) -> pd.DataFrame:
    """Rejections given as (line, column, value, reason) tuples, as a frame of REJECTION_COLUMNS."""
    lines, columns, values, reasons = zip(*rejections, strict=True) if rejections else ((), (), (), ())
    return pd.DataFrame(
        {
            "file": pd.Series([file] * len(lines), dtype="str"),
            "line": pd.Series(lines, dtype="Int64"),
            "column": pd.Series(columns, dtype="str"),
            "value": _clip(pd.Series(values, dtype="str")),
            "reason": pd.Series(reasons, dtype="str"),
        }
    )


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


# --- Deliveries ------------------------------------------------------------------------------------


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
    ingested_at = _naive_utc(ingested_at)
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
    return FileIngest(path, path.name, kind, sha256, 0, loaded, _rejection_frame([], path.name), status, reason)


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


# --- Sample ----------------------------------------------------------------------------------------


def write_landing_sample(
    directory: str | os.PathLike,
    days: Sequence[dt.date],
    seed: int = DEFAULT_SEED,
    orders_per_day: int = 50,
    activities_per_day: int = 500,
) -> list[Path]:
    """Write a small, valid delivery of simulated store events for `days` into `directory`.

    One file per kind, one per format: orders as CSV, order items as Parquet, activities as JSON
    Lines. Customers and products are those of the default-size catalog of `seed`, so the files
    load with no rejection into a store built by `anomalens run` with that seed. Ids sit in the top
    tenth of each day's id range (LANDING_SAMPLE_ID_OFFSET) and session ids start with `landing-`,
    so they never collide with the simulator's rows for the same days. The traffic carries the
    simulator's injected anomalies, unlabelled as real data would be. Returns the paths written.
    """
    if not days:
        raise ValueError("write_landing_sample needs at least one day")
    catalog = simulate_catalog(SimulationSettings(seed=seed))
    settings = SimulationSettings(seed=seed, orders_per_day=orders_per_day, activities_per_day=activities_per_day)
    simulated = [simulate_day(settings, day, catalog) for day in sorted(days)]
    if max(len(day.user_activities) + len(day.order_items) for day in simulated) >= _LANDING_SAMPLE_MAX_ROWS_PER_DAY:
        raise ValueError(f"a landing sample day must hold fewer than {_LANDING_SAMPLE_MAX_ROWS_PER_DAY:_} rows")
    orders = pd.concat([day.orders for day in simulated], ignore_index=True)
    items = pd.concat([day.order_items for day in simulated], ignore_index=True)
    activities = pd.concat([day.user_activities for day in simulated], ignore_index=True)
    orders["id"] += LANDING_SAMPLE_ID_OFFSET
    items["id"] += LANDING_SAMPLE_ID_OFFSET
    items["order_id"] += LANDING_SAMPLE_ID_OFFSET
    activities["id"] += LANDING_SAMPLE_ID_OFFSET
    activities["details_order_id"] += LANDING_SAMPLE_ID_OFFSET
    activities["session_id"] = "landing-" + activities["session_id"]

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    span = f"sample-{min(days):%Y%m%d}-{max(days):%Y%m%d}"
    orders_path = directory / f"{ORDERS}-{span}.csv"
    items_path = directory / f"{ORDER_ITEMS}-{span}.parquet"
    activities_path = directory / f"{USER_ACTIVITIES}-{span}.jsonl"
    orders.to_csv(orders_path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    items.to_parquet(items_path, index=False)
    _activities_with_details(activities).to_json(
        activities_path, orient="records", lines=True, date_format="iso", date_unit="us"
    )
    logger.info(
        "wrote a landing sample of %d orders, %d items, %d activities", len(orders), len(items), len(activities)
    )
    return [orders_path, items_path, activities_path]


def _activities_with_details(activities: pd.DataFrame) -> pd.DataFrame:
    """Simulated activities in landing form: a nested `details` object instead of `details_*` columns."""
    conn = duckdb.connect()
    try:
        _register(conn, "simulated_activities", activities)
        details = conn.execute(
            f"SELECT CAST({details_json_sql(DETAIL_KEYS_BY_ACTION)} AS VARCHAR) FROM simulated_activities"
        ).fetchall()
    finally:
        conn.close()
    landing = activities[[name for name in landing_columns(USER_ACTIVITIES) if name != "details"]].copy()
    landing.insert(landing.columns.get_loc("action_type") + 1, "details", [json.loads(text) for (text,) in details])
    return landing
