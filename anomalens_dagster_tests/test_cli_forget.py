"""`anomalens forget --customer ID` on a tmp DuckDB store with anomaly records."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from anomalens_dagster.cli import main
from anomalens_dagster.core.anomalies import ANOMALY_DTYPES, mask_email
from anomalens_dagster.core.privacy import FORGOTTEN_TEXT, forgotten_email
from anomalens_dagster.core.warehouse import ensure_store_tables

EMAIL = "john.doe@example.com"
OTHER_EMAIL = "ann.other@example.org"
IP, OTHER_IP = "203.0.113.7", "198.51.100.1"
AGENT = "Mozilla/5.0 (John's laptop)"
T = pd.Timestamp("2026-03-01 10:00")


@pytest.fixture
def store_db(tmp_path):
    """Customers 320 (to forget) and 7, their activities, an anonymous failed login naming 320's email,
    and anomaly records that repeat 320's IP and masked email."""
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        ensure_store_tables(conn)
        conn.execute(
            "INSERT INTO store.customers VALUES (320, $e, 'John', 'Doe', $t), (7, $o, 'Ann', 'Other', $t)",
            {"e": EMAIL, "o": OTHER_EMAIL, "t": T},
        )
        conn.execute(
            """INSERT INTO store.user_activities VALUES
               (1, 320, 's1', $t, 'view_page', '{"url": "/home"}', $ip, $agent, 'landed'),
               (2, NULL, 's2', $t, 'failed_login', json_object('success', false, 'attempted_email', $e), $ip, 'curl', 'landed'),
               (3, 7, 's3', $t, 'view_page', '{"url": "/home"}', $other_ip, 'Firefox', 'landed')""",
            {"t": T, "ip": IP, "other_ip": OTHER_IP, "agent": AGENT, "e": EMAIL},
        )
        records = (
            pd.DataFrame(
                [
                    {
                        "id": 11,
                        "entity_type": "activity",
                        "entity_id": 2,
                        "detection_timestamp": T,
                        "description": f"6 failed logins for {mask_email(EMAIL)} from {IP}",
                        "severity": "High",
                        "detector_name": "zscore",
                        "details": json.dumps({"facts": {"ip_address": IP, "email": mask_email(EMAIL)}}),
                        "anomaly_score": 9.0,
                        "event_timestamp": T,
                        "customer_id": None,
                        "ip_address": IP,
                        "session_id": "s2",
                    },
                    {
                        "id": 12,
                        "entity_type": "activity",
                        "entity_id": 3,
                        "detection_timestamp": T,
                        "description": f"burst from {OTHER_IP}",
                        "severity": "Low",
                        "detector_name": "zscore",
                        "details": "{}",
                        "anomaly_score": 5.0,
                        "event_timestamp": T,
                        "customer_id": 7,
                        "ip_address": OTHER_IP,
                        "session_id": "s3",
                    },
                ]
            )
            .assign(incident_id=None)
            .astype(ANOMALY_DTYPES)
        )
        conn.execute("CREATE SCHEMA detections")
        conn.register("records", records)
        conn.execute("CREATE TABLE detections.anomalies AS SELECT * FROM records")
        conn.execute(
            """CREATE TABLE detections.consolidated_anomalies AS
               SELECT entity_type, entity_id, customer_id, ip_address, session_id,
                      CASE WHEN entity_id = 2 THEN '[{"details": {"attempted_email": "' || $masked || '"}}]'
                           ELSE '[]' END AS session_actions
               FROM records""",
            {"masked": mask_email(EMAIL)},
        )
        conn.execute(
            """CREATE TABLE detections.incidents AS
               SELECT * FROM (VALUES ('inc-1', [$ip, '192.0.2.1'], '3 failed logins from ' || $ip),
                                     ('inc-2', [$other_ip], '1 search from ' || $other_ip))
                        AS t(incident_id, ip_addresses, summary)""",
            {"ip": IP, "other_ip": OTHER_IP},
        )
    return path


def every_text(db) -> str:
    """Every text and JSON value of every table, joined: what a search of the file would find."""
    with duckdb.connect(str(db), read_only=True) as conn:
        columns = conn.execute(
            """SELECT schema_name, table_name, column_name FROM duckdb_columns()
               WHERE data_type IN ('VARCHAR', 'JSON')"""
        ).fetchall()
        return "\n".join(
            str(value)
            for schema, table, column in columns
            for (value,) in conn.execute(f'SELECT "{column}" FROM {schema}.{table}').fetchall()
        )


def test_forget_removes_the_customers_email_names_ips_and_user_agents_everywhere_and_records_it(store_db):
    result = CliRunner().invoke(main, ["forget", "--customer", "320", "--db", str(store_db)])

    assert result.exit_code == 0, result.output
    remaining = every_text(store_db)
    for personal in (EMAIL, mask_email(EMAIL), "John", "Doe", IP, AGENT):
        assert personal not in remaining, personal
    assert forgotten_email(320) in remaining and FORGOTTEN_TEXT in remaining
    for others in (OTHER_EMAIL, "Ann", OTHER_IP, "Firefox", f"burst from {OTHER_IP}"):
        assert others in remaining, others
    with duckdb.connect(str(store_db), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM store.user_activities").fetchone() == (3,)
        ((customer_id, changed),) = conn.execute(
            "SELECT customer_id, rows_changed FROM ops.forgotten_customers"
        ).fetchall()
    assert customer_id == 320
    assert json.loads(changed) == {
        "store.customers": 1,
        "store.user_activities": 2,
        "detections.anomalies": 1,
        "detections.consolidated_anomalies": 1,
        "detections.incidents": 1,
    }
    with duckdb.connect(str(store_db), read_only=True) as conn:
        assert conn.execute("SELECT ip_addresses FROM detections.incidents ORDER BY incident_id").fetchall() == [
            (["192.0.2.1"],),
            ([OTHER_IP],),
        ]


def test_forget_of_an_unknown_customer_changes_nothing_and_says_so(store_db):
    before = every_text(store_db)

    result = CliRunner().invoke(main, ["forget", "--customer", "999", "--db", str(store_db)])

    assert result.exit_code == 1
    assert "no customer 999" in result.output
    assert every_text(store_db) == before
