"""The alert outbox `ops.alerts`: which alerts to add, which are due, and what became of each attempt.

One row per (incident, target), never two: an incident already in the outbox for a target is never
added again, whatever its later re-scorings say. A row is sent until it is delivered:

1. `claim_due` counts the attempt and moves `next_attempt_at` a backoff ahead, and commits, *before*
   anything is sent; a run that dies while sending leaves a row that is simply due again later;
2. the caller sends each claimed row (no DuckDB connection held meanwhile);
3. `record_outcomes` writes `delivered_at`, or `last_error` and the row stays due at `next_attempt_at`.

A crash between 2 and 3 sends the alert again on a later run, under the same idempotency key: the
delivery is at-least-once, and the key lets a receiver drop the duplicate. No dagster import.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb

from anomalens_dagster.constants import (
    ALERTS,
    DETECTIONS_SCHEMA,
    INCIDENTS,
    OPS_SCHEMA,
    ORDERS,
    SIMULATOR_SOURCE,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.alerts import RetryPolicy, idempotency_key, incident_payload, redact, with_key
from anomalens_dagster.core.landing.rules import INGESTED_FILES
from anomalens_dagster.core.warehouse import table_exists, transaction

logger = logging.getLogger(__name__)

OUTBOX = f"{OPS_SCHEMA}.{ALERTS}"
INCIDENTS_TABLE = f"{DETECTIONS_SCHEMA}.{INCIDENTS}"
MAX_ERROR_CHARS = 500

ALERTS_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {OPS_SCHEMA};
CREATE TABLE IF NOT EXISTS {OUTBOX} (
    incident_id VARCHAR NOT NULL, target VARCHAR NOT NULL, idempotency_key VARCHAR NOT NULL,
    payload JSON NOT NULL, created_at TIMESTAMP NOT NULL, attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL, delivered_at TIMESTAMP, last_error VARCHAR);
"""

# Column descriptions for the asset's column schema.
ALERT_COLUMNS = {
    "incident_id": "The incident (detections.incidents), or stale-store:<last arrival> for a store gone quiet.",
    "target": "Where the alert goes: webhook, slack or email.",
    "idempotency_key": "incident_id:target; every attempt carries it (the e-mail's Message-ID is derived from it).",
    "payload": "The alert as sent (JSON), e-mail addresses masked, no secret.",
    "created_at": "When the alert entered the outbox (UTC).",
    "attempts": "Attempts so far, counted before each is sent.",
    "next_attempt_at": "When the next attempt is due if this one fails (UTC); backoff doubles up to a bound.",
    "delivered_at": "When the target accepted it (UTC); empty while undelivered.",
    "last_error": "Why the last attempt failed (secrets redacted).",
}


class Sender(Protocol):
    """Delivers one alert payload (with its idempotency key) to a target, raising when it was not accepted."""

    def send(self, payload: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class Alert:
    """A row of the outbox to add."""

    incident_id: str
    target: str
    payload: dict[str, Any]

    @property
    def key(self) -> str:
        return idempotency_key(self.incident_id, self.target)


@dataclass(frozen=True)
class ClaimedAlert:
    """A row of the outbox whose attempt was just recorded, to be sent."""

    key: str
    target: str
    attempts: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    key: str
    target: str
    error: str | None  # None: delivered


def ensure_alerts_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(ALERTS_DDL)


def alerts_for(payloads: Iterable[Mapping[str, Any]], targets: Iterable[str], already: Collection[str]) -> list[Alert]:
    """One alert per payload and target, except those whose idempotency key is `already` in the outbox."""
    targets = list(targets)
    alerts = [Alert(str(p["incident_id"]), target, dict(p)) for p in payloads for target in targets]
    return [alert for alert in alerts if alert.key not in already]


def outbox_keys(conn: duckdb.DuckDBPyConnection) -> set[str]:
    return {key for (key,) in conn.execute(f"SELECT idempotency_key FROM {OUTBOX}").fetchall()}


def incidents_to_notify(
    conn: duckdb.DuckDBPyConnection, severities: Collection[str], since: dt.datetime
) -> list[dict[str, Any]]:
    """Payloads of the incidents that deserve an alert now: of `severities`, not suppressed, last seen since `since`.

    Empty while `detections.incidents` does not exist (no incident was ever written).
    """
    if not table_exists(conn, INCIDENTS, DETECTIONS_SCHEMA):
        return []
    incidents = conn.execute(
        f"""SELECT * FROM {INCIDENTS_TABLE}
            WHERE list_contains($severities, max_severity) AND NOT coalesce(suppressed, false)
              AND last_seen >= $since
            ORDER BY first_seen, incident_id""",
        {"severities": list(severities), "since": since},
    ).df()
    return [incident_payload(row) for row in incidents.to_dict("records")]


def enqueue(conn: duckdb.DuckDBPyConnection, alerts: Iterable[Alert], now: dt.datetime) -> int:
    """Add `alerts` to the outbox, due at once, leaving out keys already there; returns the rows added."""
    added = 0
    with transaction(conn):
        for alert in alerts:
            (inserted,) = conn.execute(
                f"""INSERT INTO {OUTBOX} (incident_id, target, idempotency_key, payload, created_at, attempts,
                                          next_attempt_at, delivered_at, last_error)
                    SELECT $incident, $target, $key, $payload, $now, 0, $now, NULL, NULL
                    WHERE NOT EXISTS (SELECT 1 FROM {OUTBOX} WHERE idempotency_key = $key)""",
                {
                    "incident": alert.incident_id,
                    "target": alert.target,
                    "key": alert.key,
                    "payload": json.dumps(alert.payload),
                    "now": now,
                },
            ).fetchone()
            added += inserted
    return added


def claim_due(
    conn: duckdb.DuckDBPyConnection, now: dt.datetime, policy: RetryPolicy, targets: Collection[str]
) -> list[ClaimedAlert]:
    """The undelivered rows due at `now` for `targets`, with this attempt recorded (committed) before any is sent.

    A row whose incident is suppressed now is not sent (it stays in the outbox, unclaimed). Each
    claimed row's `next_attempt_at` moves ahead by the backoff of its attempt count, so a run that
    dies while sending leaves it due again then.
    """
    suppressed = (
        f"""AND NOT EXISTS (SELECT 1 FROM {INCIDENTS_TABLE} AS i
                            WHERE i.incident_id = a.incident_id AND coalesce(i.suppressed, false))"""
        if table_exists(conn, INCIDENTS, DETECTIONS_SCHEMA)
        else ""
    )
    with transaction(conn):
        due = conn.execute(
            f"""SELECT idempotency_key, target, attempts, CAST(payload AS VARCHAR) FROM {OUTBOX} AS a
                WHERE delivered_at IS NULL AND next_attempt_at <= $now AND list_contains($targets, target)
                {suppressed}
                ORDER BY created_at, idempotency_key""",
            {"now": now, "targets": list(targets)},
        ).fetchall()
        claimed = []
        for key, target, attempts, payload in due:
            attempt = attempts + 1
            conn.execute(
                f"UPDATE {OUTBOX} SET attempts = $attempt, next_attempt_at = $next WHERE idempotency_key = $key",
                {"attempt": attempt, "next": now + policy.delay(attempt), "key": key},
            )
            claimed.append(ClaimedAlert(key, target, attempt, with_key(json.loads(payload), key)))
    return claimed


def send_claimed(
    claimed: Iterable[ClaimedAlert], senders: Mapping[str, Sender], secrets: Iterable[str]
) -> list[Outcome]:
    """Send each claimed alert through its target's sender; a failure is kept (secrets redacted), never raised."""
    secrets = list(secrets)
    outcomes = []
    for alert in claimed:
        try:
            senders[alert.target].send(alert.payload)
        except Exception as error:  # any failure of a target is recorded and retried, never fatal to the others
            message = redact(f"{type(error).__name__}: {error}", secrets)[:MAX_ERROR_CHARS]
            logger.warning("alert %s to %s failed (attempt %d): %s", alert.key, alert.target, alert.attempts, message)
            outcomes.append(Outcome(alert.key, alert.target, message))
        else:
            outcomes.append(Outcome(alert.key, alert.target, None))
    return outcomes


def record_outcomes(conn: duckdb.DuckDBPyConnection, outcomes: Iterable[Outcome], now: dt.datetime) -> None:
    """Write what became of each attempt: delivered_at on success, last_error on failure."""
    with transaction(conn):
        for outcome in outcomes:
            if outcome.error is None:
                conn.execute(
                    f"UPDATE {OUTBOX} SET delivered_at = $now WHERE idempotency_key = $key",
                    {"now": now, "key": outcome.key},
                )
            else:
                conn.execute(
                    f"UPDATE {OUTBOX} SET last_error = $error WHERE idempotency_key = $key",
                    {"error": outcome.error, "key": outcome.key},
                )


def next_due(conn: duckdb.DuckDBPyConnection, targets: Collection[str]) -> dt.datetime | None:
    """When the earliest undelivered row for `targets` is due, or None when nothing waits."""
    ((due,),) = conn.execute(
        f"SELECT min(next_attempt_at) FROM {OUTBOX} WHERE delivered_at IS NULL AND list_contains($targets, target)",
        {"targets": list(targets)},
    ).fetchall()
    return due


def outbox_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows delivered, waiting (undelivered), and failing (undelivered after at least one attempt)."""
    (delivered, waiting, failing) = conn.execute(
        f"""SELECT count(delivered_at), count(*) FILTER (delivered_at IS NULL),
                   count(*) FILTER (delivered_at IS NULL AND attempts > 0) FROM {OUTBOX}"""
    ).fetchone()
    return {"delivered": delivered, "waiting": waiting, "failing": failing}


def last_arrival(conn: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    """When store rows last arrived: the latest landed file that brought rows, or the newest simulated row.

    Landed rows arrive when their file is ingested (whatever their event time); simulated rows have
    no arrival time, and the daily simulation writes yesterday's traffic, so their newest event
    time stands for it. None when the store never received a row.
    """
    candidates = []
    if table_exists(conn, INGESTED_FILES, OPS_SCHEMA):
        candidates.append(
            f"""SELECT max(ingested_at) FROM {OPS_SCHEMA}.{INGESTED_FILES}
                WHERE rows_loaded + coalesce(rows_updated, 0) + coalesce(rows_pending, 0) > 0"""
        )
    for table, time_column in ((USER_ACTIVITIES, "timestamp"), (ORDERS, "created_at")):
        if table_exists(conn, table, STORE_SCHEMA):
            candidates.append(f"SELECT max({time_column}) FROM {STORE_SCHEMA}.{table} WHERE source = $simulator")
    if not candidates:
        return None
    params = {"simulator": SIMULATOR_SOURCE} if any("$simulator" in sql for sql in candidates) else {}
    ((latest,),) = conn.execute(
        f"SELECT max(t) FROM ({' UNION ALL '.join(candidates)}) AS arrivals(t)", params
    ).fetchall()
    return latest
