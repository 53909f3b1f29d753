"""The report tables: what the store holds, when it is busy, and what the detectors found.

Each function is one DuckDB aggregation over the stored tables and returns a small frame; a table
that does not exist yet counts as empty, so a summary of a half-built store still reads.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from anomalens_dagster.constants import (
    ACTIVITY_SCORES,
    ANOMALIES,
    CATEGORIES,
    CUSTOMERS,
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    ORDER_ITEMS,
    ORDERS,
    PRODUCTS,
    SIMULATION_LABELS,
    SIMULATOR_SOURCE,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.warehouse import table_exists

# Store tables in the order the original dashboard listed them, with the column that dates a row
# (None: the table is not dated) and whether rows carry a `source` (simulated or a landed file).
STORE_SUMMARY_TABLES: tuple[tuple[str, str | None, bool], ...] = (
    (CATEGORIES, None, False),
    (PRODUCTS, None, False),
    (CUSTOMERS, "created_at", False),
    (ORDERS, "created_at", True),
    (ORDER_ITEMS, None, True),
    (USER_ACTIVITIES, "timestamp", True),
    (SIMULATION_LABELS, None, False),
)

STORE_SUMMARY_DTYPES: dict[str, str] = {
    "table_name": "str",
    "rows": "int64",
    "simulated_rows": "int64",  # rows the simulator wrote (all rows of tables without `source`)
    "landed_rows": "int64",  # rows loaded from landing-zone files
    "first_at": "datetime64[us]",  # earliest dated row (NaT for undated or empty tables)
    "last_at": "datetime64[us]",
}

ACTIVITY_TIMELINE_DTYPES: dict[str, str] = {
    "hour": "datetime64[us]",  # start of the UTC hour
    "action_type": "str",
    "actions": "int64",
    "flagged": "int64",  # actions the ensemble flagged
}

ANOMALY_SUMMARY_DTYPES: dict[str, str] = {
    "day": "datetime64[us]",  # the UTC day of the flagged order or activity
    "entity_type": "str",
    "detector_name": "str",
    "severity": "str",
    "anomalies": "int64",
}


def store_summary(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Rows per store table, split into simulated and landed, with the dated range they cover."""
    rows = []
    for table, dated_by, has_source in STORE_SUMMARY_TABLES:
        if not table_exists(conn, table, STORE_SCHEMA):
            rows.append((table, 0, 0, 0, None, None))
            continue
        simulated = "count(*) FILTER (WHERE source = $simulator)" if has_source else "count(*)"
        span = f"min({dated_by}), max({dated_by})" if dated_by else "NULL, NULL"
        total, from_simulator, first_at, last_at = conn.execute(
            f"SELECT count(*), {simulated}, {span} FROM {STORE_SCHEMA}.{table}",
            {"simulator": SIMULATOR_SOURCE} if has_source else {},
        ).fetchall()[0]
        rows.append((table, total, from_simulator, total - from_simulator, first_at, last_at))
    return pd.DataFrame(rows, columns=list(STORE_SUMMARY_DTYPES)).astype(STORE_SUMMARY_DTYPES)


def activity_timeline(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Actions per UTC hour and action type, and how many of them the ensemble flagged."""
    if not table_exists(conn, USER_ACTIVITIES, STORE_SCHEMA):
        return _empty(ACTIVITY_TIMELINE_DTYPES)
    flagged = (
        f"SELECT activity_id FROM {DETECTIONS_SCHEMA}.{ACTIVITY_SCORES} WHERE detector = $ensemble AND is_anomaly"
        if table_exists(conn, ACTIVITY_SCORES, DETECTIONS_SCHEMA)
        else "SELECT NULL::BIGINT AS activity_id WHERE $ensemble IS NULL AND false"
    )
    frame = conn.execute(
        f"""SELECT time_bucket(INTERVAL 1 HOUR, a.timestamp) AS hour, a.action_type,
                   count(*) AS actions, count(f.activity_id) AS flagged
            FROM {STORE_SCHEMA}.{USER_ACTIVITIES} AS a
            LEFT JOIN ({flagged}) AS f ON f.activity_id = a.id
            GROUP BY ALL ORDER BY hour, a.action_type""",
        {"ensemble": DETECTOR_ENSEMBLE},
    ).df()
    return frame.astype(ACTIVITY_TIMELINE_DTYPES)


def anomaly_summary(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Anomaly records per day of the flagged entity, entity type, detector and severity."""
    if not table_exists(conn, ANOMALIES, DETECTIONS_SCHEMA):
        return _empty(ANOMALY_SUMMARY_DTYPES)
    frame = conn.execute(
        f"""SELECT date_trunc('day', event_timestamp) AS day, entity_type, detector_name, severity,
                   count(*) AS anomalies
            FROM {DETECTIONS_SCHEMA}.{ANOMALIES}
            GROUP BY ALL ORDER BY day, entity_type, detector_name, severity"""
    ).df()
    return frame.astype(ANOMALY_SUMMARY_DTYPES)


def _empty(dtypes: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})
