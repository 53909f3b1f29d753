"""Validation of landing rows: text in, typed rows to load and one rejection per bad row out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from anomalens_dagster.core.landing.ids import IdMap
from anomalens_dagster.core.landing.mapping import parse_timestamps, unknown_value_counts
from anomalens_dagster.core.landing.readers import json_problem
from anomalens_dagster.core.landing.rules import (
    COLUMNS_BY_KIND,
    EARLIEST_TIMESTAMP,
    FACT_KINDS,
    FUTURE_TOLERANCE,
    INTEGER,
    JSON_OBJECT,
    NUMBER,
    TIMESTAMP,
    Column,
    clip_values,
    naive_utc,
)

INTEGER_TEXT = r"[+-]?\d{1,18}(?:\.0*)?"  # an integer id as a file writes it (an integral `5.0` too)

KeyLookup = Callable[[str, np.ndarray], np.ndarray]
"""`(table, ids) -> the ids among them that the store holds` (a query, or a set in tests)."""


@dataclass(frozen=True, eq=False)
class ValidatedRows:
    """Text rows of one kind split three ways, every input row in exactly one frame.

    `good`: typed rows with the store table's columns (`source` = the file, for facts) plus `file`
    and `line`; whether each is new, changed or already stored is for the caller to ask the store.
    `rejections`: REJECTION_COLUMNS, one per bad row (its first problem). `pending`: the text rows
    (`file`, `line`, the kind's columns) whose only fault is a reference to an id neither the store
    nor the delivery holds, with that `column` and `reason`. `unknown_values`: per column with a
    vocabulary, how often each value outside it occurs among the good rows (loaded as given).
    """

    good: pd.DataFrame
    rejections: pd.DataFrame
    pending: pd.DataFrame
    unknown_values: dict[str, dict[str, int]]


def validate_rows(
    kind: str,
    rows: pd.DataFrame,
    *,
    now: dt.datetime,
    in_store: KeyLookup,
    delivered: Mapping[str, np.ndarray] | None = None,
    timezone: str = "UTC",
    id_map: IdMap | None = None,
) -> ValidatedRows:
    """Split text rows of `kind` into typed good rows, rejections and rows pending a reference.

    `rows` holds `file`, `line` and the kind's columns as text (RawFile.rows with the file name),
    possibly from several files of one delivery, in delivery order: of the rows that pass every
    other check, an id's first occurrence is good and the later ones are rejected. `in_store` says
    which referenced ids the store holds; `delivered` adds the ids of good rows of the kinds
    validated before in the same delivery (an order may name a customer delivered with it). `now`
    bounds fact timestamps (naive UTC or aware); naive timestamps are wall-clock time in `timezone`.
    `id_map` turns text ids and references into integer ids (a new row's id is assigned one); without
    it, an id that is not an integer is rejected.
    """
    rows = rows.reset_index(drop=True)
    delivered = delivered or {}
    latest = naive_utc(now) + FUTURE_TOLERANCE
    problems = _Problems(rows)
    typed: dict[str, object] = {}
    unresolved: dict[str, np.ndarray] = {}  # text references no id was given to yet
    for column in COLUMNS_BY_KIND[kind]:
        text = rows[column.name]
        text = text.where(text.str.strip() != "")  # blank is missing
        present = text.notna().to_numpy()
        if column.required:
            problems.add(~present, column.name, f"missing {column.name}")
        if id_map is not None and column.type == INTEGER and (column.name == "id" or column.references):
            textual, resolved = _text_ids_resolved(kind, column, text, present, id_map)
            unresolved[column.name] = textual & resolved.isna().to_numpy()
            values = _typed_column(column, text, present & ~textual, latest, problems, timezone)
            typed[column.name] = values.where(~textual, resolved)
            continue
        typed[column.name] = _typed_column(column, text, present, latest, problems, timezone)

    ids = typed["id"]
    for column in COLUMNS_BY_KIND[kind]:
        if column.references is None:
            continue
        reasons = f"unknown {column.name} " + rows[column.name].str.strip() + ": not in the store nor this delivery"
        if column.name in unresolved:
            problems.add(unresolved[column.name], column.name, reasons.to_numpy(), pending=True)
        values = typed[column.name]
        known = np.concatenate(
            [
                in_store(column.references, _candidates(values, problems.rejected)),
                np.asarray(delivered.get(column.references, ()), dtype="int64"),
            ]
        )
        unknown = values.notna().to_numpy() & ~np.isin(values.to_numpy(dtype="int64", na_value=0), known)
        problems.add(unknown, column.name, reasons.to_numpy(), pending=True)

    # Last, so that the first occurrence a duplicate names is always a good row.
    first = _first_good_occurrence(rows, ids, problems.rejected)
    problems.add(first["line"].notna().to_numpy(), "id", _duplicate_reasons(rows, first, ids))

    good = ~problems.rejected
    loaded = pd.DataFrame({name: _take(values, good) for name, values in typed.items()})
    if kind in FACT_KINDS:
        loaded["source"] = pd.Series(rows["file"].to_numpy()[good], dtype="str")
    for column in COLUMNS_BY_KIND[kind]:
        if column.required and column.type == INTEGER:
            loaded[column.name] = loaded[column.name].astype("int64")
    loaded["file"] = pd.Series(rows["file"].to_numpy()[good], dtype="str")
    loaded["line"] = pd.Series(rows["line"].to_numpy()[good], dtype="int64")
    return ValidatedRows(loaded, problems.frame(), problems.pending_frame(), unknown_values_of(kind, loaded))


def unknown_values_of(kind: str, good: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per column with a vocabulary, how often each value outside it occurs in `good` (loaded as given)."""
    unknown: dict[str, dict[str, int]] = {}
    for column in COLUMNS_BY_KIND[kind]:
        if column.vocabulary:
            counts = unknown_value_counts(good[column.name], column.vocabulary)
            if counts:
                unknown[column.name] = counts
    return unknown


def _text_ids_resolved(
    kind: str, column: Column, text: pd.Series, present: np.ndarray, id_map: IdMap
) -> tuple[np.ndarray, pd.Series]:
    """Which values are text ids (not integers), and their integer ids (Int64, NA where a text
    reference has none yet): a row's own id gets one, a reference only finds one already given."""
    stripped = text.str.strip()
    textual = present & ~stripped.str.fullmatch(INTEGER_TEXT).fillna(False).to_numpy(dtype=bool)
    resolved = pd.Series(pd.NA, index=text.index, dtype="Int64")
    if textual.any():
        target = kind if column.name == "id" else column.references
        # `.array` keeps Int64: `.to_numpy()` of a series holding NA is float64, which rounds ids near 4e18.
        resolved[textual] = id_map.resolve(target, stripped[textual], assign=column.name == "id").array
    return textual, resolved


def _typed_column(
    column: Column, text: pd.Series, present: np.ndarray, latest: dt.datetime, problems: _Problems, timezone: str
):
    """The column parsed to its type (missing where absent or bad), recording its problems."""
    name = column.name
    if column.type == INTEGER:
        values, bad = _parse_integers(text)
        problems.add(present & bad, name, f"{name} is not an integer")
    elif column.type == NUMBER:
        values = pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")
        bad = ~np.isfinite(values.to_numpy())
        problems.add(present & bad, name, f"{name} is not a number")
    elif column.type == TIMESTAMP:
        values = parse_timestamps(text, timezone)
        problems.add(
            present & values.isna().to_numpy(),
            name,
            f"{name} is not a timestamp (ISO 8601, or epoch seconds or milliseconds)",
        )
        if column.bounded:
            problems.add(
                (values > latest).to_numpy(), name, f"{name} is in the future (after {latest.isoformat()} UTC)"
            )
            problems.add(
                (values < EARLIEST_TIMESTAMP).to_numpy(),
                name,
                f"{name} is before {EARLIEST_TIMESTAMP.date()}, the first day AnomaLens scores",
            )
    elif column.type == JSON_OBJECT:
        values, reasons = _parse_json_objects(text)
        problems.add(reasons.notna().to_numpy(), name, reasons.to_numpy())
    else:
        values = text.str.strip()
        if column.lower_case:
            values = values.str.lower()
        if column.vocabulary:
            # Known values in their canonical spelling, whatever the case; others stay as given.
            canonical = values.str.lower().map({value.lower(): value for value in column.vocabulary})
            values = canonical.where(canonical.notna(), values)
    if column.non_negative:
        problems.add((values < 0).fillna(False).to_numpy(dtype=bool), name, f"{name} is negative")
    return values


def _parse_integers(text: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Integers written as digits (an integral `5.0` too), exact up to 18 digits; (values, not-integer)."""
    stripped = text.str.strip()
    ok = stripped.str.fullmatch(INTEGER_TEXT).fillna(False).to_numpy(dtype=bool)
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
            conn.execute("SELECT CASE WHEN json_valid(text) THEN json_type(text) END FROM json_values")
            .fetch_arrow_table()
            .column(0)
            .to_numpy(zero_copy_only=False)
        )
    finally:
        conn.close()
    present = text.notna().to_numpy()
    reasons = pd.Series(np.full(len(text), None, dtype=object), index=text.index)
    for position in np.flatnonzero(present & (json_type != "OBJECT")):
        reasons.iat[position] = "details: " + json_problem(text.iat[position], json_type[position])
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
        self._pending = np.zeros(len(rows), dtype=bool)

    def add(self, mask: np.ndarray, column: str, reason: str | np.ndarray, pending: bool = False) -> None:
        """Record `reason` for the rows of `mask` without a problem yet; `pending` parks them instead
        of rejecting them (their only fault is a reference that may arrive later)."""
        new = np.asarray(mask, dtype=bool) & ~self.rejected
        self.rejected |= new
        self._pending |= new & pending
        self._column[new] = column
        self._reason[new] = reason[new] if isinstance(reason, np.ndarray) else reason

    def pending_frame(self) -> pd.DataFrame:
        """The pending rows as given (text), with the column and reason that park them."""
        parked = np.flatnonzero(self._pending)
        frame = self._rows.iloc[parked].reset_index(drop=True)
        return frame.assign(
            column=pd.Series(self._column[parked], dtype="str"), reason=pd.Series(self._reason[parked], dtype="str")
        )

    def frame(self) -> pd.DataFrame:
        bad = np.flatnonzero(self.rejected & ~self._pending)
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
                "value": clip_values(values),
                "reason": pd.Series(self._reason[bad], dtype="str"),
            }
        )
