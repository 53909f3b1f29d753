"""Tier-1 tests of the per-entity day summaries and the as-of baselines, with hand-computed values."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest

from anomalens_dagster.constants import DEFAULT_BASELINE_DAYS
from anomalens_dagster.core.features import (
    ACTIVITY_BASELINE_COLUMNS,
    ORDER_BASELINE_COLUMNS,
    compute_activity_features,
    compute_day_summaries,
    compute_order_features,
    unsummarised_days,
    write_day_summaries,
)
from anomalens_dagster_tests.core.test_features import STORE_DDL

DAY = timedelta(days=1)
D = datetime(2026, 1, 7)  # the day under test; earlier days are its history
HOUR = timedelta(hours=1)


@pytest.fixture
def conn():
    connection = duckdb.connect()
    connection.execute(STORE_DDL)
    yield connection
    connection.close()


def add_activities(conn, rows: list[tuple]) -> None:
    """rows: (id, at, customer_id, ip, user_agent, action_type, details dict or None)."""
    for id_, at, customer, ip, agent, action, details in rows:
        conn.execute(
            "INSERT INTO store.user_activities VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'test')",
            [
                id_,
                customer,
                f"session-{id_}",
                at,
                action,
                json.dumps(details) if details is not None else None,
                ip,
                agent,
            ],
        )


def view(id_, at, customer=1, ip="10.0.0.1", agent="agent-a", action="view_page", details=None) -> tuple:
    return (id_, at, customer, ip, agent, action, details)


def add_orders(conn, orders: list[tuple], items: list[tuple] = ()) -> None:
    """orders: (id, customer_id, created_at, total_amount); items: (id, order_id, product_id, quantity, price)."""
    for order in orders:
        conn.execute("INSERT INTO store.orders VALUES (?, ?, ?, ?, 'pending', 'test')", order)
    for item in items:
        conn.execute("INSERT INTO store.order_items VALUES (?, ?, ?, ?, ?, 'test')", item)


def summarise(conn, first: datetime, last: datetime = D) -> None:
    """Write the summaries of the days first..last (the history the features of `last` read)."""
    write_day_summaries(conn, first, last + DAY)


def activities(conn, day: datetime = D) -> pd.DataFrame:
    return compute_activity_features(conn, day, day + DAY).set_index("id")


def orders(conn, day: datetime = D) -> pd.DataFrame:
    return compute_order_features(conn, day, day + DAY).set_index("id")


# --- Day summaries --------------------------------------------------------------------------------


def test_a_day_summary_holds_the_days_sums_per_customer_ip_product_and_store(conn):
    add_orders(
        conn,
        [(1, 7, D + 6 * HOUR, math.e), (2, 7, D + 18 * HOUR, math.e**3), (3, None, D + 12 * HOUR, 0.0)],
        [(1, 1, 5, 2, 1.0), (2, 2, 5, 4, 10.0), (3, 2, 6, 0, 10.0)],
    )
    add_activities(
        conn,
        [
            view(1, D + 6 * HOUR, customer=7, ip="ip-a"),
            view(2, D + 7 * HOUR, customer=None, ip="ip-a", action="failed_login"),
            view(3, D + 8 * HOUR, customer=7, ip="ip-b", agent=None, action="login"),
        ],
    )

    summaries = {table: summary.to_pandas() for table, summary in compute_day_summaries(conn, D, D + DAY).items()}

    customer = summaries["customer_day_summaries"].set_index("customer_id").loc[7]
    assert (customer["actions"], customer["orders"], customer["priced_orders"]) == (2, 2, 2)
    assert customer["spend"] == pytest.approx(math.e + math.e**3)
    assert (customer["log_amount_sum"], customer["log_amount_sq_sum"]) == (pytest.approx(4.0), pytest.approx(10.0))
    # Events at 6:00, 18:00 (orders) and 6:00, 8:00 (activities): cos 0, 0, 0, -0.5; sin 1, -1, 1, 0.866.
    assert customer["events"] == 4
    assert customer["hour_cos_sum"] == pytest.approx(-0.5)
    assert customer["hour_sin_sum"] == pytest.approx(1 + math.sqrt(3) / 2)
    assert customer["first_seen_at"] == D + 6 * HOUR
    access = summaries["customer_access_day_summaries"]
    assert sorted(zip(access["ip_address"], access["user_agent"].fillna("-"), access["actions"], strict=True)) == [
        ("ip-a", "agent-a", 1),
        ("ip-b", "-", 1),
    ]
    ip = summaries["ip_day_summaries"].set_index("ip_address")
    assert ip.loc["ip-a", ["actions", "login_attempts", "failed_logins"]].tolist() == [2, 1, 1]
    assert ip.loc["ip-b", ["actions", "login_attempts", "failed_logins"]].tolist() == [1, 1, 0]
    product = summaries["product_day_summaries"].set_index("product_id")
    assert product.loc[5, ["lines", "quantity", "positive_lines"]].tolist() == [2, 6, 2]
    assert product.loc[5, "log_quantity_sum"] == pytest.approx(math.log(2) + math.log(4))
    assert product.loc[6, ["lines", "quantity", "positive_lines", "log_quantity_sum"]].tolist() == [1, 0, 0, 0.0]
    (store,) = summaries["store_day_summaries"].to_dict("records")
    assert (store["orders"], store["priced_orders"], store["activities"], store["positive_lines"]) == (3, 2, 3, 2)
    assert store["log_amount_sum"] == pytest.approx(4.0)
    # ln(1 + item rows): 1, 2 and 0 rows.
    assert store["log_lines_sum"] == pytest.approx(math.log(2) + math.log(3) + math.log(1))
    # Ratios e / 2 and e^3 / 40 (order 3 has no positive amount): median of their logs.
    assert store["amount_to_items_log_ratio_median"] == pytest.approx((1 - math.log(2) + 3 - math.log(40)) / 2)


def test_every_day_of_the_range_has_a_store_summary_row_an_empty_day_too(conn):
    add_orders(conn, [(1, 1, D, 5.0)])

    store = compute_day_summaries(conn, D - DAY, D + DAY)["store_day_summaries"].to_pandas()

    assert store["orders"].tolist() == [0, 1]
    assert store["amount_to_items_log_ratio_median"].isna().tolist() == [True, True]


def test_summaries_cover_whole_days_only(conn):
    with pytest.raises(ValueError, match="whole UTC days"):
        compute_day_summaries(conn, D + HOUR, D + DAY)


def test_days_with_events_but_no_summary_are_named_and_a_missing_table_is_explained(conn):
    add_orders(conn, [(1, 1, D - 3 * DAY, 5.0), (2, 1, D - DAY, 5.0)])
    with pytest.raises(LookupError, match="entity_day_summaries"):
        unsummarised_days(conn, D, D + DAY, baseline_days=5)
    summarise(conn, D - DAY, D - DAY)

    assert unsummarised_days(conn, D, D + DAY, baseline_days=5) == [(D - 3 * DAY).date()]
    assert unsummarised_days(conn, D, D + DAY, baseline_days=2) == []


# --- Customer baselines ---------------------------------------------------------------------------


def test_a_new_ip_or_user_agent_counts_only_for_a_customer_with_earlier_actions(conn):
    add_activities(
        conn,
        [
            view(1, D - DAY + 9 * HOUR, customer=1, ip="home", agent="phone"),
            view(2, D + 9 * HOUR, customer=1, ip="home", agent="phone"),  # both known from yesterday
            view(3, D + 10 * HOUR, customer=1, ip="cafe", agent="laptop"),  # both new
            view(4, D + 11 * HOUR, customer=1, ip="cafe", agent="laptop"),  # seen an hour ago
            view(5, D + 12 * HOUR, customer=2, ip="cafe", agent="laptop"),  # customer 2's first action ever
            view(6, D + 13 * HOUR, customer=2, ip="office", agent=None),  # new IP; no user agent
            view(7, D + 14 * HOUR, customer=None, ip="elsewhere", agent="bot"),  # anonymous
            view(8, D + 15 * HOUR, customer=-1, ip=None, agent="bot"),  # anonymous as landed (-1), no IP
        ],
    )
    summarise(conn, D - DAY)

    frame = activities(conn)

    assert frame["ip_new_for_customer"].to_dict() == {2: 0, 3: 1, 4: 0, 5: 0, 6: 1, 7: 0, 8: 0}
    assert frame["user_agent_new_for_customer"].to_dict() == {2: 0, 3: 1, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0}


def test_an_ip_outside_the_baseline_window_is_new_again(conn):
    add_activities(
        conn,
        [view(1, D - 3 * DAY, ip="old"), view(2, D - DAY, ip="recent"), view(3, D + HOUR, ip="old")],
    )
    summarise(conn, D - 3 * DAY)

    assert compute_activity_features(conn, D, D + DAY, baseline_days=2)["ip_new_for_customer"].tolist() == [1]
    assert compute_activity_features(conn, D, D + DAY, baseline_days=3)["ip_new_for_customer"].tolist() == [0]


def test_account_age_comes_from_sign_up_else_the_first_event_in_the_window_capped_and_zero_when_anonymous(conn):
    conn.execute("INSERT INTO store.customers VALUES (1, 'a@x', 'A', 'A', ?), (3, 'c@x', 'C', 'C', ?)",
                 [D - 10 * DAY + 12 * HOUR, D - 800 * DAY])  # fmt: skip
    add_activities(
        conn,
        [
            view(1, D - 2 * DAY + 12 * HOUR, customer=2),  # customer 2 has no customers row
            view(2, D + 12 * HOUR, customer=1),
            view(3, D + 12 * HOUR, customer=2),
            view(4, D + 12 * HOUR, customer=3),
            view(5, D + 12 * HOUR, customer=None),
            view(6, D + 18 * HOUR, customer=4),  # first seen today at 18:00
        ],
    )
    summarise(conn, D - 2 * DAY)

    age = activities(conn)["customer_account_age_days"].to_dict()

    assert age == {2: 10.0, 3: 2.0, 4: 365.0, 5: 0.0, 6: 0.0}


def test_orders_and_spend_so_far_count_the_window_and_the_days_strictly_earlier_orders(conn):
    add_orders(
        conn,
        [
            (1, 1, D - 40 * DAY, 1000.0),  # outside the window
            (2, 1, D - DAY + 8 * HOUR, 10.0),
            (3, 1, D + 9 * HOUR, 20.0),
            (4, 1, D + 9 * HOUR, 5.0),  # same time as order 3, later id
            (5, 2, D + 9 * HOUR, 7.0),
        ],
    )
    add_activities(
        conn,
        [view(1, D + 9 * HOUR, customer=1), view(2, D + 10 * HOUR, customer=1), view(3, D + 10 * HOUR, customer=None)],
    )
    summarise(conn, D - 40 * DAY)

    by_activity = activities(conn)[["customer_orders_in_window", "customer_spend_in_window"]]
    by_order = orders(conn)[["customer_orders_in_window", "customer_spend_in_window"]]

    assert by_activity.to_dict("index") == {
        1: {"customer_orders_in_window": 1, "customer_spend_in_window": 10.0},  # the 9:00 orders are not earlier
        2: {"customer_orders_in_window": 3, "customer_spend_in_window": 35.0},
        3: {"customer_orders_in_window": 0, "customer_spend_in_window": 0.0},
    }
    assert by_order.to_dict("index") == {
        3: {"customer_orders_in_window": 1, "customer_spend_in_window": 10.0},
        4: {"customer_orders_in_window": 2, "customer_spend_in_window": 30.0},  # ties ordered by id
        5: {"customer_orders_in_window": 0, "customer_spend_in_window": 0.0},
    }


def test_hour_distance_is_the_circular_distance_from_usual_hours_weighed_by_habit_and_shrunk(conn):
    add_activities(
        conn,
        [
            # Customer 1 always at noon (two events); customer 2 at 6:00 and 18:00 (no habitual hour).
            view(1, D - 2 * DAY + 12 * HOUR, customer=1),
            view(2, D - DAY + 12 * HOUR, customer=1),
            view(3, D - DAY + 6 * HOUR, customer=2),
            view(4, D - DAY + 18 * HOUR, customer=2),
            view(5, D + 18 * HOUR, customer=1),
            view(6, D + 2 * HOUR, customer=1),  # 10 hours before noon, the short way round
            view(7, D + 12 * HOUR, customer=2),
            view(8, D + 12 * HOUR, customer=3),  # no history
        ],
    )
    summarise(conn, D - 2 * DAY)

    distance = activities(conn)["hour_distance_from_customer_usual"]

    # 6 hours off, resultant length 2 of n = 2 events, shrunk by n / (n + 5): 6 * 2 / 7.
    assert distance[5] == pytest.approx(6 * 2 / 7)
    assert distance[6] == pytest.approx(10 * 2 / 7)
    assert distance[7] == pytest.approx(0.0, abs=1e-9)
    assert distance[8] == 0.0


# --- Order baselines -------------------------------------------------------------------------------


def test_an_order_amount_is_compared_with_the_customers_usual_shrunk_toward_the_store(conn):
    add_orders(
        conn,
        [
            (1, 1, D - DAY + 9 * HOUR, math.e**1),
            (2, 2, D - DAY + 9 * HOUR, math.e**3),  # store mean log amount: 2
            (3, 1, D + 9 * HOUR, math.e**4),  # one earlier order (log 1): usual (1 + 5 * 2) / 6
            (4, 3, D + 9 * HOUR, math.e**4),  # first order: the store's usual, log 2
            (5, 1, D + 10 * HOUR, math.e**4),  # two earlier (logs 1 and 4): (5 + 5 * 2) / 7
            (6, None, D + 11 * HOUR, math.e**2),  # anonymous: the store's usual
            (7, 4, D + 12 * HOUR, 0.0),  # nothing charged: neutral
        ],
    )
    summarise(conn, D - DAY)

    ratio = orders(conn)["amount_to_customer_usual_log_ratio"].to_dict()

    assert ratio == {
        3: pytest.approx(4 - 11 / 6),
        4: pytest.approx(2.0),
        5: pytest.approx(4 - 15 / 7),
        6: pytest.approx(0.0),
        7: 0.0,
    }
    assert ratio[3] < 4 - 1  # the unshrunk ratio to the single earlier order would be 3


def test_order_baselines_are_neutral_without_an_earlier_day(conn):
    add_orders(conn, [(1, 1, D + HOUR, 50.0), (2, 1, D + 2 * HOUR, 5000.0)], [(1, 1, 5, 3, 10.0), (2, 2, 5, 1, 50.0)])
    summarise(conn, D)

    frame = orders(conn)

    baselines = ["amount_to_customer_usual_log_ratio", "quantity_to_product_usual_log_ratio",
                 "item_count_to_store_usual_log_ratio", "amount_to_items_log_ratio_vs_store"]  # fmt: skip
    assert (frame[baselines] == 0.0).all().all()
    assert frame["customer_orders_in_window"].tolist() == [0, 1]


def test_quantity_and_line_count_are_compared_with_the_product_and_store_usual(conn):
    add_orders(
        conn,
        [(1, 1, D - DAY + HOUR, 10.0), (2, 2, D - DAY + HOUR, 40.0), (3, 3, D + HOUR, 80.0), (4, 3, D + 2 * HOUR, 1.0)],
        [
            (1, 1, 7, 1, 10.0),
            (2, 2, 7, 1, 10.0),  # product 7: two earlier lines of quantity 1 (log sum 0)
            (3, 2, 8, 4, 7.5),  # store: 3 positive lines, log sum ln 4; baskets of 1 and 2 rows
            (4, 3, 7, 8, 10.0),
            (5, 3, 9, 1, 0.0),  # product 9 never seen: the store's usual
            (6, 3, 9, 0, 0.0),
        ],
    )
    summarise(conn, D - DAY)

    frame = orders(conn)

    store_mean = math.log(4) / 3
    product_7 = math.log(8) - (0 + 5 * store_mean) / (2 + 5)
    product_9 = 0.0 - (0 + 5 * store_mean) / (0 + 5)
    assert frame.loc[3, "quantity_to_product_usual_log_ratio"] == pytest.approx(max(product_7, product_9))
    assert frame.loc[4, "quantity_to_product_usual_log_ratio"] == 0.0  # no item rows
    usual_basket = (math.log(2) + math.log(3)) / 2
    assert frame.loc[3, "item_count_to_store_usual_log_ratio"] == pytest.approx(math.log(4) - usual_basket)
    assert frame.loc[4, "item_count_to_store_usual_log_ratio"] == pytest.approx(math.log(1) - usual_basket)


def test_the_total_against_its_items_is_measured_from_the_stores_typical_markup(conn):
    # Two earlier days whose orders carry 10 % and 20 % on top of their items (shipping, tax).
    add_orders(
        conn,
        [
            (1, 1, D - 2 * DAY + HOUR, 110.0),
            (2, 1, D - DAY + HOUR, 120.0),
            (3, 2, D + HOUR, 115.0),
            (4, 2, D + 2 * HOUR, 230.0),
            (5, 2, D + 3 * HOUR, 50.0),  # no items: nothing to compare
        ],
        [(1, 1, 7, 1, 100.0), (2, 2, 7, 1, 100.0), (3, 3, 7, 1, 100.0), (4, 4, 7, 2, 50.0)],
    )
    summarise(conn, D - 2 * DAY)

    vs_store = orders(conn)["amount_to_items_log_ratio_vs_store"]

    typical = (math.log(1.1) + math.log(1.2)) / 2  # the median of the two days' medians
    assert vs_store[3] == pytest.approx(math.log(1.15) - typical)
    assert vs_store[4] == pytest.approx(math.log(2.3) - typical)
    assert vs_store[5] == 0.0


# --- IP baselines ---------------------------------------------------------------------------------


def test_distinct_customers_and_emails_of_an_ip_count_the_last_hour_and_day(conn):
    def attempt(id_, at, email, customer=None, action="failed_login"):
        return view(id_, at, customer=customer, ip="shared", action=action, details={"attempted_email": email})

    add_activities(
        conn,
        [
            view(1, D - 2 * HOUR, customer=9, ip="shared"),  # yesterday 22:00: in the last day only
            view(2, D + 8 * HOUR, customer=1, ip="shared"),
            attempt(3, D + 9 * HOUR + 30 * 60 * timedelta(seconds=1), "a@x"),
            view(4, D + 10 * HOUR, customer=2, ip="shared"),
            attempt(5, D + 10 * HOUR + 5 * 60 * timedelta(seconds=1), "b@x"),
            view(6, D + 10 * HOUR + 10 * 60 * timedelta(seconds=1), customer=1, ip="shared"),
            attempt(7, D + 10 * HOUR + 20 * 60 * timedelta(seconds=1), "a@x", action="login"),
            view(8, D + 11 * HOUR, customer=5, ip=None),  # no IP: its own customer only
        ],
    )
    summarise(conn, D - DAY)

    frame = activities(conn)
    counts = frame[["ip_distinct_customers_1h", "ip_distinct_customers_24h", "ip_distinct_emails_1h", "ip_distinct_emails_24h"]]  # fmt: skip

    assert counts.loc[6].tolist() == [2, 3, 2, 2]  # 9:10-10:10: customers 2 and 1; emails a and b
    assert counts.loc[4].tolist() == [1, 3, 1, 1]  # 9:00-10:00: customer 2, email a
    assert counts.loc[7].tolist() == [2, 3, 2, 2]
    assert counts.loc[8].tolist() == [1, 1, 0, 0]


def test_an_ips_action_rate_counts_the_last_ten_minutes_and_hour_with_ties(conn):
    add_activities(
        conn,
        [
            view(1, D + 8 * HOUR),
            view(2, D + 8 * HOUR + timedelta(minutes=55)),
            view(3, D + 9 * HOUR),  # exactly an hour after the first: outside (t - 1 h, t]
            view(4, D + 9 * HOUR),
        ],
    )
    summarise(conn, D)

    frame = activities(conn)

    assert frame["ip_actions_last_10min"].to_dict() == {1: 1, 2: 1, 3: 3, 4: 3}
    assert frame["ip_actions_last_1h"].to_dict() == {1: 1, 2: 2, 3: 3, 4: 3}


def test_gap_regularity_is_the_coefficient_of_variation_of_the_last_gaps(conn):
    regular = [view(k, D + HOUR + timedelta(seconds=10 * k), ip="timer") for k in range(1, 6)]
    uneven_at = [0, 10, 40, 50, 80]  # gaps 10, 30, 10, 30: mean 20, std 10
    uneven = [view(10 + k, D + 2 * HOUR + timedelta(seconds=s), ip="person") for k, s in enumerate(uneven_at)]
    add_activities(conn, regular + uneven + [view(20, D + 3 * HOUR, ip=None)])
    summarise(conn, D)

    cv = activities(conn)["ip_gap_cv_last_20"]

    assert cv.loc[1:3].tolist() == [1.0, 1.0, 1.0]  # fewer than 3 gaps: the random-arrival value
    assert cv[4] == pytest.approx(0.0) and cv[5] == pytest.approx(0.0)
    assert cv[14] == pytest.approx(0.5)
    assert cv[20] == 1.0


def test_the_failed_login_share_counts_three_pseudo_attempts(conn):
    add_activities(
        conn,
        [
            view(1, D + HOUR, ip="one-typo", action="failed_login"),
            view(2, D + HOUR, ip="guessing", action="failed_login"),
            view(3, D + 2 * HOUR, ip="guessing", action="failed_login"),
            view(4, D + 3 * HOUR, ip="guessing", action="login"),
            view(5, D + 4 * HOUR, ip="browsing"),
        ],
    )
    summarise(conn, D)

    share = activities(conn)["ip_failed_login_share_24h"].to_dict()

    assert share == {1: 0.25, 2: 0.25, 3: pytest.approx(2 / 5), 4: pytest.approx(2 / 6), 5: 0.0}


def test_days_since_an_ip_was_first_seen_read_the_window_and_are_neutral_without_ip(conn):
    add_activities(
        conn,
        [
            view(1, D - 40 * DAY, ip="ancient"),
            view(2, D - 3 * DAY, ip="known"),
            view(3, D - DAY, ip="known"),
            view(4, D + HOUR, ip="known"),
            view(5, D + HOUR, ip="ancient"),
            view(6, D + HOUR, ip="fresh"),
            view(7, D + HOUR, ip=None),
        ],
    )
    summarise(conn, D - 40 * DAY)

    days = activities(conn)["ip_days_since_first_seen"].to_dict()

    assert days == {4: 3, 5: 0, 6: 0, 7: DEFAULT_BASELINE_DAYS}


# --- Independence of days ---------------------------------------------------------------------------


def busy_store(conn, first: datetime, days: int, id_base: int = 0) -> None:
    """A few days of mixed traffic: repeat customers on shared IPs, anonymous visitors, orders with items."""
    rows, order_rows, item_rows = [], [], []
    for day in range(days):
        midnight = first + day * DAY
        for k in range(30):
            at = midnight + timedelta(minutes=47 * k % 1440)
            customer = [1, 2, 3, None, -1][k % 5]
            ip = [f"ip-{k % 4}", None][k % 11 == 0]
            action = ["view_page", "login", "failed_login", "purchase"][k % 4]
            rows.append(view(id_base + day * 100 + k, at, customer, ip, f"agent-{k % 3}", action, {"attempted_email": f"u{k % 3}@x"}))  # fmt: skip
        for k in range(6):
            order_id = id_base + day * 100 + k
            order_rows.append((order_id, [1, 2, 3, None][k % 4], midnight + timedelta(hours=3 * k), 10.0 * (k + 1)))
            item_rows.append((order_id, order_id, 7 + k % 2, 1 + k % 3, 9.0))
    add_activities(conn, rows)
    add_orders(conn, order_rows, item_rows)


def test_a_day_computed_alone_equals_it_within_a_range(conn):
    busy_store(conn, D - 3 * DAY, days=6)
    summarise(conn, D - 3 * DAY, D + 2 * DAY)

    activity_range = compute_activity_features(conn, D - 2 * DAY, D + 3 * DAY)
    order_range = compute_order_features(conn, D - 2 * DAY, D + 3 * DAY)

    for day in (D - DAY, D, D + DAY):
        alone = compute_activity_features(conn, day, day + DAY)
        within = activity_range[(activity_range["timestamp"] >= day) & (activity_range["timestamp"] < day + DAY)]
        pd.testing.assert_frame_equal(alone, within.reset_index(drop=True))
        alone = compute_order_features(conn, day, day + DAY)
        within = order_range[(order_range["created_at"] >= day) & (order_range["created_at"] < day + DAY)]
        pd.testing.assert_frame_equal(alone, within.reset_index(drop=True))
    assert activity_range[list(ACTIVITY_BASELINE_COLUMNS)].abs().sum().gt(0).sum() >= 10  # not all neutral


def test_no_feature_of_a_day_changes_when_a_later_day_is_loaded_and_summarised(conn):
    busy_store(conn, D - 3 * DAY, days=4)
    summarise(conn, D - 3 * DAY, D)
    before = (compute_activity_features(conn, D, D + DAY), compute_order_features(conn, D, D + DAY))

    busy_store(conn, D + 2 * DAY, days=1, id_base=10_000)
    summarise(conn, D + 2 * DAY, D + 2 * DAY)
    after = (compute_activity_features(conn, D, D + DAY), compute_order_features(conn, D, D + DAY))

    for earlier, later in zip(before, after, strict=True):
        pd.testing.assert_frame_equal(earlier, later)
    assert len(compute_order_features(conn, D + 2 * DAY, D + 3 * DAY)) == 6
    assert set(ORDER_BASELINE_COLUMNS) <= set(after[1].columns)
