"""Rows of `detections.incidents` written the way contract A defines the table (until the incidents asset
writes them, alert tests write their own)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

INCIDENTS_DDL = """
CREATE SCHEMA IF NOT EXISTS detections;
CREATE TABLE IF NOT EXISTS detections.incidents (
    incident_id VARCHAR NOT NULL, entity_type VARCHAR NOT NULL, first_seen TIMESTAMP, last_seen TIMESTAMP,
    row_count BIGINT, customer_ids BIGINT[], ip_addresses VARCHAR[], session_ids VARCHAR[], order_ids BIGINT[],
    max_severity VARCHAR, ensemble_score DOUBLE, top_features VARCHAR[], suppressed BOOLEAN, summary VARCHAR);
"""


def incident(
    incident_id: str, last_seen: dt.datetime, severity: str = "High", suppressed: bool = False
) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "entity_type": "activity",
        "first_seen": last_seen - dt.timedelta(seconds=40),
        "last_seen": last_seen,
        "row_count": 14,
        "customer_ids": [7],
        "ip_addresses": ["203.0.113.9"],
        "session_ids": ["s-1"],
        "order_ids": [],
        "max_severity": severity,
        "ensemble_score": 3.5,
        "top_features": ["failed_logins_in_last_15min_ip"],
        "suppressed": suppressed,
        "summary": "14 failed logins for john.doe@example.com from 1 IP within 40 s",
    }


def replace_incidents(conn: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    """Replace the whole incidents table with `rows`, as the incidents asset replaces it on each run."""
    conn.execute(INCIDENTS_DDL)
    conn.execute("DELETE FROM detections.incidents")
    for row in rows:
        columns = ", ".join(row)
        conn.execute(
            f"INSERT INTO detections.incidents ({columns}) VALUES ({', '.join('$' + name for name in row)})", row
        )
