"""Landing files read as text rows: kinds, formats (JSON Lines, CSV, Parquet), quarantine."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from anomalens_dagster.core.landing.mapping import KindMapping, map_values, rename_columns
from anomalens_dagster.core.landing.rules import (
    COLUMNS_BY_KIND,
    FILE_KINDS,
    LANDING_EXTENSIONS,
    QUARANTINE_DIR,
    UnreadableFileError,
    landing_columns,
    rejection_frame,
)

logger = logging.getLogger(__name__)


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
    kinds = [kind for kind in FILE_KINDS if lowered.startswith(kind)]
    if not kinds:
        raise UnreadableFileError(
            name, f"unknown kind: a landing file's name starts with one of {', '.join(FILE_KINDS)}"
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


def read_landing_file(path: str | os.PathLike, mapping: KindMapping | None = None) -> RawFile:
    """Read a landing file into text rows with their line numbers, without judging the values.

    `mapping` renames the store's columns to ours and maps its values (settings `landing.<kind>`).
    Raises UnreadableFileError when the file cannot be read as a whole (see the package docstring).
    """
    path = Path(path)
    kind = landing_file_kind(path)
    mapping = mapping or KindMapping()
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
            columns, unreadable = _read_jsonl(path.name, text, (*landing_columns(kind), *mapping.columns))
    columns = rename_columns(columns, mapping)
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
    rows = map_values(rows, mapping)
    return RawFile(file=path.name, kind=kind, rows=rows, unreadable_rows=rejection_frame(unreadable, path.name))


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
        # Keys match case-insensitively, as CSV and Parquet column names do.
        present = sorted(key for key in keys if key.strip().lower() in wanted)
        # One JSON path list: each line is parsed once for all its keys (three times faster than a call per key).
        objects = conn.execute(
            "SELECT line, json_extract_string(text, $paths) AS vals FROM parsed WHERE json_type = 'OBJECT' ORDER BY line",
            {"paths": [f'$."{name}"' for name in present]},
        ).fetch_arrow_table()
        others = conn.execute(
            "SELECT line, text, json_type FROM parsed WHERE json_type IS DISTINCT FROM 'OBJECT' ORDER BY line"
        ).fetchall()
    finally:
        conn.close()
    unreadable = [(number, None, line, json_problem(line, json_type)) for number, line, json_type in others]
    if not objects.num_rows:
        first = unreadable[0]
        raise UnreadableFileError(file, f"no line is a JSON object, not JSON Lines (line {first[0]}: {first[3]})")
    extra = sorted(key for key in keys if key.strip().lower() not in wanted)
    if extra:
        logger.info("%s: ignoring unknown key(s) %s", file, ", ".join(extra))
    columns = {"line": objects.column("line").to_pylist()}
    vals = objects.column("vals")
    columns.update(
        {name.strip().lower(): pc.list_element(vals, position).to_pylist() for position, name in enumerate(present)}
    )
    return columns, unreadable


def json_problem(text: str, json_type: str | None) -> str:
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
