"""A tiny store with anomaly records grouped into incidents (contract A's columns), to judge in tests.

Until the incidents asset is merged, tests of feedback write `detections.incidents` and the
anomaly records' `incident_id` themselves, with the contract's columns.
"""

from __future__ import annotations

import json

import duckdb
import pandas as pd

from anomalens_dagster.core.anomalies import ANOMALY_DTYPES
from anomalens_dagster.core.warehouse import ensure_store_tables

T = pd.Timestamp("2026-03-01 10:00")
BURST_IP, OFFICE_IP = "203.0.113.7", "198.51.100.1"
ACTIVITY_INCIDENT, ORDER_INCIDENT = "activity-2026-03-01T10:00:00-1", "order-2026-03-01T10:00:00-10"
# Activities 1 and 2 (one incident, from BURST_IP) and order 10 (its own incident) are flagged;
# activity 3 and order 11 are not.
FLAGGED_ACTIVITIES, UNFLAGGED_ACTIVITY = (1, 2), 3
FLAGGED_ORDER, UNFLAGGED_ORDER = 10, 11

INCIDENTS_DDL = """
CREATE TABLE IF NOT EXISTS detections.incidents (
    incident_id VARCHAR NOT NULL, entity_type VARCHAR NOT NULL, first_seen TIMESTAMP, last_seen TIMESTAMP,
    row_count BIGINT, customer_ids BIGINT[], ip_addresses VARCHAR[], session_ids VARCHAR[], order_ids BIGINT[],
    max_severity VARCHAR, ensemble_score DOUBLE, top_features VARCHAR[], suppressed BOOLEAN, summary VARCHAR)
"""


def _record(record_id: int, entity_type: str, entity_id: int, incident_id: str, customer, ip) -> dict:
    return {
        "id": record_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "detection_timestamp": T,
        "description": "test record",
        "severity": "High",
        "detector_name": "ensemble",
        "details": json.dumps({}),
        "anomaly_score": 3.0,
        "event_timestamp": T,
        "customer_id": customer,
        "ip_address": ip,
        "session_id": "s1" if entity_type == "activity" else None,
        "incident_id": incident_id,
    }


def write_judgeable_store(conn: duckdb.DuckDBPyConnection) -> None:
    """Customers 1 and 2, activities 1-3, orders 10-11, anomaly records and the two incidents above."""
    ensure_store_tables(conn)
    conn.execute(
        "INSERT INTO store.customers VALUES (1, 'a@example.com', 'A', 'A', $t), (2, 'b@example.com', 'B', 'B', $t)",
        {"t": T},
    )
    conn.execute(
        """INSERT INTO store.user_activities VALUES
           (1, 1, 's1', $t, 'search', '{}', $burst, 'curl', 'landed'),
           (2, 1, 's1', $t, 'search', '{}', $burst, 'curl', 'landed'),
           (3, 2, 's2', $t, 'view_page', '{}', $office, 'Firefox', 'landed')""",
        {"t": T, "burst": BURST_IP, "office": OFFICE_IP},
    )
    conn.execute(
        "INSERT INTO store.orders VALUES (10, 2, $t, 9999.0, 'pending', 'landed'), (11, 2, $t, 20.0, 'pending', 'landed')",
        {"t": T},
    )
    records = pd.DataFrame(
        [
            _record(1, "activity", 1, ACTIVITY_INCIDENT, 1, BURST_IP),
            _record(2, "activity", 2, ACTIVITY_INCIDENT, 1, BURST_IP),
            _record(3, "order", FLAGGED_ORDER, ORDER_INCIDENT, 2, None),
        ]
    ).astype({**ANOMALY_DTYPES, "incident_id": "str"})
    conn.execute("CREATE SCHEMA IF NOT EXISTS detections")
    conn.register("records", records)
    conn.execute("CREATE TABLE detections.anomalies AS SELECT * FROM records")
    conn.unregister("records")
    conn.execute(INCIDENTS_DDL)
    conn.execute(
        """INSERT INTO detections.incidents VALUES
           ($a, 'activity', $t, $t, 2, [1], [$burst], ['s1'], [], 'High', 3.0, ['actions_in_last_5min_ip'], false,
            '2 identical searches from 1 IP'),
           ($o, 'order', $t, $t, 1, [2], [], [], [10], 'High', 3.0, ['total_amount'], false, 'an order of 9999')""",
        {"a": ACTIVITY_INCIDENT, "o": ORDER_INCIDENT, "t": T, "burst": BURST_IP},
    )
