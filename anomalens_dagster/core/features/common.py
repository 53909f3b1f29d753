"""Helpers every feature module shares: SQL snippets, the UTC range, and the sorted-window arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from anomalens_dagster.constants import FEATURES_SCHEMA
from anomalens_dagster.core.warehouse import table_exists

# DuckDB TIMESTAMP has microsecond precision; windows are computed on that grid, where the
# half-open (t - w, t] is exactly [t - (w - 1 us), t].
US = 1_000_000
SECONDS_PER_DAY = 86_400


def finite_or_zero(expression: str) -> str:
    """SQL for ``expression`` with NULL, NaN and +-inf replaced by 0."""
    return f"CASE WHEN isfinite({expression}) THEN {expression} ELSE 0.0 END"


def naive_utc_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The range as naive UTC datetimes (DuckDB cannot bind aware ones against TIMESTAMP)."""
    start, end = (value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value for value in (start, end))
    if start > end:
        raise ValueError(f"Feature range starts after it ends: start={start}, end={end}")
    return start, end


def require_tables(conn: duckdb.DuckDBPyConnection, tables: tuple[str, ...], needed_by: str) -> None:
    """Fail naming the missing ``features`` tables (and what builds them) before a query would."""
    missing = [table for table in tables if not table_exists(conn, table, FEATURES_SCHEMA)]
    if missing:
        raise LookupError(
            f"{needed_by} read {', '.join(f'{FEATURES_SCHEMA}.{t}' for t in missing)}, which do not exist: "
            "materialise the entity_day_summaries asset for the days before the range first"
        )


def to_numpy(table: pa.Table, column: str) -> np.ndarray:
    """A column without nulls as a numpy array."""
    return table[column].to_numpy()


def codes_with_nulls_apart(column: pa.ChunkedArray) -> np.ndarray:
    """Group codes with each NULL (an action without IP) made a group of its own.

    The rows come ordered by time, so the fresh codes keep every group's rows in time order.
    """
    codes = column.fill_null(0).to_numpy().copy()
    missing = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
    codes[missing] = codes.max(initial=0) + 1 + np.arange(len(missing))
    return codes


def group_starts(sorted_codes: np.ndarray) -> np.ndarray:
    """Mask of the rows that open a group in an array sorted by group code."""
    starts = np.ones(len(sorted_codes), dtype=bool)
    np.not_equal(sorted_codes[1:], sorted_codes[:-1], out=starts[1:])
    return starts


def window_key(t_us: np.ndarray, starts: np.ndarray, reach_us: int) -> np.ndarray:
    """One sorted int64 key per row that answers every per-group window up to ``reach_us`` wide.

    Rows come sorted by (group, time). The key advances by the time gap between neighbours, with
    gaps longer than ``reach_us`` (and every group change) cut down to ``reach_us + 1``. Two rows of
    one group closer than ``reach_us`` differ in key exactly as in time, and any other pair differs
    by more than ``reach_us``; so the rows in a window [t - a, t + b] (a, b <= reach_us) of a row's
    group are those with a key in [key - a, key + b], found with one binary search per bound over
    all groups at once. The cut keeps the key small: it never exceeds n * (reach_us + 1).
    """
    gaps = np.empty(len(t_us), dtype=np.int64)
    gaps[:1] = 0
    np.subtract(t_us[1:], t_us[:-1], out=gaps[1:])
    np.minimum(gaps, reach_us + 1, out=gaps)
    gaps[starts] = reach_us + 1
    return np.cumsum(gaps)


def count_within(key: np.ndarray, sample: np.ndarray, before_us: int, after_us: int) -> np.ndarray:
    """For each key, how many ``sample`` keys (sorted) lie in [key - before_us, key + after_us]."""
    return np.searchsorted(sample, key + after_us, side="right") - np.searchsorted(sample, key - before_us, side="left")


def unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Values computed on ``array[order]`` put back in the original row order."""
    restored = np.empty_like(values)
    restored[order] = values
    return restored


def log_positive(expression: str) -> str:
    """SQL for ln(``expression``) where it is positive, else NULL (aggregates skip it)."""
    return f"ln(CASE WHEN {expression} > 0 THEN {expression} END)"
