"""Tier-1 tests of the feature core: tiny hand-built store tables in an in-memory DuckDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from anomalens_dagster.core.features import (
    ACTIVITY_CATEGORICAL_COLUMNS,
    ACTIVITY_COLUMNS,
    ACTIVITY_DTYPES,
    ACTIVITY_FEATURE_COLUMNS,
    ACTIVITY_REQUIRED_FEATURE_COLUMNS,
    NEAREST_ACTIVITY_CAP_SECONDS,
    ORDER_COLUMNS,
    ORDER_DTYPES,
    ORDER_FEATURE_COLUMNS,
    compute_activity_features,
    compute_day_summaries,
    compute_order_features,
    iter_activity_features,
    replace_day_summaries,
    write_day_summaries,
)

STORE_DDL = """
CREATE SCHEMA store;
CREATE TABLE store.user_activities (
    id BIGINT, customer_id BIGINT, session_id VARCHAR, "timestamp" TIMESTAMP, action_type VARCHAR,
    details JSON, ip_address VARCHAR, user_agent VARCHAR, source VARCHAR
);
CREATE TABLE store.orders (
    id BIGINT, customer_id BIGINT, created_at TIMESTAMP, total_amount DOUBLE, status VARCHAR,
    source VARCHAR
);
CREATE TABLE store.order_items (
    id BIGINT, order_id BIGINT, product_id BIGINT, quantity BIGINT, price DOUBLE, source VARCHAR
);
CREATE TABLE store.customers (
    id BIGINT, email VARCHAR, first_name VARCHAR, last_name VARCHAR, created_at TIMESTAMP
);
"""

MONDAY = datetime(2026, 1, 5)
TUESDAY = MONDAY + timedelta(days=1)
DAY = timedelta(days=1)
_NO_DETAILS = object()


@pytest.fixture
def conn():
    connection = duckdb.connect()
    connection.execute(STORE_DDL)
    # The baselines' summary tables, empty: tests of the window features need no history of days.
    replace_day_summaries(connection, compute_day_summaries(connection, MONDAY, MONDAY), MONDAY, MONDAY)
    yield connection
    connection.close()


def act(
    id_: int,
    at: datetime,
    ip: str | None = "10.0.0.1",
    action: str = "view_page",
    details=_NO_DETAILS,
    customer: int | None = 1,
    session: str | None = "s1",
) -> dict:
    """One user_activities row; `details` is a dict (dumped), raw JSON text, or None for NULL."""
    if details is _NO_DETAILS:
        details = {"url": "/"}
    return {
        "id": id_,
        "customer_id": customer,
        "session_id": session,
        "timestamp": at,
        "action_type": action,
        "details": json.dumps(details) if isinstance(details, dict) else details,
        "ip_address": ip,
    }


def load_activities(conn: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows).astype(
        {
            "id": "int64",
            "customer_id": "Int64",
            "session_id": "str",
            "timestamp": "datetime64[us]",
            "action_type": "str",
            "details": "str",
            "ip_address": "str",
        }
    )
    conn.register("new_activities", frame)
    conn.execute(
        """
        INSERT INTO store.user_activities
        SELECT id, customer_id, session_id, "timestamp", action_type, details::JSON, ip_address,
               'pytest-agent', 'test'
        FROM new_activities
        """
    )
    conn.unregister("new_activities")


def features_by_id(conn, start: datetime, end: datetime) -> pd.DataFrame:
    return compute_activity_features(conn, start, end).set_index("id")


def column(frame: pd.DataFrame, name: str) -> dict:
    return frame[name].to_dict()


# --- Required activity features ------------------------------------------------------------------


def test_anonymous_activities_get_customer_id_minus_one(conn):
    load_activities(conn, [act(1, MONDAY, customer=None), act(2, MONDAY, customer=42)])
    assert column(features_by_id(conn, MONDAY, TUESDAY), "customer_id") == {1: -1, 2: 42}


def test_hour_and_day_of_week_come_from_the_utc_timestamp_with_monday_as_zero(conn):
    load_activities(
        conn,
        [act(1, MONDAY + timedelta(hours=13, minutes=59)), act(2, MONDAY - timedelta(minutes=1))],
    )
    frame = features_by_id(conn, MONDAY - DAY, TUESDAY)
    assert column(frame, "timestamp_hour") == {1: 13, 2: 23}
    assert column(frame, "timestamp_dayofweek") == {1: 0, 2: 6}


def test_details_numbers_are_read_and_missing_or_non_numeric_values_become_zero(conn):
    rows = [
        act(1, MONDAY, action="purchase", details={"order_total": 123.45, "order_id": 9}),
        act(2, MONDAY, action="add_to_cart", details={"product_id": 3, "quantity": 2}),
        act(3, MONDAY, action="purchase", details={"order_total": "99.5"}),
        act(4, MONDAY, action="purchase", details={"order_total": "abc", "quantity": True}),
        act(5, MONDAY, action="purchase", details={"order_total": None, "quantity": {"n": 1}}),
        act(6, MONDAY, action="purchase", details={"order_total": "NaN", "quantity": "Infinity"}),
        act(7, MONDAY, action="purchase", details='{"order_total": 1e400, "quantity": [2]}'),
        act(8, MONDAY, action="logout", details=None),
        act(9, MONDAY, action="logout", details='"just text"'),
        act(10, MONDAY, action="view_page", details={}),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    assert column(frame, "details_order_total") == {
        1: 123.45, 2: 0.0, 3: 99.5, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.0, 8: 0.0, 9: 0.0, 10: 0.0
    }  # fmt: skip
    assert column(frame, "details_quantity") == {
        1: 0.0, 2: 2.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.0, 7: 0.0, 8: 0.0, 9: 0.0, 10: 0.0
    }  # fmt: skip


def test_time_since_last_activity_is_zero_for_an_ips_first_action_and_per_ip_otherwise(conn):
    t = MONDAY + timedelta(hours=10)
    rows = [
        act(1, t, ip="1.1.1.1"),
        act(2, t + timedelta(seconds=20), ip="2.2.2.2"),
        act(3, t + timedelta(seconds=90), ip="1.1.1.1"),
        act(4, t + timedelta(seconds=90, milliseconds=500), ip="1.1.1.1"),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    assert column(frame, "time_since_last_activity_ip") == {1: 0.0, 2: 0.0, 3: 90.0, 4: 0.5}


def test_an_action_exactly_five_minutes_before_is_outside_the_last_5min_window(conn):
    t = MONDAY + timedelta(hours=10)
    rows = [
        act(1, t),
        act(2, t + timedelta(minutes=4, seconds=59)),
        act(3, t + timedelta(minutes=5)),
        act(4, t + timedelta(minutes=9, seconds=59, microseconds=999_999)),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    # 2 sees 1 (4:59 before); 3 misses 1 (exactly 5:00 before); 4 sees 3 (4:59.999999 before).
    assert column(frame, "actions_in_last_5min_ip") == {1: 1, 2: 2, 3: 2, 4: 2}
    assert column(frame, "time_since_last_activity_ip") == {
        1: 0.0, 2: 299.0, 3: 1.0, 4: 299.999999
    }  # fmt: skip


def test_failed_logins_exactly_fifteen_minutes_before_are_outside_the_window(conn):
    t = MONDAY + timedelta(hours=10)
    rows = [
        act(11, t, action="failed_login", details={"success": False, "attempted_email": "a@x"}),
        act(12, t + timedelta(minutes=1), action="failed_login", details={"success": False}),
        act(13, t + timedelta(minutes=14, seconds=59)),
        act(14, t + timedelta(minutes=15)),
        act(15, t + timedelta(minutes=16), action="failed_login", details={"success": False}),
        act(16, t + timedelta(minutes=1), ip="9.9.9.9", action="failed_login"),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    # 13 sees both; 14 misses 11 (15:00 before); 15 misses 12 and counts itself; 16 is another IP.
    assert column(frame, "failed_logins_in_last_15min_ip") == {
        11: 1, 12: 2, 13: 2, 14: 1, 15: 1, 16: 1
    }  # fmt: skip
    assert column(frame, "actions_in_last_5min_ip") == {11: 1, 12: 2, 13: 1, 14: 2, 15: 3, 16: 1}


def test_ties_on_one_ip_are_ordered_by_id_and_count_each_other_in_windows(conn):
    t = MONDAY + timedelta(hours=10)
    rows = [
        act(21, t),
        act(23, t + timedelta(seconds=30)),  # inserted before its lower-id twin on purpose
        act(22, t + timedelta(seconds=30)),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    assert column(frame, "time_since_last_activity_ip") == {21: 0.0, 22: 30.0, 23: 0.0}
    assert column(frame, "actions_in_last_5min_ip") == {21: 1, 22: 3, 23: 3}
    assert column(frame, "seconds_to_nearest_activity_ip") == {21: 30.0, 22: 0.0, 23: 0.0}


def test_windows_and_time_since_last_reach_into_the_previous_day(conn):
    rows = [
        act(30, TUESDAY - timedelta(minutes=10), action="failed_login"),
        act(31, TUESDAY - timedelta(minutes=1)),
        act(32, TUESDAY - timedelta(seconds=30)),
        act(33, TUESDAY + timedelta(minutes=2)),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, TUESDAY, TUESDAY + DAY)
    assert list(frame.index) == [33]
    assert frame.loc[33, "time_since_last_activity_ip"] == 150.0
    assert frame.loc[33, "actions_in_last_5min_ip"] == 3
    assert frame.loc[33, "failed_logins_in_last_15min_ip"] == 1


def test_time_since_last_activity_measures_to_the_ips_last_action_on_any_earlier_day(conn):
    rows = [
        act(40, MONDAY - timedelta(days=2) + timedelta(hours=10), ip="5.5.5.5"),
        act(41, TUESDAY + timedelta(hours=9), ip="5.5.5.5"),
        act(42, TUESDAY + timedelta(hours=9), ip="6.6.6.6"),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, TUESDAY, TUESDAY + DAY)
    assert column(frame, "time_since_last_activity_ip") == {41: 71 * 3600.0, 42: 0.0}


def test_only_rows_in_the_half_open_range_are_returned_in_time_order(conn):
    rows = [
        act(3, TUESDAY),
        act(1, MONDAY + timedelta(hours=5)),
        act(2, MONDAY),
        act(4, MONDAY - timedelta(microseconds=1)),
    ]
    load_activities(conn, rows)
    assert list(compute_activity_features(conn, MONDAY, TUESDAY)["id"]) == [2, 1]


def test_an_empty_day_gives_an_empty_frame_with_the_feature_columns_and_dtypes(conn):
    load_activities(conn, [act(1, MONDAY)])
    frame = compute_activity_features(conn, TUESDAY, TUESDAY + DAY)
    assert frame.empty
    assert tuple(frame.columns) == ACTIVITY_COLUMNS
    assert frame.dtypes.astype(str).to_dict() == ACTIVITY_DTYPES


def test_an_empty_store_gives_an_empty_frame_with_the_feature_dtypes(conn):
    frame = compute_activity_features(conn, MONDAY, TUESDAY)
    assert frame.empty
    assert frame.dtypes.astype(str).to_dict() == ACTIVITY_DTYPES


def test_a_day_with_a_single_event_gets_first_action_values(conn):
    load_activities(conn, [act(7, MONDAY + timedelta(hours=3), action="login", session=None)])
    row = compute_activity_features(conn, MONDAY, TUESDAY).set_index("id").loc[7]
    assert row["time_since_last_activity_ip"] == 0.0
    assert row["actions_in_last_5min_ip"] == 1
    assert row["failed_logins_in_last_15min_ip"] == 0
    assert row["actions_within_30s_ip"] == 1
    assert row["identical_actions_within_60s_ip"] == 1
    assert row["identical_actions_within_10s_ip"] == 1
    assert row["failed_logins_within_15min_ip"] == 0
    assert row["seconds_to_nearest_activity_ip"] == NEAREST_ACTIVITY_CAP_SECONDS
    assert (row["session_action_count"], row["session_distinct_action_types"]) == (1, 1)
    assert row["session_duration_seconds"] == 0.0
    assert row["action_type"] == "login"


def test_actions_without_an_ip_are_each_alone(conn):
    rows = [act(1, MONDAY, ip=None), act(2, MONDAY, ip=None), act(3, MONDAY, ip="1.2.3.4")]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    assert column(frame, "actions_in_last_5min_ip") == {1: 1, 2: 1, 3: 1}
    assert column(frame, "seconds_to_nearest_activity_ip") == {1: 300.0, 2: 300.0, 3: 300.0}
    assert column(frame, "time_since_last_activity_ip") == {1: 0.0, 2: 0.0, 3: 0.0}


def test_action_type_is_kept_as_text_and_listed_as_the_categorical_column(conn):
    load_activities(conn, [act(1, MONDAY, action="search", details={"query": "shoes"})])
    frame = compute_activity_features(conn, MONDAY, TUESDAY)
    assert ACTIVITY_CATEGORICAL_COLUMNS == ("action_type",)
    assert frame["action_type"].tolist() == ["search"]
    assert set(ACTIVITY_REQUIRED_FEATURE_COLUMNS) <= set(ACTIVITY_FEATURE_COLUMNS)
    assert "action_type" not in ACTIVITY_FEATURE_COLUMNS


# --- Extra activity features ---------------------------------------------------------------------


def test_every_row_of_a_burst_of_identical_actions_sees_the_whole_burst(conn):
    t = MONDAY + timedelta(hours=12)
    burst = [
        act(50 + k, t + timedelta(seconds=k), action="view_product", details={"product_id": 7}) for k in range(1, 7)
    ]
    rows = burst + [
        act(57, t + timedelta(seconds=11), action="view_product", details={"product_id": 8}),
        act(58, t + timedelta(seconds=121), action="search", details={"query": "x"}),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    assert column(frame, "identical_actions_within_60s_ip") == {
        51: 6, 52: 6, 53: 6, 54: 6, 55: 6, 56: 6, 57: 1, 58: 1
    }  # fmt: skip
    assert column(frame, "actions_within_30s_ip") == {
        51: 7, 52: 7, 53: 7, 54: 7, 55: 7, 56: 7, 57: 7, 58: 1
    }  # fmt: skip
    assert column(frame, "seconds_to_nearest_activity_ip") == {
        51: 1.0, 52: 1.0, 53: 1.0, 54: 1.0, 55: 1.0, 56: 1.0, 57: 5.0, 58: 110.0
    }  # fmt: skip


def test_every_row_of_a_failed_login_run_sees_the_whole_run(conn):
    t = MONDAY + timedelta(hours=12)
    same_email = {"success": False, "attempted_email": "victim@x"}
    run = [act(61 + k, t + timedelta(seconds=3 * k), "7.7.7.7", "failed_login", same_email) for k in range(5)]  # fmt: skip
    rows = run + [
        act(68, t + timedelta(seconds=20), "7.7.7.7", "failed_login", {"attempted_email": "b@x"}),
        act(66, t + timedelta(minutes=14), "7.7.7.7"),
        act(67, t + timedelta(minutes=16), "7.7.7.7"),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    assert column(frame, "failed_logins_in_last_15min_ip") == {
        61: 1, 62: 2, 63: 3, 64: 4, 65: 5, 68: 6, 66: 6, 67: 0
    }  # fmt: skip
    assert column(frame, "failed_logins_within_15min_ip") == {
        61: 6, 62: 6, 63: 6, 64: 6, 65: 6, 68: 6, 66: 6, 67: 0
    }  # fmt: skip
    assert column(frame, "identical_actions_within_60s_ip") == {
        61: 5, 62: 5, 63: 5, 64: 5, 65: 5, 68: 1, 66: 1, 67: 1
    }  # fmt: skip
    assert column(frame, "identical_actions_within_10s_ip") == {
        61: 4, 62: 5, 63: 5, 64: 5, 65: 4, 68: 1, 66: 1, 67: 1
    }  # fmt: skip


def test_the_10s_count_tells_the_smallest_bursts_from_a_shopper_repeating_an_action(conn):
    t = MONDAY + timedelta(hours=12)
    product = {"product_id": 7}
    # The simulator's smallest, slowest burst: 5 identical actions 3 s apart ...
    burst = [act(1 + k, t + timedelta(seconds=3 * k), "1.1.1.1", "view_product", product) for k in range(5)]
    # ... and someone viewing one product again and again, 16 s apart.
    shopper = [act(11 + k, t + timedelta(seconds=16 * k), "2.2.2.2", "view_product", product) for k in range(5)]
    load_activities(conn, burst + shopper)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    assert column(frame, "identical_actions_within_60s_ip") == {
        1: 5, 2: 5, 3: 5, 4: 5, 5: 5, 11: 4, 12: 5, 13: 5, 14: 5, 15: 4
    }  # fmt: skip
    assert column(frame, "identical_actions_within_10s_ip") == {
        1: 4, 2: 5, 3: 5, 4: 5, 5: 4, 11: 1, 12: 1, 13: 1, 14: 1, 15: 1
    }  # fmt: skip


def test_session_features_cover_the_whole_session_across_midnight(conn):
    rows = [
        act(1, TUESDAY - timedelta(minutes=2), session="long", action="view_page"),
        act(2, TUESDAY - timedelta(minutes=1), session="long", action="search"),
        act(3, TUESDAY + timedelta(minutes=1), session="long", action="add_to_cart"),
        act(4, TUESDAY + timedelta(minutes=1), session="short", action="view_page", ip="3.3.3.3"),
        act(5, TUESDAY + timedelta(hours=1), session=None, action="view_page", ip="4.4.4.4"),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, TUESDAY, TUESDAY + DAY)
    assert column(frame, "session_action_count") == {3: 3, 4: 1, 5: 1}
    assert column(frame, "session_distinct_action_types") == {3: 3, 4: 1, 5: 1}
    assert column(frame, "session_duration_seconds") == {3: 180.0, 4: 0.0, 5: 0.0}


def test_action_types_outside_the_vocabulary_count_as_one_other_type_in_a_session(conn):
    rows = [
        act(1, MONDAY, session="odd", action="view_page"),
        act(2, MONDAY + timedelta(seconds=5), session="odd", action="teleport"),
        act(3, MONDAY + timedelta(seconds=9), session="odd", action="levitate"),
    ]
    load_activities(conn, rows)
    frame = features_by_id(conn, MONDAY, TUESDAY)
    assert column(frame, "session_distinct_action_types") == {1: 2, 2: 2, 3: 2}
    assert column(frame, "action_type") == {1: "view_page", 2: "teleport", 3: "levitate"}


# --- Whole history vs one day --------------------------------------------------------------------


def synthetic_activities(seed: int, days: int = 3) -> list[dict]:
    """Seeded store days: normal sessions, bursts and failed-login runs, some across midnight."""
    rng = np.random.default_rng(seed)
    ips = [f"10.0.0.{k}" for k in range(12)] + [None]
    rows: list[dict] = []

    def add(at: datetime, ip, action: str, details: dict, session: str) -> None:
        customer = None if rng.random() < 0.3 else int(rng.integers(1, 20))
        rows.append(act(len(rows) + 1, at, ip, action, details, customer, session))

    for day in range(days):
        midnight = MONDAY + day * DAY
        for session in range(40):
            ip = ips[rng.integers(len(ips))]
            # A coarse grid makes exact 5- and 15-minute distances and same-timestamp ties common.
            at = midnight + timedelta(seconds=30 * int(rng.integers(0, 2880)))
            for _ in range(int(rng.integers(1, 8))):
                action = str(rng.choice(["view_page", "view_product", "add_to_cart", "purchase"]))
                details = {"product_id": int(rng.integers(1, 4)), "quantity": int(rng.integers(1, 3)), "order_total": float(rng.integers(1, 500))}  # fmt: skip
                add(at, ip, action, details, f"d{day}s{session}")
                at += timedelta(seconds=30 * int(rng.integers(0, 12)))
        # A burst and a failed-login run straddling the next midnight, plus one just after it.
        burst_at = midnight + DAY - timedelta(seconds=int(rng.integers(1, 8)))
        for k in range(int(rng.integers(5, 16))):
            at = burst_at + timedelta(milliseconds=700 * k)
            add(at, "10.0.0.1", "view_product", {"product_id": 2}, f"burst{day}")
        run_at = midnight + DAY - timedelta(seconds=int(rng.integers(5, 40)))
        for k in range(int(rng.integers(5, 21))):
            details = {"success": False, "attempted_email": "victim@example.com"}
            add(run_at + timedelta(seconds=3 * k), "10.0.0.2", "failed_login", details, f"run{day}")
        add(midnight + DAY + timedelta(minutes=2), "10.0.0.2", "login", {"success": True}, "x")
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_day_computed_alone_equals_the_same_rows_computed_over_the_whole_history(conn, seed):
    load_activities(conn, synthetic_activities(seed))
    write_day_summaries(conn, MONDAY - DAY, MONDAY + 5 * DAY)
    history = compute_activity_features(conn, MONDAY - DAY, MONDAY + 5 * DAY)
    for day in range(4):
        start = MONDAY + day * DAY
        alone = compute_activity_features(conn, start, start + DAY)
        same_rows = history[(history["timestamp"] >= start) & (history["timestamp"] < start + DAY)]
        assert len(alone) > 0
        pd.testing.assert_frame_equal(alone, same_rows.reset_index(drop=True))


def test_chunks_of_a_long_range_hold_exactly_the_rows_and_values_of_one_pass(conn):
    load_activities(conn, synthetic_activities(seed=6))
    whole = compute_activity_features(conn, MONDAY, MONDAY + 4 * DAY)
    chunks = list(iter_activity_features(conn, MONDAY, MONDAY + 4 * DAY, chunk_rows=40))
    assert len(chunks) > 10
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_computing_features_leaves_nothing_registered_on_the_connection(conn):
    load_activities(conn, [act(1, MONDAY)])
    before = conn.sql("SHOW ALL TABLES").fetchall()
    compute_activity_features(conn, MONDAY, TUESDAY)
    assert conn.sql("SHOW ALL TABLES").fetchall() == before


def test_a_chunk_size_below_one_row_is_refused(conn):
    with pytest.raises(ValueError, match="chunk_rows"):
        next(iter_activity_features(conn, MONDAY, TUESDAY, chunk_rows=0))


def test_synthetic_history_features_are_finite_and_flag_every_burst_row(conn):
    rows = synthetic_activities(seed=4)
    load_activities(conn, rows)
    frame = compute_activity_features(conn, MONDAY, MONDAY + 4 * DAY)
    numeric = frame[list(ACTIVITY_FEATURE_COLUMNS)].to_numpy(dtype=float)
    assert np.isfinite(numeric).all()
    bursts = frame["id"].isin([row["id"] for row in rows if row["session_id"].startswith("burst")])
    assert bursts.sum() >= 15
    assert (frame.loc[bursts, "identical_actions_within_60s_ip"] >= 5).all()
    assert (frame.loc[bursts, "identical_actions_within_10s_ip"] >= 5).all()
    runs = frame["id"].isin([row["id"] for row in rows if row["session_id"].startswith("run")])
    assert (frame.loc[runs, "failed_logins_within_15min_ip"] >= 5).all()


def brute_force_window_features(rows: list[dict]) -> pd.DataFrame:
    """The windowed features straight from their definitions, over every pair of rows."""
    us = 1_000_000
    frame = pd.DataFrame(rows)
    ids = frame["id"].to_numpy()
    t = frame["timestamp"].astype("datetime64[us]").astype("int64").to_numpy()
    details = frame["details"].map(lambda text: json.loads(text) if text else {})
    keys = ("product_id", "query", "attempted_email", "url")
    target = details.map(lambda d: next((str(d[k]) for k in keys if d.get(k) is not None), "-"))
    ip = frame["ip_address"].fillna("").to_numpy()
    action = frame["action_type"].to_numpy()
    failed = (action == "failed_login")[None, :]
    itself = ids[:, None] == ids[None, :]
    # Row i's view of row j: same IP (an action without IP shares it with nobody else) ...
    same_ip = ((ip[:, None] == ip[None, :]) & (ip[:, None] != "")) | itself
    dt = t[None, :] - t[:, None]  # ... and how long after row i row j happened.
    earlier = same_ip & ((dt < 0) | ((dt == 0) & (ids[None, :] < ids[:, None])))
    identical = (
        same_ip & (action[:, None] == action[None, :]) & (target.to_numpy()[:, None] == target.to_numpy()[None, :])
    )
    last_earlier = np.where(earlier, t[None, :], np.iinfo(np.int64).min).max(axis=1)
    nearest = np.where(same_ip & ~itself, np.abs(dt), 300 * us).min(axis=1)
    return pd.DataFrame(
        {
            "time_since_last_activity_ip": np.where(earlier.any(axis=1), t - last_earlier, 0) / us,
            "actions_in_last_5min_ip": (same_ip & (dt > -300 * us) & (dt <= 0)).sum(axis=1),
            "failed_logins_in_last_15min_ip": (same_ip & failed & (dt > -900 * us) & (dt <= 0)).sum(axis=1),
            "actions_within_30s_ip": (same_ip & (np.abs(dt) <= 30 * us)).sum(axis=1),
            "identical_actions_within_60s_ip": (identical & (np.abs(dt) <= 60 * us)).sum(axis=1),
            "identical_actions_within_10s_ip": (identical & (np.abs(dt) <= 10 * us)).sum(axis=1),
            "failed_logins_within_15min_ip": (same_ip & failed & (np.abs(dt) <= 900 * us)).sum(axis=1),
            "seconds_to_nearest_activity_ip": nearest / us,
        },
        index=ids,
    )


def test_window_features_match_their_pairwise_definitions_on_synthetic_history(conn):
    rows = synthetic_activities(seed=5, days=2)
    load_activities(conn, rows)
    frame = compute_activity_features(conn, MONDAY, MONDAY + 3 * DAY).set_index("id")
    expected = brute_force_window_features(rows)
    assert len(frame) == len(rows)
    pd.testing.assert_frame_equal(frame[list(expected.columns)].sort_index(), expected.sort_index(), check_names=False)


# --- Range arguments -----------------------------------------------------------------------------


def test_timezone_aware_bounds_are_read_as_utc(conn):
    load_activities(conn, [act(1, MONDAY + timedelta(hours=1)), act(2, MONDAY + timedelta(hours=3))])
    plus_two = timezone(timedelta(hours=2))
    start = (MONDAY + timedelta(hours=2)).replace(tzinfo=UTC).astimezone(plus_two)
    frame = compute_activity_features(conn, start, (TUESDAY).replace(tzinfo=UTC))
    assert frame["id"].tolist() == [2]


def test_a_range_that_ends_before_it_starts_is_refused(conn):
    with pytest.raises(ValueError, match="starts after it ends"):
        compute_activity_features(conn, TUESDAY, MONDAY)


# --- Order features ------------------------------------------------------------------------------


def load_orders(conn, orders: list[tuple], items: list[tuple]) -> None:
    """orders: (id, customer_id, created_at, total_amount); items: (id, order_id, quantity, price)."""
    for order in orders:
        conn.execute("INSERT INTO store.orders VALUES (?, ?, ?, ?, 'pending', 'test')", order)
    for item in items:
        conn.execute("INSERT INTO store.order_items VALUES (?, ?, 1, ?, ?, 'test')", item)


def test_order_features_are_computed_from_the_order_and_its_items(conn):
    load_orders(
        conn,
        orders=[(1, 10, MONDAY + timedelta(hours=14, minutes=30), 55.0)],
        items=[(1, 1, 2, 10.0), (2, 1, 1, 25.0)],
    )
    row = compute_order_features(conn, MONDAY, TUESDAY).set_index("id").loc[1]
    assert row["total_amount"] == 55.0
    assert row["item_count"] == 2
    assert row["total_quantity"] == 3
    assert row["hour_of_day"] == 14
    assert row["day_of_week"] == 0
    assert row["items_total"] == 45.0
    assert row["amount_to_items_ratio"] == pytest.approx(55.0 / 45.0)
    assert row["amount_to_items_log_ratio"] == pytest.approx(np.log(55.0 / 45.0))


def test_the_log_ratio_puts_a_tenth_and_ten_times_the_items_price_equally_far_out(conn):
    load_orders(
        conn,
        orders=[(5, 10, MONDAY, 4.5), (6, 10, MONDAY, 450.0), (7, 10, MONDAY, 0.0)],
        items=[(1, 5, 1, 45.0), (2, 6, 1, 45.0), (3, 7, 1, 45.0)],
    )
    log_ratio = column(compute_order_features(conn, MONDAY, TUESDAY).set_index("id"), "amount_to_items_log_ratio")
    assert log_ratio[5] == pytest.approx(-np.log(10.0))
    assert log_ratio[6] == pytest.approx(np.log(10.0))
    assert log_ratio[7] == 0.0  # nothing charged: no logarithm to take


def test_a_purchase_compares_its_charged_total_with_its_orders_items(conn):
    load_orders(conn, orders=[(8, 1, MONDAY, 5.0)], items=[(1, 8, 2, 25.0)])
    load_activities(
        conn,
        [
            act(1, MONDAY + timedelta(minutes=1), action="purchase", details={"order_total": 5.0, "order_id": 8}),
            act(2, MONDAY + timedelta(minutes=2), action="purchase", details={"order_total": 5.0, "order_id": 999}),
            act(3, MONDAY + timedelta(minutes=3), action="view_page", details={"order_total": 5.0, "order_id": 8}),
        ],
    )
    log_ratio = column(features_by_id(conn, MONDAY, TUESDAY), "purchase_amount_to_items_log_ratio")
    # Order 8's items cost 2 x 25 = 50, so 5 charged is a tenth; an unknown order and a non-purchase give 0.
    assert log_ratio == {1: pytest.approx(-np.log(10.0)), 2: 0.0, 3: 0.0}


def test_an_order_without_items_has_zero_items_total_and_ratio(conn):
    load_orders(conn, orders=[(2, 10, TUESDAY + timedelta(hours=9), 80.0)], items=[])
    row = compute_order_features(conn, TUESDAY, TUESDAY + DAY).set_index("id").loc[2]
    assert (row["item_count"], row["total_quantity"]) == (0, 0)
    assert (row["items_total"], row["amount_to_items_ratio"]) == (0.0, 0.0)
    assert row["day_of_week"] == 1


def test_missing_or_non_finite_amounts_prices_and_quantities_count_as_zero(conn):
    load_orders(
        conn,
        orders=[(3, 10, MONDAY, float("nan")), (4, None, MONDAY, None)],
        items=[(1, 3, 2, float("inf")), (2, 3, None, 5.0), (3, 3, 1, 4.0), (4, 4, 1, 7.0)],
    )
    frame = compute_order_features(conn, MONDAY, TUESDAY).set_index("id")
    assert column(frame, "total_amount") == {3: 0.0, 4: 0.0}
    assert column(frame, "item_count") == {3: 3, 4: 1}
    assert column(frame, "total_quantity") == {3: 3, 4: 1}
    assert column(frame, "items_total") == {3: 4.0, 4: 7.0}
    assert column(frame, "amount_to_items_ratio") == {3: 0.0, 4: 0.0}
    assert np.isfinite(frame[list(ORDER_FEATURE_COLUMNS)].to_numpy(dtype=float)).all()


def test_amount_to_customer_median_ratio_compares_with_the_customers_earlier_orders(conn):
    orders = [
        (1, 20, MONDAY - timedelta(days=4), 100.0),
        (2, 20, MONDAY - timedelta(days=3), 300.0),
        (3, 20, MONDAY - timedelta(days=2), 200.0),
        (5, 20, MONDAY + timedelta(hours=1), 500.0),
        (4, 20, MONDAY + timedelta(hours=1), 50.0),  # same instant, lower id: earlier
        (6, 21, MONDAY + timedelta(hours=2), 70.0),
        (7, None, MONDAY + timedelta(hours=3), 70.0),
        (8, 20, TUESDAY + timedelta(hours=1), 999.0),  # later orders never change the past
    ]
    load_orders(conn, orders, items=[])
    frame = compute_order_features(conn, MONDAY, TUESDAY).set_index("id")
    assert column(frame, "amount_to_customer_median_ratio") == {
        4: 50.0 / 200.0, 5: 500.0 / 150.0, 6: 1.0, 7: 1.0
    }  # fmt: skip
    whole = compute_order_features(conn, MONDAY - 5 * DAY, TUESDAY + DAY).set_index("id")
    assert column(whole, "amount_to_customer_median_ratio") == {
        1: 1.0, 2: 3.0, 3: 1.0, 4: 0.25, 5: 500.0 / 150.0, 6: 1.0, 7: 1.0, 8: 999.0 / 200.0
    }  # fmt: skip


def test_an_empty_order_day_gives_an_empty_frame_with_the_order_columns_and_dtypes(conn):
    load_orders(conn, orders=[(1, 10, MONDAY, 5.0)], items=[])
    frame = compute_order_features(conn, TUESDAY, TUESDAY + DAY)
    assert frame.empty
    assert tuple(frame.columns) == ORDER_COLUMNS
    assert frame.dtypes.astype(str).to_dict() == ORDER_DTYPES
