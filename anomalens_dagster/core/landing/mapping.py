"""A store's own words for our columns and values: the settings file's `landing` section, and timestamps.

The section, per file kind, maps their column names to ours (`columns`) and, per column (ours), their
values to ours (`values`); `timezone` is the zone of timestamps written without an offset and
`pending_max_age_days` how long a row may wait for a reference before it is rejected::

    landing:
      timezone: Europe/Paris
      orders:
        columns: {order_number: id, buyer_id: customer_id, placed_at: created_at, state: status}
        values: {status: {wc-completed: delivered}}
      user_activities:
        values: {action_type: {page_view: view_page}}

Column names and values are matched trimmed and case-insensitively.

Timestamps: ISO 8601 with an offset (``2026-03-01T10:00:00+01:00``, ``...Z``) are converted to UTC;
without one they are wall-clock time in `landing.timezone` (default UTC). A plain number is Unix
epoch time, told apart by magnitude: below 100 000 000 000 it is seconds (up to the year 5138),
from there on milliseconds (1973-03-03 onwards) — no store has events in both ranges' overlap.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from anomalens_dagster.core.landing.rules import (
    DEFAULT_PENDING_MAX_AGE_DAYS,
    LANDING_KINDS,
    landing_columns,
)

EPOCH_MILLISECONDS_FROM = 100_000_000_000  # a plain number this large or larger is epoch milliseconds
KIND_KEYS = ("columns", "values")
SCALAR_KEYS = ("timezone", "pending_max_age_days")


class LandingSettingsError(ValueError):
    """A `landing` settings section that names an unknown kind, key or column, or a bad value."""


@dataclass(frozen=True)
class KindMapping:
    """One file kind's mapping: `columns` their name -> ours, `values` our column -> their value -> ours
    (keys trimmed and lower-cased)."""

    columns: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class LandingSettings:
    """How to read a store's files: per kind mappings, the zone of naive timestamps, the pending age limit."""

    mappings: Mapping[str, KindMapping] = field(default_factory=dict)
    timezone: str = "UTC"
    pending_max_age_days: float = DEFAULT_PENDING_MAX_AGE_DAYS

    def mapping(self, kind: str) -> KindMapping:
        return self.mappings.get(kind, KindMapping())

    @classmethod
    def from_section(cls, section: Mapping | None) -> LandingSettings:
        """The `landing` section of a settings file; raises LandingSettingsError naming what is wrong."""
        section = section or {}
        if not isinstance(section, Mapping):
            raise LandingSettingsError("landing must be a mapping of file kinds (and timezone, pending_max_age_days)")
        unknown = [key for key in section if key not in (*LANDING_KINDS, *SCALAR_KEYS)]
        if unknown:
            raise LandingSettingsError(
                f"unknown key(s) {', '.join(map(str, unknown))} in landing "
                f"(known: {', '.join((*LANDING_KINDS, *SCALAR_KEYS))})"
            )
        timezone = str(section.get("timezone") or "UTC")
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
            raise LandingSettingsError(f"landing.timezone: unknown time zone {timezone!r}") from error
        max_age = section.get("pending_max_age_days", DEFAULT_PENDING_MAX_AGE_DAYS)
        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0:
            raise LandingSettingsError(f"landing.pending_max_age_days must be a positive number, got {max_age!r}")
        mappings = {kind: _kind_mapping(kind, section[kind]) for kind in LANDING_KINDS if kind in section}
        return cls(mappings=mappings, timezone=timezone, pending_max_age_days=float(max_age))


def _kind_mapping(kind: str, entry: object) -> KindMapping:
    where = f"landing.{kind}"
    entry = entry or {}
    if not isinstance(entry, Mapping):
        raise LandingSettingsError(f"{where} must be a mapping with {' and/or '.join(KIND_KEYS)}")
    unknown = [key for key in entry if key not in KIND_KEYS]
    if unknown:
        raise LandingSettingsError(f"unknown key(s) {', '.join(map(str, unknown))} in {where} (known: columns, values)")
    ours = landing_columns(kind)
    columns = entry.get("columns") or {}
    values = entry.get("values") or {}
    if not isinstance(columns, Mapping) or not isinstance(values, Mapping):
        raise LandingSettingsError(f"{where}.columns and {where}.values must be mappings")
    for theirs, target in columns.items():
        if target not in ours:
            raise LandingSettingsError(
                f"{where}.columns maps {theirs!r} to unknown column {target!r} (columns of {kind}: {', '.join(ours)})"
            )
    for column, value_map in values.items():
        if column not in ours:
            raise LandingSettingsError(
                f"{where}.values names unknown column {column!r} (columns of {kind}: {', '.join(ours)})"
            )
        if not isinstance(value_map, Mapping):
            raise LandingSettingsError(f"{where}.values.{column} must map their values to ours")
    return KindMapping(
        columns={_key(theirs): str(target) for theirs, target in columns.items()},
        values={
            column: {_key(theirs): str(target) for theirs, target in value_map.items()}
            for column, value_map in values.items()
        },
    )


def _key(value: object) -> str:
    return str(value).strip().lower()


def rename_columns(columns: dict[str, list], mapping: KindMapping) -> dict[str, list]:
    """Columns read from a file (names lower-cased) under our names; a mapped name replaces ours."""
    renamed = {name: values for name, values in columns.items() if name not in mapping.columns.values()}
    for name, values in columns.items():
        if name in mapping.columns:
            renamed[mapping.columns[name]] = values
    return renamed


def map_values(rows: pd.DataFrame, mapping: KindMapping) -> pd.DataFrame:
    """Text rows with each mapped column's values replaced by ours (matched trimmed, case-insensitively)."""
    if not mapping.values:
        return rows
    rows = rows.copy()
    for column, value_map in mapping.values.items():
        keys = rows[column].str.strip().str.lower()
        mapped = keys.map(value_map)
        rows[column] = mapped.where(mapped.notna(), rows[column])
    return rows


# An offset after a time of day (a date's own "-01" is not one).
_OFFSET = r":\d{2}(?:\.\d+)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$"
_EPOCH = r"[+-]?\d+(?:\.\d*)?"


def parse_timestamps(text: pd.Series, timezone: str = "UTC") -> pd.Series:
    """Text timestamps as naive UTC (`datetime64[us]`), NaT where not a timestamp (see the module docstring)."""
    stripped = text.str.strip()
    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us]")
    epoch = stripped.str.fullmatch(_EPOCH).fillna(False).to_numpy(dtype=bool)
    if epoch.any():
        numbers = pd.to_numeric(stripped[epoch], errors="coerce")
        milliseconds = numbers.abs() >= EPOCH_MILLISECONDS_FROM
        seconds = numbers.where(~milliseconds, numbers / 1000)
        # Seconds beyond pandas' range (year 2262) are not timestamps: NaT, rejected by the caller.
        in_range = seconds.abs() < 9.2e9
        parsed = pd.to_datetime(seconds.where(in_range), unit="s", errors="coerce")
        result[epoch] = parsed.astype("datetime64[us]").to_numpy()
    aware = ~epoch & stripped.str.contains(_OFFSET, regex=True).fillna(False).to_numpy(dtype=bool)
    if aware.any():
        parsed = pd.to_datetime(stripped[aware], utc=True, format="ISO8601", errors="coerce")
        result[aware] = parsed.dt.tz_convert(None).astype("datetime64[us]").to_numpy()
    naive = ~epoch & ~aware & stripped.notna().to_numpy()
    if naive.any():
        parsed = pd.to_datetime(stripped[naive], format="ISO8601", errors="coerce")
        if timezone != "UTC":
            # A wall-clock time the zone skips or repeats (DST changes) is not one instant: NaT.
            parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert(None)
        result[naive] = parsed.astype("datetime64[us]").to_numpy()
    return result


def unknown_value_counts(values: pd.Series, vocabulary: tuple[str, ...]) -> dict[str, int]:
    """How often each value outside `vocabulary` occurs (for metadata: loaded, but worth a look)."""
    unknown = values[values.notna() & ~values.isin(vocabulary)]
    counts = unknown.value_counts()
    return {str(value): int(count) for value, count in counts.items()} if len(counts) else {}
