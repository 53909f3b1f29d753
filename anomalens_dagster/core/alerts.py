"""What an alert says and when it is (re)sent: payloads, idempotency keys, backoff (no dagster import).

An alert is one message about one incident (or about the store going quiet) to one target. Each
carries an idempotency key, `<incident_id>:<target>`, that stays the same on every attempt: delivery
is at-least-once (a crash between sending and recording the success sends again), and a receiver
drops the rare duplicate by that key (the e-mail's Message-ID is derived from it).

Payloads hold what an analyst needs to start (times, counts, customers, IPs, the incident's
sentence) with e-mail addresses masked the way anomaly descriptions mask them; they never hold a
secret: tokens and passwords are read from environment variables only when a message is sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anomalens_dagster.constants import SEVERITIES
from anomalens_dagster.core.descriptions import mask_emails_in_text

KIND_INCIDENT = "incident"
KIND_STALE_STORE = "stale_store"
STALE_STORE_PREFIX = "stale-store"
MESSAGE_ID_DOMAIN = "alerts.anomalens"
REDACTED = "***"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: the first retry waits `initial_seconds`, each next one twice as long, at most `max_seconds`."""

    initial_seconds: float
    max_seconds: float

    def __post_init__(self) -> None:
        if not 0 < self.initial_seconds <= self.max_seconds:
            raise ValueError(
                f"retry delays must satisfy 0 < initial ({self.initial_seconds}) <= max ({self.max_seconds}) seconds"
            )

    def delay(self, attempts: int) -> dt.timedelta:
        """How long to wait after the `attempts`-th attempt (1 = the first) before the next one."""
        if attempts < 1:
            raise ValueError(f"attempts counts from 1, got {attempts}")
        # min() before the power would overflow a float after ~1000 attempts.
        doublings = min(attempts - 1, math.ceil(math.log2(self.max_seconds / self.initial_seconds)) + 1)
        return dt.timedelta(seconds=min(self.initial_seconds * 2**doublings, self.max_seconds))


def idempotency_key(incident_id: str, target: str) -> str:
    """The key every attempt to tell `target` about `incident_id` carries."""
    return f"{incident_id}:{target}"


def message_id(key: str) -> str:
    """An RFC 5322 Message-ID derived from an idempotency key: a resent e-mail has the same one."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{MESSAGE_ID_DOMAIN}>"


def severities_at_least(min_severity: str) -> tuple[str, ...]:
    """The severities that are `min_severity` or worse."""
    if min_severity not in SEVERITIES:
        raise ValueError(f"unknown severity {min_severity!r} (known: {', '.join(SEVERITIES)})")
    return SEVERITIES[SEVERITIES.index(min_severity) :]


def incident_payload(incident: Mapping[str, Any]) -> dict[str, Any]:
    """The alert about one row of `detections.incidents`, JSON-ready, e-mail addresses masked."""
    return masked(
        {
            "kind": KIND_INCIDENT,
            "incident_id": str(incident["incident_id"]),
            "entity_type": incident["entity_type"],
            "severity": incident["max_severity"],
            "summary": incident.get("summary") or "",
            "first_seen": _iso(incident.get("first_seen")),
            "last_seen": _iso(incident.get("last_seen")),
            "row_count": _int_or_none(incident.get("row_count")),
            "ensemble_score": _float_or_none(incident.get("ensemble_score")),
            "top_features": _list(incident.get("top_features")),
            "customer_ids": [int(value) for value in _list(incident.get("customer_ids"))],
            "ip_addresses": _list(incident.get("ip_addresses")),
            "session_ids": _list(incident.get("session_ids")),
            "order_ids": [int(value) for value in _list(incident.get("order_ids"))],
        }
    )


def stale_store_incident_id(last_arrival: dt.datetime) -> str:
    """One id per quiet period: the period that began with the store's last arrival."""
    return f"{STALE_STORE_PREFIX}:{last_arrival.replace(microsecond=0).isoformat()}"


def stale_since(last_arrival: dt.datetime | None, now: dt.datetime, stale_after: dt.timedelta) -> dt.datetime | None:
    """When the store went stale (its last arrival + `stale_after`), or None while it is fresh or never received data.

    A store that never received a row is being set up, not failing: it raises nothing.
    """
    if last_arrival is None:
        return None
    due = last_arrival + stale_after
    return due if now >= due else None


def stale_store_payload(last_arrival: dt.datetime, now: dt.datetime, stale_after: dt.timedelta) -> dict[str, Any]:
    """The alert that no landed or simulated rows arrived for `stale_after` since `last_arrival`."""
    quiet_hours = (now - last_arrival).total_seconds() / 3600
    return {
        "kind": KIND_STALE_STORE,
        "incident_id": stale_store_incident_id(last_arrival),
        "severity": "High",
        "summary": (
            f"No landed or simulated rows have arrived for {quiet_hours:.1f} h (since {_iso(last_arrival)}; "
            f"alerting after {stale_after.total_seconds() / 3600:g} h)"
        ),
        "last_arrival": _iso(last_arrival),
        "stale_after_hours": stale_after.total_seconds() / 3600,
    }


def with_key(payload: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The payload as sent: its fields plus the idempotency key."""
    return {**payload, "idempotency_key": key}


def subject(payload: Mapping[str, Any]) -> str:
    """One line naming the alert (e-mail subject, Slack message's first line)."""
    if payload.get("kind") == KIND_STALE_STORE:
        return "AnomaLens: no new store data"
    return f"AnomaLens: {payload.get('severity')} {payload.get('entity_type')} incident {payload.get('incident_id')}"


def text(payload: Mapping[str, Any]) -> str:
    """The alert as plain text: its sentence, then its fields one per line, then the idempotency key."""
    skipped = {"kind", "summary", "idempotency_key"}
    lines = [subject(payload), "", str(payload.get("summary") or "")]
    lines += [f"{name}: {_text_value(value)}" for name, value in payload.items() if name not in skipped]
    if payload.get("idempotency_key"):
        lines += ["", f"idempotency key: {payload['idempotency_key']}"]
    return "\n".join(lines)


def masked(value: Any) -> Any:
    """`value` with every e-mail address in its strings masked (nested lists and dicts too)."""
    if isinstance(value, str):
        return mask_emails_in_text(value)
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


def redact(message: str, secrets: Iterable[str | None]) -> str:
    """`message` with each non-empty secret replaced by ***: an error text may quote what it was given."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, REDACTED)
    return message


def _iso(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    return value.isoformat() if isinstance(value, dt.datetime | dt.date) else str(value)


def _list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [item.item() if hasattr(item, "item") else item for item in value]


def _int_or_none(value: Any) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _text_value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    return "-" if value is None else str(value)
