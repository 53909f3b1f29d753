"""Landing files of analysts' verdicts (`feedback*.csv|jsonl|parquet`): each row validated into a verdict
for ops.analyst_feedback, or rejected with its reason like any other landing row.

Columns: `incident_id`, or `entity_type` (activity | order) and `entity_id`; `verdict` (confirm |
dismiss); optional `note`, `by` (the analyst), and `allow` (ip | customer) with `days`. A row is
rejected for its first problem: a value that is not a number, then whatever `core.feedback` refuses
(an unknown verdict, incident or entity, an allow rule without days or with confirm). A verdict
may judge a row delivered in the same delivery (it is not flagged yet).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import duckdb
import pandas as pd

from anomalens_dagster.constants import ENTITY_ACTIVITY, ENTITY_ORDER, ORDERS, USER_ACTIVITIES
from anomalens_dagster.core.feedback import (
    FeedbackError,
    PreparedVerdict,
    RecordedVerdict,
    Verdict,
    feedback_rows,
    prepare_verdict,
    with_feedback_ids,
)
from anomalens_dagster.core.landing.rules import naive_utc, rejection_frame
from anomalens_dagster.core.landing.validation import INTEGER_TEXT

# The store kinds whose delivered ids a verdict may name, by entity type.
_DELIVERED_ENTITIES = {ENTITY_ACTIVITY: USER_ACTIVITIES, ENTITY_ORDER: ORDERS}


def validate_feedback_rows(
    conn: duckdb.DuckDBPyConnection,
    rows: pd.DataFrame,
    file: str,
    now: dt.datetime,
    delivered: Mapping[str, Iterable[int]] | None = None,
) -> tuple[list[RecordedVerdict], pd.DataFrame]:
    """The verdicts of a feedback file's text rows (`line` and the kind's columns), in file order, and
    one rejection (REJECTION_COLUMNS) per bad row. `delivered` holds the good ids of the store kinds
    of the same delivery. Writes nothing; the verdicts' `recorded_at` is `now`."""
    now = naive_utc(now)
    delivered_entities = {
        entity_type: list((delivered or {}).get(kind, ())) for entity_type, kind in _DELIVERED_ENTITIES.items()
    }
    prepared: list[PreparedVerdict] = []
    rejections: list[tuple] = []
    for row in rows.to_dict(orient="records"):
        row = {column: None if _missing(value) else value for column, value in row.items()}
        line = row["line"]
        try:
            verdict = Verdict(
                verdict=row["verdict"] or "",
                incident_id=row["incident_id"],
                entity_type=row["entity_type"],
                entity_id=_integer(row["entity_id"], "entity_id"),
                note=row["note"],
                analyst=row["by"],
                allow_kind=row["allow"],
                allow_days=_number(row["days"], "days"),
            )
            prepared.append(prepare_verdict(conn, verdict, now, delivered_entities))
        except FeedbackError as error:
            column = error.column if error.column in row else "verdict"
            rejections.append((line, column, _text(row[column]), str(error)))
    return with_feedback_ids(prepared, now), rejection_frame(rejections, file)


def landed_feedback_rows(verdicts: list[RecordedVerdict], file: str, recorded_at: dt.datetime) -> pd.DataFrame:
    """The ops.analyst_feedback rows of a landed file's verdicts; their source names the file."""
    return feedback_rows(verdicts, f"landing:{file}", naive_utc(recorded_at))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA


def _integer(text, column: str) -> int | None:
    if text is None or not str(text).strip():
        return None
    stripped = str(text).strip()
    if not pd.Series([stripped]).str.fullmatch(INTEGER_TEXT).iloc[0]:
        raise FeedbackError(f"{column} is not an integer", column=column)
    return int(float(stripped))


def _number(text, column: str) -> float | None:
    if text is None or not str(text).strip():
        return None
    try:
        return float(str(text).strip())
    except ValueError:
        raise FeedbackError(f"{column} is not a number", column=column) from None


def _text(value) -> str | None:
    return None if value is None else str(value)
