"""The training window and its reproducible sample, on a tiny order-feature table."""

import datetime as dt

import duckdb
import pandas as pd
import pytest

from anomalens_dagster.core.features import ORDER_FEATURE_COLUMNS
from anomalens_dagster.core.training import ENTITY_FEATURES, NoTrainingDataError, load_training_frame

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
