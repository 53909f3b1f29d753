"""Tier-1 tests of the report tables on a tiny hand-built store in a DuckDB file."""

from datetime import datetime

import duckdb
import pytest

from anomalens_dagster.core.summaries import activity_timeline, anomaly_summary, store_summary
from anomalens_dagster.core.warehouse import ensure_store_tables


@pytest.fixture
def conn(db_path):
    connection = duckdb.connect(str(db_path))
    ensure_store_tables(connection)
    yield connection
    connection.close()


def test_the_store_summary_splits_simulated_and_landed_rows_and_dates_them(conn):
    conn.execute(
        """INSERT INTO store.orders VALUES
           (1, 1, '2026-03-01 10:00', 10.0, 'pending', 'simulator'),
           (2, 1, '2026-03-02 11:00', 20.0, 'pending', 'orders-2026-03-02.csv'),
           (3, 1, '2026-03-02 12:00', 30.0, 'pending', 'simulator')"""
    )
    summary = store_summary(conn).set_index("table_name")

    assert summary.loc["orders", ["rows", "simulated_rows", "landed_rows"]].tolist() == [3, 2, 1]
    assert summary.loc["orders", "first_at"] == datetime(2026, 3, 1, 10)
    assert summary.loc["orders", "last_at"] == datetime(2026, 3, 2, 12)
    assert summary.loc["products", ["rows", "landed_rows"]].tolist() == [0, 0]
    assert list(summary.index) == [
        "categories",
        "products",
        "customers",
        "orders",
        "order_items",
        "user_activities",
        "simulation_labels",
    ]


def test_the_timeline_counts_actions_per_hour_and_type_and_the_ensemble_flags(conn):
    conn.execute(
        """INSERT INTO store.user_activities VALUES
           (1, 1, 's', '2026-03-01 10:05', 'search', NULL, 'ip', 'ua', 'simulator'),
           (2, 1, 's', '2026-03-01 10:55', 'search', NULL, 'ip', 'ua', 'simulator'),
           (3, 1, 's', '2026-03-01 11:00', 'login', NULL, 'ip', 'ua', 'simulator')"""
    )
    conn.execute("CREATE SCHEMA detections")
    conn.execute(
        """CREATE TABLE detections.activity_scores AS SELECT * FROM (VALUES
           (1, 'ensemble', true), (2, 'ensemble', false), (2, 'zscore', true), (3, 'ensemble', true))
           AS t(activity_id, detector, is_anomaly)"""
    )
    timeline = activity_timeline(conn)

    assert [tuple(row) for row in timeline.itertuples(index=False)] == [
        (datetime(2026, 3, 1, 10), "search", 2, 1),
        (datetime(2026, 3, 1, 11), "login", 1, 1),
    ]


def test_the_anomaly_summary_counts_records_per_day_detector_and_severity(conn):
    assert anomaly_summary(conn).empty  # no anomalies table yet: an empty summary, not an error
    conn.execute("CREATE SCHEMA detections")
    conn.execute(
        """CREATE TABLE detections.anomalies AS SELECT * FROM (VALUES
           ('order', 'zscore', 'High', TIMESTAMP '2026-03-01 10:00'),
           ('order', 'zscore', 'High', TIMESTAMP '2026-03-01 23:59'),
           ('order', 'zscore', 'Low', TIMESTAMP '2026-03-02 00:00'))
           AS t(entity_type, detector_name, severity, event_timestamp)"""
    )
    summary = anomaly_summary(conn)

    assert [tuple(row) for row in summary.itertuples(index=False)] == [
        (datetime(2026, 3, 1), "order", "zscore", "High", 2),
        (datetime(2026, 3, 2), "order", "zscore", "Low", 1),
    ]
