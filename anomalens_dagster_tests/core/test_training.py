"""The training window and its reproducible sample, on a tiny order-feature table."""

import datetime as dt

import duckdb
import pandas as pd
import pytest

from anomalens_dagster.core.features import ORDER_FEATURE_COLUMNS
from anomalens_dagster.core.training import (
    ENTITY_FEATURES,
    NoTrainingDataError,
    load_feature_sample,
    load_training_frame,
)

ORDERS = ENTITY_FEATURES["order"]


@pytest.fixture
def conn():
    """Ten orders a day from 2026-03-01 to 2026-03-05 (ids 1..50)."""
    connection = duckdb.connect()
    times = [dt.datetime(2026, 3, 1) + dt.timedelta(days=day, hours=order) for day in range(5) for order in range(10)]
    frame = pd.DataFrame({"id": range(1, 51), "created_at": times, **{column: 1.0 for column in ORDER_FEATURE_COLUMNS}})
    connection.execute("CREATE SCHEMA features")
    connection.register("frame", frame)
    connection.execute("CREATE TABLE features.order_features AS SELECT * FROM frame")
    return connection


def test_the_window_is_the_last_whole_days_ending_with_the_latest_day(conn):
    training = load_training_frame(conn, ORDERS, training_days=2, max_rows=1_000, seed=0)

    assert (training.start, training.end) == (dt.datetime(2026, 3, 4), dt.datetime(2026, 3, 6))
    assert training.rows_in_window == 20
    assert sorted(training.frame["id"]) == list(range(31, 51))


def test_the_sample_is_reproducible_for_a_seed_and_changes_with_it(conn):
    first = load_training_frame(conn, ORDERS, training_days=5, max_rows=7, seed=1).frame["id"].tolist()
    again = load_training_frame(conn, ORDERS, training_days=5, max_rows=7, seed=1).frame["id"].tolist()
    other = load_training_frame(conn, ORDERS, training_days=5, max_rows=7, seed=2).frame["id"].tolist()

    assert len(first) == 7 and first == again and first == sorted(first)
    assert other != first


def test_training_without_features_says_what_to_materialise():
    with pytest.raises(NoTrainingDataError, match="materialise order_features"):
        load_training_frame(duckdb.connect(), ORDERS, training_days=5, max_rows=10, seed=0)


def test_rows_without_a_detector_feature_are_never_trained_on_and_are_counted(conn):
    # As after a migration added the feature: the first two days were stored before it existed.
    conn.execute("UPDATE features.order_features SET amount_to_items_log_ratio = NULL WHERE id <= 20")

    training = load_training_frame(conn, ORDERS, training_days=5, max_rows=1_000, seed=0)

    assert sorted(training.frame["id"]) == list(range(21, 51))
    assert (training.rows_in_window, training.rows_missing_features) == (30, 20)


def test_a_window_where_every_row_misses_a_detector_feature_says_to_rebuild(conn):
    conn.execute("UPDATE features.order_features SET amount_to_items_log_ratio = NULL")

    with pytest.raises(NoTrainingDataError, match="50 rows miss some.*anomalens rebuild order_features"):
        load_training_frame(conn, ORDERS, training_days=5, max_rows=1_000, seed=0)


def test_held_out_days_are_left_out_of_the_window_which_ends_before_them(conn):
    training = load_training_frame(conn, ORDERS, training_days=2, max_rows=1_000, seed=0, holdout_days=2)

    assert (training.start, training.end) == (dt.datetime(2026, 3, 2), dt.datetime(2026, 3, 4))
    assert sorted(training.frame["id"]) == list(range(11, 31))


def test_holding_out_every_day_says_which_setting_to_lower(conn):
    with pytest.raises(NoTrainingDataError, match="within the 5 held-out day.*lower training.holdout_days"):
        load_training_frame(conn, ORDERS, training_days=30, max_rows=1_000, seed=0, holdout_days=5)


def add_anomaly_records(conn, records):
    """detections.anomalies with (entity_type, entity_id, detector_name, severity) rows."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS detections")
    conn.execute(
        "CREATE TABLE detections.anomalies (entity_type VARCHAR, entity_id BIGINT, detector_name VARCHAR, "
        "severity VARCHAR)"
    )
    conn.executemany("INSERT INTO detections.anomalies VALUES (?, ?, ?, ?)", records)


def test_rows_any_detector_flagged_high_are_left_out_once_and_counted(conn):
    add_anomaly_records(
        conn,
        [
            ("order", 41, "ensemble", "High"),
            ("order", 41, "zscore", "High"),  # the same row: left out once
            ("order", 42, "ensemble", "Medium"),  # not sure enough to leave out
            ("order", 43, "dbscan", "High"),  # one detector's High is enough
            ("activity", 44, "ensemble", "High"),  # another entity type's id
            ("order", 5, "ensemble", "High"),  # outside the window
        ],
    )

    training = load_training_frame(conn, ORDERS, training_days=1, max_rows=1_000, seed=0)

    assert sorted(training.frame["id"]) == [42, *range(44, 51)]
    assert training.rows_excluded == {"flagged_high": 2}
    assert training.rows_in_window == 8
    assert training.exclusion_metrics() == {"excluded_flagged_high": 2}


def test_confirmed_anomalies_are_left_out_once_the_feedback_view_exists(conn):
    add_anomaly_records(conn, [("order", 41, "ensemble", "High")])
    conn.execute("CREATE SCHEMA ops")
    conn.execute("CREATE TABLE ops.analyst_feedback (entity_type VARCHAR, entity_id BIGINT, verdict VARCHAR)")
    conn.execute(
        "INSERT INTO ops.analyst_feedback VALUES ('order', 41, 'confirm'), ('order', 45, 'confirm'), "
        "('order', 46, 'dismiss'), ('activity', 47, 'confirm')"
    )
    conn.execute(
        "CREATE VIEW ops.confirmed_anomalies AS SELECT entity_type, entity_id FROM ops.analyst_feedback "
        "WHERE verdict = 'confirm'"
    )

    training = load_training_frame(conn, ORDERS, training_days=1, max_rows=1_000, seed=0)

    assert sorted(training.frame["id"]) == [42, 43, 44, 46, 47, 48, 49, 50]
    assert training.rows_excluded == {"flagged_high": 1, "confirmed_anomaly": 2}


def test_scoring_reads_every_row_whatever_was_flagged(conn):
    add_anomaly_records(conn, [("order", 41, "ensemble", "High")])

    day = load_feature_sample(conn, ORDERS, dt.datetime(2026, 3, 5), dt.datetime(2026, 3, 6))

    assert sorted(day.frame["id"]) == list(range(41, 51))
    assert day.rows_excluded == {}
