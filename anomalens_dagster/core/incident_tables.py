"""Where incidents live in DuckDB: reading their inputs, replacing `detections.incidents`, and
stamping each anomaly record with its `incident_id` (no dagster import).

The incidents are recomputed from every stored anomaly record, so an incident that crosses
midnight, or that a re-scored day lengthens or splits, is always whole; the table and the
records' ``incident_id`` change together in one transaction.
"""

from __future__ import annotations

import logging

import duckdb
import pandas as pd
import pyarrow as pa

from anomalens_dagster.constants import ANOMALIES, DETECTIONS_SCHEMA, INCIDENTS, OPS_SCHEMA
from anomalens_dagster.core.incidents import (
    ALLOW_RULE_COLUMNS,
    INCIDENT_COLUMNS,
    INCIDENT_SQL_TYPES,
    RECORD_COLUMNS,
    IncidentGrouping,
)
from anomalens_dagster.core.warehouse import table_columns, table_exists, transaction

logger = logging.getLogger(__name__)

# The feedback helper's view of the allow rules in force (contract B of issue 15).
ACTIVE_ALLOW_RULES = "active_allow_rules"

INCIDENTS_TABLE = f"{DETECTIONS_SCHEMA}.{INCIDENTS}"
INCIDENTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {INCIDENTS_TABLE} (\n    "
    + ",\n    ".join(f"{name} {sql_type}" for name, sql_type in INCIDENT_SQL_TYPES.items())
    + "\n)"
)


def read_records(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every stored anomaly record's `RECORD_COLUMNS` (none before the records table exists)."""
    if not table_exists(conn, ANOMALIES, DETECTIONS_SCHEMA):
        return pd.DataFrame({column: pd.Series(dtype="object") for column in RECORD_COLUMNS})
    stored = {name for name, _ in table_columns(conn, ANOMALIES, DETECTIONS_SCHEMA)}
    # Records written before the customer, IP and session columns existed read as unknown there.
    columns = [column if column in stored else f"NULL AS {column}" for column in RECORD_COLUMNS]
    return conn.execute(f"SELECT {', '.join(columns)} FROM {DETECTIONS_SCHEMA}.{ANOMALIES}").df()


def view_exists(conn: duckdb.DuckDBPyConnection, view: str, schema: str) -> bool:
    ((count,),) = conn.execute(
        "SELECT count(*) FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = $schema AND view_name = $view",
        {"schema": schema, "view": view},
    ).fetchall()
    return count > 0


def read_allow_rules(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """The allow rules in force (`ops.active_allow_rules`), or None while no feedback exists."""
    if not (view_exists(conn, ACTIVE_ALLOW_RULES, OPS_SCHEMA) or table_exists(conn, ACTIVE_ALLOW_RULES, OPS_SCHEMA)):
        return None
    return conn.execute(f"SELECT {', '.join(ALLOW_RULE_COLUMNS)} FROM {OPS_SCHEMA}.{ACTIVE_ALLOW_RULES}").df()


def replace_incidents(conn: duckdb.DuckDBPyConnection, grouping: IncidentGrouping) -> None:
    """Replace `detections.incidents` with `grouping.incidents` and set every record's `incident_id`,
    in one transaction (records of entities in no incident get NULL)."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {DETECTIONS_SCHEMA}")
    with transaction(conn):
        write_incidents(conn, grouping)


def write_incidents(conn: duckdb.DuckDBPyConnection, grouping: IncidentGrouping) -> None:
    """`replace_incidents` inside a transaction the caller holds (the schema must exist)."""
    incidents = pa.Table.from_pandas(grouping.incidents[list(INCIDENT_COLUMNS)], preserve_index=False)
    members = pa.Table.from_pandas(grouping.members, preserve_index=False)
    casts = ", ".join(
        f"CAST({name} AS {sql_type.removesuffix(' NOT NULL')}) AS {name}"
        for name, sql_type in INCIDENT_SQL_TYPES.items()
    )
    conn.execute(INCIDENTS_DDL)
    conn.register("incoming_incidents", incidents)
    conn.execute(f"DELETE FROM {INCIDENTS_TABLE}")
    conn.execute(f"INSERT INTO {INCIDENTS_TABLE} BY NAME SELECT {casts} FROM incoming_incidents")
    conn.unregister("incoming_incidents")
    if table_exists(conn, ANOMALIES, DETECTIONS_SCHEMA):
        records = f"{DETECTIONS_SCHEMA}.{ANOMALIES}"
        conn.execute(f"ALTER TABLE {records} ADD COLUMN IF NOT EXISTS incident_id VARCHAR")
        conn.register("incoming_members", members)
        conn.execute(
            f"""UPDATE {records} AS r SET incident_id = m.incident_id
                FROM (SELECT r.entity_type, r.entity_id, m.incident_id
                      FROM (SELECT DISTINCT entity_type, entity_id FROM {records}) AS r
                      LEFT JOIN incoming_members AS m USING (entity_type, entity_id)) AS m
                WHERE r.entity_type = m.entity_type AND r.entity_id = m.entity_id
                  AND r.incident_id IS DISTINCT FROM m.incident_id"""
        )
        conn.unregister("incoming_members")
    logger.info("replaced %s with %d incidents", INCIDENTS_TABLE, len(grouping.incidents))
