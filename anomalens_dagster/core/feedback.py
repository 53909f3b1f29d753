"""Analyst verdicts on incidents and entities, kept append-only in `ops.analyst_feedback` (no dagster import).

A verdict is `confirm` ("this is fraud") or `dismiss` ("this is our load balancer") on an incident
(`detections.incidents`) or on a single entity (`activity:ID`, `order:ID`), with a note, the
analyst's name and where it came from (`cli`, `job`, `landing:<file name>`). Nothing is ever
updated or deleted: a later verdict on the same target wins, the earlier ones stay as history.

A dismissal may carry an allow rule: the IPs or the customers of the incident (or entity) are
allowed for N days, so their future incidents are recorded but suppressed from alerts. A verdict
with allowed values is stored as one row per value, all with the verdict's `feedback_id`.

Views (contract B; recreated on every write, so they follow the tables they read):

- `ops.entity_verdicts`: each judged entity's effective verdict. An entity's own latest verdict
  overrides its incident's latest verdict, whatever their order: judging one row of an incident is
  more specific than judging the incident ("the incident is fraud, but this order was the customer's
  real one"). `outcome` says `flagged-confirmed`, `flagged-dismissed`, `missed` (confirmed, yet no
  detector flagged it: an anomaly record never listed it) or `unflagged-dismissed`.
- `ops.confirmed_anomalies(entity_type, entity_id)`: the entities whose effective verdict is confirm.
- `ops.active_allow_rules(allow_kind, allow_value, allowed_from, allow_until)`: rules not expired.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import duckdb
import pandas as pd

from anomalens_dagster.constants import (
    ACTIVE_ALLOW_RULES,
    ALLOW_CUSTOMER,
    ALLOW_IP,
    ALLOW_KINDS,
    ANALYST_FEEDBACK,
    ANOMALIES,
    CONFIRMED_ANOMALIES,
    DETECTIONS_SCHEMA,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    ENTITY_TYPES,
    ENTITY_VERDICTS,
    OPS_SCHEMA,
    ORDERS,
    STORE_SCHEMA,
    USER_ACTIVITIES,
    VERDICT_CONFIRM,
    VERDICT_DISMISS,
    VERDICTS,
)
from anomalens_dagster.core.warehouse import table_columns, table_exists, transaction

logger = logging.getLogger(__name__)

# Contract A's table, written by the incidents asset (constants.INCIDENTS there).
INCIDENTS_TABLE_NAME = "incidents"

FEEDBACK_TABLE = f"{OPS_SCHEMA}.{ANALYST_FEEDBACK}"
FEEDBACK_COLUMNS: dict[str, str] = {
    "feedback_id": "VARCHAR NOT NULL",
    "recorded_at": "TIMESTAMP NOT NULL",
    "incident_id": "VARCHAR",
    "entity_type": "VARCHAR",
    "entity_id": "BIGINT",
    "verdict": "VARCHAR NOT NULL",
    "note": "VARCHAR",
    "analyst": "VARCHAR",
    "source": "VARCHAR",
    "allow_kind": "VARCHAR",
    "allow_value": "VARCHAR",
    "allow_until": "TIMESTAMP",
}
FEEDBACK_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OPS_SCHEMA};
CREATE TABLE IF NOT EXISTS {FEEDBACK_TABLE} ({", ".join(f"{name} {kind}" for name, kind in FEEDBACK_COLUMNS.items())});
"""

OUTCOME_FLAGGED_CONFIRMED = "flagged-confirmed"
OUTCOME_FLAGGED_DISMISSED = "flagged-dismissed"
OUTCOME_MISSED = "missed"
OUTCOME_UNFLAGGED_DISMISSED = "unflagged-dismissed"
OUTCOMES = (OUTCOME_FLAGGED_CONFIRMED, OUTCOME_FLAGGED_DISMISSED, OUTCOME_MISSED, OUTCOME_UNFLAGGED_DISMISSED)

_ENTITY_TABLES = {ENTITY_ACTIVITY: f"{STORE_SCHEMA}.{USER_ACTIVITIES}", ENTITY_ORDER: f"{STORE_SCHEMA}.{ORDERS}"}


class FeedbackError(ValueError):
    """A verdict that cannot be recorded: a bad value, or a target the store does not hold.

    `column` names the field at fault, as a landing file's column calls it (for its rejection row).
    """

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class Verdict:
    """One analyst verdict before it is recorded: on an incident, or on an entity (type and id)."""

    verdict: str
    incident_id: str | None = None
    entity_type: str | None = None
    entity_id: int | None = None
    note: str | None = None
    analyst: str | None = None
    allow_kind: str | None = None
    allow_days: float | None = None

    @property
    def target(self) -> str:
        return f"incident {self.incident_id}" if self.incident_id else f"{self.entity_type}:{self.entity_id}"


@dataclass(frozen=True)
class PreparedVerdict:
    """A verdict checked against the store: whether its target was flagged, the values it allows until when."""

    verdict: Verdict
    flagged: bool
    allowed_values: tuple[str, ...]
    allow_until: dt.datetime | None

    @property
    def is_miss(self) -> bool:
        return self.verdict.verdict == VERDICT_CONFIRM and not self.flagged


@dataclass(frozen=True)
class RecordedVerdict:
    """A verdict as stored: its id, what it was given on, whether it records a miss, the values it allows."""

    feedback_id: str
    verdict: Verdict
    flagged: bool
    allowed_values: tuple[str, ...]
    allow_until: dt.datetime | None

    @property
    def is_miss(self) -> bool:
        return self.verdict.verdict == VERDICT_CONFIRM and not self.flagged


def parse_entity(text: str) -> tuple[str, int]:
    """`activity:123` / `order:45` as (entity type, id); FeedbackError naming the text otherwise."""
    entity_type, _, entity_id = str(text).strip().partition(":")
    entity_type = entity_type.strip().lower()
    if entity_type not in ENTITY_TYPES or not entity_id.strip().lstrip("-").isdigit():
        raise FeedbackError(f"entity {text!r}: expected activity:ID or order:ID (ID an integer)", column="entity")
    return entity_type, int(entity_id)


def checked_verdict(verdict: Verdict) -> Verdict:
    """The verdict normalised (lower-case verdict and kinds, blank text as None), or a FeedbackError
    naming its first problem. Does not look at the store (see `check_target`)."""
    name = (verdict.verdict or "").strip().lower()
    if name not in VERDICTS:
        raise FeedbackError(f"verdict {verdict.verdict!r}: expected one of {', '.join(VERDICTS)}", column="verdict")
    incident_id = _blank_to_none(verdict.incident_id)
    entity_type = _blank_to_none(verdict.entity_type)
    entity_type = entity_type.lower() if entity_type else None
    if incident_id is not None and (entity_type is not None or verdict.entity_id is not None):
        raise FeedbackError(f"incident {incident_id}: give an incident id or an entity, not both", column="incident_id")
    if incident_id is None:
        if entity_type is None or verdict.entity_id is None:
            raise FeedbackError(
                "a verdict needs an incident id, or an entity type and id (activity:ID or order:ID)",
                column="incident_id",
            )
        if entity_type not in ENTITY_TYPES:
            raise FeedbackError(
                f"entity type {entity_type!r}: expected one of {', '.join(ENTITY_TYPES)}", column="entity_type"
            )
    allow_kind = _blank_to_none(verdict.allow_kind)
    allow_kind = allow_kind.lower() if allow_kind else None
    if allow_kind is not None:
        if allow_kind not in ALLOW_KINDS:
            raise FeedbackError(f"allow {allow_kind!r}: expected one of {', '.join(ALLOW_KINDS)}", column="allow")
        if verdict.allow_days is None or not verdict.allow_days > 0:
            raise FeedbackError(
                f"allow {allow_kind}: needs a positive number of days, got {verdict.allow_days}", column="days"
            )
        if name != VERDICT_DISMISS:
            raise FeedbackError(
                f"{verdict.target}: an allow rule goes with dismiss (it suppresses future alerts), not with {name}",
                column="allow",
            )
    elif verdict.allow_days is not None:
        raise FeedbackError(
            f"{verdict.target}: allow days given without an allow kind (ip or customer)", column="allow"
        )
    return replace(
        verdict,
        verdict=name,
        incident_id=incident_id,
        entity_type=entity_type,
        entity_id=None if verdict.entity_id is None else int(verdict.entity_id),
        note=_blank_to_none(verdict.note),
        analyst=_blank_to_none(verdict.analyst),
        allow_kind=allow_kind,
    )


@dataclass(frozen=True)
class Target:
    """What a verdict is given on: whether a detector flagged it, its IPs and its customers."""

    flagged: bool
    ip_addresses: tuple[str, ...]
    customer_ids: tuple[str, ...]


def check_target(conn: duckdb.DuckDBPyConnection, verdict: Verdict) -> Target:
    """Whether the verdict's incident or entity exists (FeedbackError naming it if not), whether it
    was flagged, and its IPs and customers (for an allow rule)."""
    if verdict.incident_id is not None:
        if not table_exists(conn, INCIDENTS_TABLE_NAME, DETECTIONS_SCHEMA):
            raise FeedbackError(
                f"unknown incident {verdict.incident_id}: no incidents are stored yet "
                f"({DETECTIONS_SCHEMA}.{INCIDENTS_TABLE_NAME} does not exist; materialise the incidents asset)",
                column="incident_id",
            )
        rows = conn.execute(
            f"SELECT ip_addresses, customer_ids FROM {DETECTIONS_SCHEMA}.{INCIDENTS_TABLE_NAME} WHERE incident_id = ?",
            [verdict.incident_id],
        ).fetchall()
        if not rows:
            raise FeedbackError(
                f"unknown incident {verdict.incident_id}: not in {DETECTIONS_SCHEMA}.{INCIDENTS_TABLE_NAME}",
                column="incident_id",
            )
        ips, customers = rows[0]
        return Target(True, _texts(ips), _texts(customers))
    table = _ENTITY_TABLES[verdict.entity_type]
    ip_column = "ip_address" if verdict.entity_type == ENTITY_ACTIVITY else "NULL"
    try:
        rows = conn.execute(
            f"SELECT {ip_column}, customer_id FROM {table} WHERE id = ?", [verdict.entity_id]
        ).fetchall()
    except duckdb.CatalogException:
        rows = []
    if not rows:
        raise FeedbackError(f"unknown {verdict.entity_type} {verdict.entity_id}: not in {table}", column="entity_id")
    ip, customer = rows[0]
    return Target(_is_flagged(conn, verdict.entity_type, verdict.entity_id), _texts([ip]), _texts([customer]))


def prepare_verdict(
    conn: duckdb.DuckDBPyConnection,
    verdict: Verdict,
    recorded_at: dt.datetime,
    delivered: Mapping[str, Iterable[int]] | None = None,
) -> PreparedVerdict:
    """The verdict checked against the store (FeedbackError naming its target and what is wrong), with
    the values its allow rule allows until when. Writes nothing.

    `delivered` (entity type -> ids) names rows that arrive with the verdict, in the same landing
    delivery: they may be judged (nothing flagged them yet), but not allowed (their IPs and customers
    are not stored yet).
    """
    verdict = checked_verdict(verdict)
    arriving = verdict.incident_id is None and verdict.entity_id in set((delivered or {}).get(verdict.entity_type, ()))
    try:
        target = check_target(conn, verdict)
    except FeedbackError:
        if not arriving:
            raise
        if verdict.allow_kind is not None:
            raise FeedbackError(
                f"{verdict.target}: arrives in this delivery, so it has no stored {verdict.allow_kind} to allow yet; "
                "deliver the allow rule once the row is stored",
                column="allow",
            ) from None
        target = Target(False, (), ())
    allowed: tuple[str, ...] = ()
    allow_until = None
    if verdict.allow_kind is not None:
        allowed = target.ip_addresses if verdict.allow_kind == ALLOW_IP else target.customer_ids
        if not allowed:
            noun = "IP address" if verdict.allow_kind == ALLOW_IP else "customer"
            raise FeedbackError(f"{verdict.target}: has no {noun} to allow", column="allow")
        allow_until = recorded_at + dt.timedelta(days=float(verdict.allow_days))
    return PreparedVerdict(verdict, target.flagged, allowed, allow_until)


def with_feedback_ids(prepared: Sequence[PreparedVerdict], recorded_at: dt.datetime) -> list[RecordedVerdict]:
    """Prepared verdicts with their ids; ids sort in the given order within one `recorded_at`, so the
    last verdict on a target in a batch (a landing file) wins."""
    stamp = f"{recorded_at:%Y%m%dT%H%M%S%f}"
    batch = uuid.uuid4().hex[:8]
    return [
        RecordedVerdict(
            f"fb-{stamp}-{batch}-{index:05d}", item.verdict, item.flagged, item.allowed_values, item.allow_until
        )
        for index, item in enumerate(prepared)
    ]


def feedback_rows(recorded: Sequence[RecordedVerdict], source: str, recorded_at: dt.datetime) -> pd.DataFrame:
    """The rows of `ops.analyst_feedback` for recorded verdicts: one per verdict, or per allowed value."""
    rows = []
    for item in recorded:
        verdict = item.verdict
        for value in item.allowed_values or (None,):
            rows.append(
                {
                    "feedback_id": item.feedback_id,
                    "recorded_at": recorded_at,
                    "incident_id": verdict.incident_id,
                    "entity_type": verdict.entity_type,
                    "entity_id": verdict.entity_id,
                    "verdict": verdict.verdict,
                    "note": verdict.note,
                    "analyst": verdict.analyst,
                    "source": source,
                    "allow_kind": verdict.allow_kind if value is not None else None,
                    "allow_value": value,
                    "allow_until": item.allow_until if value is not None else None,
                }
            )
    frame = pd.DataFrame(rows, columns=list(FEEDBACK_COLUMNS))
    frame["entity_id"] = frame["entity_id"].astype("Int64")
    for column in ("recorded_at", "allow_until"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    return frame


def record_verdicts(
    conn: duckdb.DuckDBPyConnection, verdicts: Sequence[Verdict], source: str, recorded_at: dt.datetime
) -> list[RecordedVerdict]:
    """Validate every verdict against the store, then append them all in one transaction, in order.

    Raises FeedbackError (naming the verdict's target and what is wrong) before writing anything
    when one of them is bad. `recorded_at` is naive UTC; verdicts of one call share it and keep
    their order through their ids, so the last one on a target wins.
    """
    ensure_feedback_tables(conn)
    recorded = with_feedback_ids([prepare_verdict(conn, verdict, recorded_at) for verdict in verdicts], recorded_at)
    with transaction(conn):
        insert_feedback_rows(conn, feedback_rows(recorded, source, recorded_at))
    for item in recorded:
        logger.info(
            "recorded %s on %s from %s%s",
            item.verdict.verdict,
            item.verdict.target,
            source,
            " (a miss: no detector flagged it)" if item.is_miss else "",
        )
    return recorded


def insert_feedback_rows(conn: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> None:
    """Append `feedback_rows` to ops.analyst_feedback, inside the caller's transaction."""
    if rows.empty:
        return
    conn.register("incoming_feedback", rows)
    try:
        columns = ", ".join(FEEDBACK_COLUMNS)
        conn.execute(f"INSERT INTO {FEEDBACK_TABLE} ({columns}) SELECT {columns} FROM incoming_feedback")
    finally:
        conn.unregister("incoming_feedback")


def ensure_feedback_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create `ops.analyst_feedback` when missing and (re)create the views over it (idempotent).

    The views read `detections.anomalies` where it exists (and its `incident_id` where that exists),
    so they are recreated on every write to follow those tables as they appear.
    """
    conn.execute(FEEDBACK_DDL)
    conn.execute(f"CREATE OR REPLACE VIEW {OPS_SCHEMA}.{ENTITY_VERDICTS} AS {_entity_verdicts_sql(conn)}")
    conn.execute(
        f"""CREATE OR REPLACE VIEW {OPS_SCHEMA}.{CONFIRMED_ANOMALIES} AS
            SELECT entity_type, entity_id FROM {OPS_SCHEMA}.{ENTITY_VERDICTS} WHERE verdict = '{VERDICT_CONFIRM}'"""
    )
    conn.execute(
        f"""CREATE OR REPLACE VIEW {OPS_SCHEMA}.{ACTIVE_ALLOW_RULES} AS
            SELECT allow_kind, allow_value, min(recorded_at) AS allowed_from, max(allow_until) AS allow_until
            FROM {FEEDBACK_TABLE}
            WHERE allow_kind IS NOT NULL AND allow_until > (current_timestamp AT TIME ZONE 'UTC')
            GROUP BY allow_kind, allow_value"""
    )


def _entity_verdicts_sql(conn: duckdb.DuckDBPyConnection) -> str:
    """Each judged entity's effective verdict: its own latest, else its incident's latest."""
    has_anomalies = table_exists(conn, ANOMALIES, DETECTIONS_SCHEMA)
    has_incident_ids = has_anomalies and any(
        name == "incident_id" for name, _ in table_columns(conn, ANOMALIES, DETECTIONS_SCHEMA)
    )
    anomalies = f"{DETECTIONS_SCHEMA}.{ANOMALIES}"
    latest = "QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY recorded_at DESC, feedback_id DESC) = 1"
    through_incident = (
        f"""SELECT DISTINCT a.entity_type, a.entity_id, i.verdict, i.recorded_at, i.feedback_id, i.incident_id,
                   'incident' AS given_on, i.note, i.analyst, i.source
            FROM incident_latest AS i JOIN {anomalies} AS a ON a.incident_id = i.incident_id
            {latest.format(key="a.entity_type, a.entity_id")}"""
        if has_incident_ids
        else """SELECT entity_type, entity_id, verdict, recorded_at, feedback_id, incident_id, 'incident' AS given_on,
                   note, analyst, source FROM incident_latest WHERE false"""
    )
    flagged = (
        f"EXISTS (SELECT 1 FROM {anomalies} AS a WHERE a.entity_type = v.entity_type AND a.entity_id = v.entity_id)"
        if has_anomalies
        else "false"
    )
    return f"""
        WITH direct AS (
            SELECT entity_type, entity_id, verdict, recorded_at, feedback_id, CAST(NULL AS VARCHAR) AS incident_id,
                   'entity' AS given_on, note, analyst, source
            FROM {FEEDBACK_TABLE} WHERE incident_id IS NULL
            {latest.format(key="entity_type, entity_id")}),
        incident_latest AS (
            SELECT * FROM {FEEDBACK_TABLE} WHERE incident_id IS NOT NULL {latest.format(key="incident_id")}),
        through_incident AS ({through_incident}),
        effective AS (
            SELECT * FROM direct
            UNION ALL
            SELECT * FROM through_incident AS t
            WHERE NOT EXISTS (SELECT 1 FROM direct AS d WHERE d.entity_type = t.entity_type AND d.entity_id = t.entity_id))
        SELECT v.entity_type, v.entity_id, v.verdict, v.given_on, v.incident_id, v.feedback_id, v.recorded_at,
               v.note, v.analyst, v.source, {flagged} AS flagged,
               CASE WHEN {flagged} THEN (CASE v.verdict WHEN '{VERDICT_CONFIRM}' THEN '{OUTCOME_FLAGGED_CONFIRMED}'
                                                       ELSE '{OUTCOME_FLAGGED_DISMISSED}' END)
                    ELSE (CASE v.verdict WHEN '{VERDICT_CONFIRM}' THEN '{OUTCOME_MISSED}'
                                         ELSE '{OUTCOME_UNFLAGGED_DISMISSED}' END) END AS outcome
        FROM effective AS v"""


def entity_verdicts(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """`ops.entity_verdicts` as a frame (empty, with its columns, when no verdict was ever recorded)."""
    if not table_exists(conn, ANALYST_FEEDBACK, OPS_SCHEMA):
        return pd.DataFrame(
            {
                "entity_type": pd.Series(dtype="str"),
                "entity_id": pd.Series(dtype="int64"),
                "verdict": pd.Series(dtype="str"),
                "outcome": pd.Series(dtype="str"),
            }
        )
    return conn.execute(f"SELECT * FROM {OPS_SCHEMA}.{ENTITY_VERDICTS} ORDER BY entity_type, entity_id").df()


def _is_flagged(conn: duckdb.DuckDBPyConnection, entity_type: str, entity_id: int) -> bool:
    if not table_exists(conn, ANOMALIES, DETECTIONS_SCHEMA):
        return False
    ((count,),) = conn.execute(
        f"SELECT count(*) FROM {DETECTIONS_SCHEMA}.{ANOMALIES} WHERE entity_type = ? AND entity_id = ?",
        [entity_type, entity_id],
    ).fetchall()
    return count > 0


def _texts(values) -> tuple[str, ...]:
    """Non-null values as sorted distinct text (an incident's list column, or one entity's value)."""
    if values is None:
        return ()
    return tuple(sorted({str(value) for value in values if value is not None and str(value) != ""}))


def _blank_to_none(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


__all__ = [
    "ALLOW_CUSTOMER",
    "FEEDBACK_COLUMNS",
    "FEEDBACK_TABLE",
    "OUTCOMES",
    "FeedbackError",
    "PreparedVerdict",
    "RecordedVerdict",
    "Target",
    "Verdict",
    "check_target",
    "checked_verdict",
    "ensure_feedback_tables",
    "entity_verdicts",
    "feedback_rows",
    "insert_feedback_rows",
    "parse_entity",
    "prepare_verdict",
    "record_verdicts",
    "with_feedback_ids",
]
