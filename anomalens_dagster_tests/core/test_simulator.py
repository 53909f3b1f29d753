"""Tier-1 tests of the pure store simulator: tiny seeded catalogs, one or two simulated days."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from anomalens_dagster import constants
from anomalens_dagster.core.simulator import (
    DETAIL_COLUMNS,
    DETAIL_KEYS,
    DETAIL_KEYS_BY_ACTION,
    MAX_TOTAL_TO_ITEMS,
    MIN_TOTAL_TO_ITEMS,
    SHIPPING_FEE,
    SimulatedDay,
    SimulationSettings,
    day_id_base,
    simulate_catalog,
    simulate_day,
    simulate_days,
)

DAY = dt.date(2026, 11, 20)
SETTINGS = SimulationSettings(
    seed=7,
    num_categories=4,
    num_products=40,
    num_customers=60,
    orders_per_day=200,
    activities_per_day=3_000,
    order_anomaly_rate=0.1,
    burst_rate=0.05,
    failed_login_rate=0.03,
    account_takeover_rate=0.02,
    card_testing_rate=0.02,
    scraping_rate=0.05,
    credential_stuffing_rate=0.03,
    quantity_hoarding_rate=0.05,
)
# Large enough for rates and the daily cycle to show.
LARGE_SETTINGS = dataclasses.replace(
    SETTINGS,
    num_customers=1_000,
    orders_per_day=3_000,
    activities_per_day=30_000,
    order_anomaly_rate=0.05,
    burst_rate=0.02,
    failed_login_rate=0.01,
)
SECOND = pd.Timedelta(seconds=1)

ORDER_DTYPES = {
    "id": "int64",
    "customer_id": "int64",
    "created_at": "datetime64[us]",
    "total_amount": "float64",
    "status": "str",
}
ORDER_ITEM_DTYPES = {
    "id": "int64",
    "order_id": "int64",
    "product_id": "int64",
    "quantity": "int64",
    "price": "float64",
}
ACTIVITY_DTYPES = {
    "id": "int64",
    "customer_id": "Int64",
    "session_id": "str",
    "timestamp": "datetime64[us]",
    "action_type": "str",
    "ip_address": "str",
    "user_agent": "str",
    "details_product_id": "Int64",
    "details_product_name": "str",
    "details_quantity": "Int64",
    "details_query": "str",
    "details_url": "str",
    "details_success": "boolean",
    "details_order_total": "Float64",
    "details_attempted_email": "str",
    "details_order_id": "Int64",
}
LABEL_DTYPES = {"entity_type": "str", "entity_id": "int64", "anomaly_kind": "str", "episode_id": "str"}


@pytest.fixture(scope="module")
def catalog():
    return simulate_catalog(SETTINGS)


@pytest.fixture(scope="module")
def day(catalog) -> SimulatedDay:
    return simulate_day(SETTINGS, DAY, catalog)


@pytest.fixture(scope="module")
def large_catalog():
    return simulate_catalog(LARGE_SETTINGS)


@pytest.fixture(scope="module")
def large_day(large_catalog) -> SimulatedDay:
    return simulate_day(LARGE_SETTINGS, DAY, large_catalog)


# --- helpers --------------------------------------------------------------------------------------


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {column: str(dtype) for column, dtype in frame.dtypes.items()}


def labelled_ids(simulated: SimulatedDay, entity_type: str) -> pd.Series:
    labels = simulated.simulation_labels
    return labels.loc[labels["entity_type"] == entity_type, "entity_id"]


def normal_activities(simulated: SimulatedDay) -> pd.DataFrame:
    activities = simulated.user_activities
    return activities[~activities["id"].isin(labelled_ids(simulated, constants.ENTITY_ACTIVITY))]


def items_cost(simulated: SimulatedDay) -> pd.Series:
    items = simulated.order_items
    return (items["price"] * items["quantity"]).groupby(items["order_id"]).sum().round(2)


def dense_windows(activities: pd.DataFrame, key: pd.Series, size: int, window: pd.Timedelta) -> int:
    """How many runs of ``size`` rows with the same key fall within ``window`` of each other."""
    if len(activities) < size:
        return 0
    codes = pd.factorize(key)[0]
    times = activities["timestamp"].to_numpy()
    order = np.lexsort((times, codes))
    codes, times = codes[order], times[order]
    same = codes[size - 1 :] == codes[: len(codes) - size + 1]
    close = (times[size - 1 :] - times[: len(times) - size + 1]) <= window.to_timedelta64()
    return int(np.count_nonzero(same & close))


def identical_action_key(activities: pd.DataFrame) -> pd.Series:
    """IP, action and every detail: rows with equal keys are the same action from the same IP."""
    key = activities["ip_address"] + "|" + activities["action_type"]
    for column in DETAIL_COLUMNS:
        key = key + "|" + activities[column].astype("str").fillna("")
    return key


def count_bursts(activities: pd.DataFrame) -> int:
    """Windows of >= 5 identical actions from one IP within 10 s."""
    return dense_windows(activities, identical_action_key(activities), 5, 10 * SECOND)


def count_failed_login_runs(activities: pd.DataFrame) -> int:
    """Windows of >= 3 failed logins from one IP within a minute."""
    failed = activities[activities["action_type"] == "failed_login"]
    return dense_windows(failed, failed["ip_address"], 3, 60 * SECOND)


def episodes(simulated: SimulatedDay, kind: str) -> list[pd.DataFrame]:
    """The activity rows of each labelled episode of ``kind``, in time order."""
    labels = simulated.simulation_labels
    mine = labels[(labels["anomaly_kind"] == kind) & (labels["entity_type"] == constants.ENTITY_ACTIVITY)]
    activities = simulated.user_activities.set_index("id")
    return [
        activities.loc[ids.to_numpy()].sort_values("timestamp") for _, ids in mine.groupby("episode_id")["entity_id"]
    ]


# --- determinism ----------------------------------------------------------------------------------


def test_same_settings_and_day_give_identical_frames(day):
    again = simulate_day(SETTINGS, DAY, simulate_catalog(SETTINGS))
    for field in ("orders", "order_items", "user_activities", "simulation_labels"):
        assert_frame_equal(getattr(again, field), getattr(day, field))


def test_another_day_or_another_seed_gives_different_frames(catalog, day):
    next_day = simulate_day(SETTINGS, DAY + dt.timedelta(days=1), catalog)
    assert not np.array_equal(next_day.user_activities["timestamp"].dt.time, day.user_activities["timestamp"].dt.time)
    other_seed = dataclasses.replace(SETTINGS, seed=SETTINGS.seed + 1)
    other = simulate_day(other_seed, DAY, simulate_catalog(other_seed))
    assert not other.orders.equals(day.orders)
    assert not other.user_activities.equals(day.user_activities)


def test_catalog_depends_only_on_seed_and_catalog_sizes(catalog):
    same_catalog = simulate_catalog(
        dataclasses.replace(SETTINGS, orders_per_day=1, activities_per_day=5, burst_rate=0.0)
    )
    for field in ("categories", "products", "customers"):
        assert_frame_equal(getattr(same_catalog, field), getattr(catalog, field))
    other_seed = simulate_catalog(dataclasses.replace(SETTINGS, seed=SETTINGS.seed + 1))
    assert not other_seed.customers.equals(catalog.customers)


def test_adding_customers_leaves_categories_and_products_unchanged(catalog):
    bigger = simulate_catalog(dataclasses.replace(SETTINGS, num_customers=80))
    assert_frame_equal(bigger.categories, catalog.categories)
    assert_frame_equal(bigger.products, catalog.products)
    assert len(bigger.customers) == 80


# --- catalog --------------------------------------------------------------------------------------


def test_catalog_tables_have_the_contract_columns_and_sizes(catalog):
    assert dtypes(catalog.categories) == {"id": "int64", "name": "str", "description": "str"}
    assert dtypes(catalog.products) == {
        "id": "int64",
        "name": "str",
        "description": "str",
        "price": "float64",
        "category_id": "int64",
    }
    assert dtypes(catalog.customers) == {
        "id": "int64",
        "email": "str",
        "first_name": "str",
        "last_name": "str",
        "created_at": "datetime64[us]",
    }
    assert catalog.categories["id"].tolist() == list(range(1, SETTINGS.num_categories + 1))
    assert catalog.products["id"].tolist() == list(range(1, SETTINGS.num_products + 1))
    assert catalog.customers["id"].tolist() == list(range(1, SETTINGS.num_customers + 1))


def test_catalog_has_unique_emails_priced_products_and_valid_categories(catalog):
    assert catalog.customers["email"].is_unique
    assert catalog.customers["email"].str.contains("@").all()
    prices = catalog.products["price"]
    assert (prices > 10).all()
    assert np.allclose(prices, prices.round(2))
    assert catalog.products["category_id"].isin(catalog.categories["id"]).all()
    assert (catalog.customers["created_at"] < pd.Timestamp(constants.PARTITIONS_START_DATE)).all()


def test_customers_have_one_to_three_usual_ips_distinct_from_anonymous_and_attacker_ips(catalog):
    pools = catalog.pools
    counts = pools.customer_ip_counts
    assert counts.min() >= 1 and counts.max() <= 3
    usual = set(pools.customer_ips.ravel().tolist())
    assert usual.isdisjoint(pools.anonymous_ips.tolist())
    assert usual.isdisjoint(pools.attacker_ips.tolist())
    assert pd.Series(pools.ip_addresses).is_unique


# --- frames, ids and integrity --------------------------------------------------------------------


def test_day_frames_have_the_contract_columns_and_dtypes(day):
    assert dtypes(day.orders) == ORDER_DTYPES
    assert dtypes(day.order_items) == ORDER_ITEM_DTYPES
    assert dtypes(day.user_activities) == ACTIVITY_DTYPES
    assert dtypes(day.simulation_labels) == LABEL_DTYPES
    assert DETAIL_COLUMNS == tuple(f"details_{key}" for key in DETAIL_KEYS)


def test_an_empty_day_keeps_the_contract_dtypes(catalog):
    empty = dataclasses.replace(SETTINGS, orders_per_day=0, activities_per_day=0)
    simulated = simulate_day(empty, DAY, catalog)
    assert len(simulated.orders) == len(simulated.user_activities) == len(simulated.simulation_labels) == 0
    assert dtypes(simulated.orders) == ORDER_DTYPES
    assert dtypes(simulated.user_activities) == ACTIVITY_DTYPES
    assert dtypes(simulated.simulation_labels) == LABEL_DTYPES


def test_day_id_base_counts_hundred_million_ids_per_day_since_2000():
    assert day_id_base(dt.date(2000, 1, 1)) == 0
    assert day_id_base(dt.date(2000, 1, 2)) == 10**8
    assert day_id_base(DAY) == (DAY - dt.date(2000, 1, 1)).days * 10**8
    with pytest.raises(ValueError, match="2000-01-01"):
        day_id_base(dt.date(1999, 12, 31))


@pytest.mark.parametrize("field", ["orders", "order_items", "user_activities"])
def test_row_ids_count_up_from_the_day_base(day, field):
    ids = getattr(day, field)["id"].to_numpy()
    base = day_id_base(DAY)
    assert np.array_equal(ids, base + 1 + np.arange(len(ids)))
    assert ids.max() < day_id_base(DAY + dt.timedelta(days=1))


def test_activity_and_order_ids_increase_with_time(day):
    assert day.user_activities["timestamp"].is_monotonic_increasing
    assert day.orders["created_at"].is_monotonic_increasing


def test_rows_reference_existing_orders_products_and_customers(catalog, day):
    items, orders, activities = day.order_items, day.orders, day.user_activities
    assert items["order_id"].isin(orders["id"]).all()
    assert orders["id"].isin(items["order_id"]).all()
    assert items["product_id"].isin(catalog.products["id"]).all()
    assert orders["customer_id"].isin(catalog.customers["id"]).all()
    known = activities["customer_id"].dropna()
    assert known.isin(catalog.customers["id"]).all()
    assert activities["customer_id"].isna().any()  # anonymous visitors exist
    viewed = activities["details_product_id"].dropna()
    assert viewed.isin(catalog.products["id"]).all()


def test_orders_have_one_to_five_distinct_products_at_catalog_price(catalog, day):
    items = day.order_items
    lines = items.groupby("order_id").size()
    assert lines.between(1, 5).all()
    assert not items.duplicated(["order_id", "product_id"]).any()
    normal = items[~items["order_id"].isin(labelled_ids(day, constants.ENTITY_ORDER))]
    business = (
        normal["order_id"]
        .map(day.orders.set_index("id")["customer_id"] - 1)
        .map(lambda customer: catalog.pools.profiles.business[customer])
    )
    assert normal.loc[~business, "quantity"].between(1, 5).all()
    assert normal.loc[business, "quantity"].between(3, 12).all()
    assert (normal.loc[~business, "quantity"] <= 3).mean() > 0.9
    catalog_price = catalog.products.set_index("id")["price"]
    assert np.array_equal(items["price"].to_numpy(), catalog_price.loc[items["product_id"]].to_numpy())
    assert set(day.orders["status"]) <= set(constants.ORDER_STATUSES)


def assert_totals_within_pricing_bounds(simulated: SimulatedDay, orders: pd.DataFrame) -> None:
    cost = items_cost(simulated).loc[orders["id"]].to_numpy()
    total = orders["total_amount"].to_numpy()
    assert (total >= cost * MIN_TOTAL_TO_ITEMS - 0.005).all()
    assert (total <= cost * MAX_TOTAL_TO_ITEMS + SHIPPING_FEE + 0.005).all()


def test_normal_order_totals_charge_their_items_with_discounts_tax_and_shipping_within_bounds(day):
    normal = day.orders[~day.orders["id"].isin(labelled_ids(day, constants.ENTITY_ORDER))]
    assert len(normal) > 0.7 * len(day.orders)
    assert_totals_within_pricing_bounds(day, normal)
    cost = items_cost(day).loc[normal["id"]].to_numpy()
    assert (np.abs(normal["total_amount"].to_numpy() - cost) > 0.005).mean() > 0.5
    assert np.allclose(normal["total_amount"], normal["total_amount"].round(2))


def test_every_order_has_one_purchase_by_its_customer_at_its_time_with_its_total(day):
    purchases = day.user_activities[day.user_activities["action_type"] == "purchase"]
    assert purchases["details_order_id"].is_unique
    assert len(purchases) == len(day.orders)
    joined = day.orders.merge(purchases, left_on="id", right_on="details_order_id", suffixes=("", "_purchase"))
    assert len(joined) == len(day.orders)
    assert (joined["customer_id"] == joined["customer_id_purchase"]).all()
    assert (joined["created_at"] == joined["timestamp"]).all()
    assert (joined["total_amount"] == joined["details_order_total"]).all()


def test_a_purchase_ends_a_session_that_added_the_order_lines_to_the_cart(day):
    activities = day.user_activities
    purchases = activities[activities["action_type"] == "purchase"]
    last_of_session = activities.groupby("session_id")["timestamp"].transform("max")
    assert (purchases["timestamp"] == last_of_session.loc[purchases.index]).all()

    session_of_order = purchases.set_index("details_order_id")["session_id"]
    adds = activities[activities["action_type"] == "add_to_cart"]
    added = adds.groupby("session_id")[["details_product_id", "details_quantity"]]
    for order_id, lines in day.order_items.groupby("order_id"):
        cart = added.get_group(session_of_order[order_id])
        assert sorted(zip(cart["details_product_id"], cart["details_quantity"], strict=True)) == sorted(
            zip(lines["product_id"], lines["quantity"], strict=True)
        )


# --- traffic realism ------------------------------------------------------------------------------


def test_cart_actions_follow_what_the_session_viewed_and_added(day):
    normal = normal_activities(day)
    previous = normal.groupby("session_id")[["action_type", "details_product_id"]].shift()
    added_after_view = (normal["action_type"] == "add_to_cart") & (previous["action_type"] == "view_product")
    assert added_after_view.sum() > 10
    assert (
        normal.loc[added_after_view, "details_product_id"] == previous.loc[added_after_view, "details_product_id"]
    ).all()
    removals = normal[normal["action_type"] == "remove_from_cart"]
    adds = normal.loc[normal["action_type"] == "add_to_cart", ["session_id", "details_product_id", "timestamp"]]
    earlier_adds = removals.merge(adds, on=["session_id", "details_product_id"], suffixes=("", "_add"))
    earlier_adds = earlier_adds[earlier_adds["timestamp_add"] < earlier_adds["timestamp"]]
    assert len(removals) > 0
    assert set(earlier_adds["id"]) == set(removals["id"])


def test_a_day_holds_the_configured_number_of_activities(day, large_day):
    assert len(day.user_activities) == SETTINGS.activities_per_day
    assert len(large_day.user_activities) == LARGE_SETTINGS.activities_per_day


def test_all_timestamps_lie_inside_the_day(day):
    start, end = pd.Timestamp(DAY), pd.Timestamp(DAY + dt.timedelta(days=1))
    for stamps in (day.user_activities["timestamp"], day.orders["created_at"]):
        assert ((stamps >= start) & (stamps < end)).all()


def test_all_ten_action_types_occur_and_no_other(large_day):
    assert set(large_day.user_activities["action_type"]) == set(constants.ACTION_TYPES)


def test_details_are_set_exactly_for_the_keys_of_their_action(day):
    assert set(DETAIL_KEYS_BY_ACTION) == set(constants.ACTION_TYPES)
    activities = day.user_activities
    for action, keys in DETAIL_KEYS_BY_ACTION.items():
        rows = activities[activities["action_type"] == action]
        assert len(rows) > 0, action
        for key in DETAIL_KEYS:
            present = rows[f"details_{key}"].notna()
            assert present.all() if key in keys else not present.any(), (action, key)


def test_logins_succeed_and_failed_logins_carry_an_attempted_email(day):
    activities = day.user_activities
    success = activities.groupby("action_type")["details_success"].agg(lambda s: set(s.dropna()))
    assert success["login"] == {True}
    assert success["failed_login"] == {False}
    failed = activities[activities["action_type"] == "failed_login"]
    assert failed["details_attempted_email"].str.contains("@").all()
    assert failed["customer_id"].isna().all()


def test_logins_open_sessions_and_logouts_close_them(day):
    normal = normal_activities(day)
    by_session = normal.groupby("session_id")["action_type"]
    position = by_session.cumcount()
    previous = by_session.shift()
    logins = normal["action_type"] == "login"
    assert logins.sum() > 10
    assert ((position[logins] == 0) | (previous[logins] == "failed_login")).all()
    logouts = normal["action_type"] == "logout"
    assert logouts.sum() > 0
    assert by_session.shift(-1)[logouts].isna().all()


def test_a_mistyped_password_is_followed_by_a_login_with_that_email_or_by_leaving(large_catalog, large_day):
    normal = normal_activities(large_day)
    following = normal.groupby("session_id")[["action_type", "customer_id", "details_attempted_email"]].shift(-1)
    typos = normal["action_type"] == "failed_login"
    then_login = typos & (following["action_type"] == "login")
    then_retry = typos & (following["action_type"] == "failed_login")
    then_leave = typos & following["action_type"].isna()
    assert then_login.sum() >= 3 and then_leave.sum() >= 3
    assert (then_login | then_retry | then_leave)[typos].all()
    email_of = large_catalog.customers.set_index("id")["email"]
    logged_in_email = email_of.loc[following.loc[then_login, "customer_id"]].to_numpy()
    assert (logged_in_email == normal.loc[then_login, "details_attempted_email"].to_numpy()).all()
    assert (
        following.loc[then_retry, "details_attempted_email"] == normal.loc[then_retry, "details_attempted_email"]
    ).all()
    assert count_failed_login_runs(normal) == 0


def test_sessions_keep_one_ip_and_user_agent_with_actions_seconds_to_minutes_apart(catalog, day):
    normal = normal_activities(day)
    by_session = normal.groupby("session_id")
    assert (by_session["ip_address"].nunique() == 1).all()
    assert (by_session["user_agent"].nunique() == 1).all()
    assert (by_session["customer_id"].nunique() <= 1).all()
    gaps = by_session["timestamp"].diff().dropna()
    assert len(gaps) > 0
    assert gaps.between(1 * SECOND, 180 * SECOND).all()
    # Only power shoppers click faster than every 3 s.
    quick_sessions = normal.loc[gaps[gaps < 3 * SECOND].index, "customer_id"]
    assert quick_sessions.notna().all()
    assert (quick_sessions - 1).isin(catalog.pools.profiles.power_shoppers).all()
    assert by_session.size().max() > 1


@pytest.mark.parametrize("simulated", ["day", "large_day"])
def test_a_customer_never_runs_two_sessions_at_once(simulated, request):
    normal = normal_activities(request.getfixturevalue(simulated))
    known = normal[normal["customer_id"].notna()]
    spans = known.groupby("session_id").agg(
        customer=("customer_id", "first"), start=("timestamp", "min"), end=("timestamp", "max")
    )
    spans = spans.sort_values(["customer", "start"])
    same_customer = spans["customer"].eq(spans["customer"].shift())
    previous_end = spans["end"].shift()
    assert same_customer.sum() > 100
    assert (spans.loc[same_customer, "start"] - previous_end[same_customer] >= 60 * SECOND).all()


def test_session_ids_are_unique_to_one_day(catalog, day):
    next_day = simulate_day(SETTINGS, DAY + dt.timedelta(days=1), catalog)
    assert set(day.user_activities["session_id"]).isdisjoint(next_day.user_activities["session_id"])
    assert day.user_activities["session_id"].str.startswith("20261120-").all()


def test_customers_browse_from_their_usual_ips_or_a_carrier_ip_and_anonymous_visitors_from_theirs(catalog, day):
    pools = catalog.pools
    normal = normal_activities(day)
    carrier_ips = set(pools.ip_addresses.take(pools.carrier_ips))
    known = normal[normal["customer_id"].notna() & ~normal["ip_address"].isin(carrier_ips)]
    usual = {
        (customer + 1, pools.ip_addresses[ip])
        for customer in range(len(pools.customer_ips))
        for ip in pools.customer_ips[customer]
    }
    assert all(pair in usual for pair in zip(known["customer_id"], known["ip_address"], strict=True))
    on_carrier = normal[normal["customer_id"].notna() & normal["ip_address"].isin(carrier_ips)]
    assert pools.profiles.mobile[(on_carrier["customer_id"] - 1).to_numpy()].all()
    anonymous_ips = set(pools.ip_addresses.take(pools.anonymous_ips)) | carrier_ips
    # A customer who mistypes the password and leaves is anonymous too, but on their own IP.
    by_session = normal.assign(typed=normal["action_type"] == "failed_login").groupby("session_id")
    anonymous_sessions = (by_session["customer_id"].transform("count") == 0) & ~by_session["typed"].transform("any")
    assert anonymous_sessions.any()
    assert normal.loc[anonymous_sessions, "ip_address"].isin(anonymous_ips).all()


def test_activity_follows_a_daily_cycle(large_day):
    hours = large_day.user_activities["timestamp"].dt.hour
    per_hour_day = hours.between(12, 20).sum() / 9
    per_hour_night = hours.between(2, 4).sum() / 3
    assert per_hour_day > 4 * per_hour_night


def test_normal_traffic_has_no_failed_login_runs_and_no_bursts(large_day):
    normal = normal_activities(large_day)
    assert (normal["action_type"] == "failed_login").any()  # the occasional typo exists
    assert count_failed_login_runs(normal) == 0
    assert count_bursts(normal) == 0
    # The same checks do find the injected episodes.
    assert count_failed_login_runs(large_day.user_activities) > 0
    assert count_bursts(large_day.user_activities) > 0


# --- injected anomalies ---------------------------------------------------------------------------


def test_labels_point_at_existing_rows_of_their_entity(day):
    labels = day.simulation_labels
    assert set(labels["entity_type"]) == {constants.ENTITY_ORDER, constants.ENTITY_ACTIVITY}
    assert set(labels["anomaly_kind"]) == set(constants.ANOMALY_KINDS)
    assert not labels.duplicated(["entity_type", "entity_id"]).any()
    assert labelled_ids(day, constants.ENTITY_ORDER).isin(day.orders["id"]).all()
    assert labelled_ids(day, constants.ENTITY_ACTIVITY).isin(day.user_activities["id"]).all()
    order_kinds = labels.loc[labels["entity_type"] == constants.ENTITY_ORDER, "anomaly_kind"]
    assert set(order_kinds) == {
        constants.ANOMALY_KIND_HIGH_TOTAL,
        constants.ANOMALY_KIND_LOW_TOTAL,
        constants.ANOMALY_KIND_ACCOUNT_TAKEOVER,
        constants.ANOMALY_KIND_CARD_TESTING,
        constants.ANOMALY_KIND_QUANTITY_HOARDING,
    }
    assert labels["episode_id"].str.startswith(f"{DAY.isoformat()}:").all()


def test_episode_ids_are_unique_across_days(catalog, day):
    next_day = simulate_day(SETTINGS, DAY + dt.timedelta(days=1), catalog)
    assert set(day.simulation_labels["episode_id"]).isdisjoint(next_day.simulation_labels["episode_id"])


def test_burst_episodes_are_5_to_15_identical_actions_from_one_ip_within_seconds(day):
    bursts = episodes(day, constants.ANOMALY_KIND_BURST)
    assert len(bursts) >= 3
    activities = day.user_activities
    for rows in bursts:
        assert 5 <= len(rows) <= 15
        assert rows["action_type"].iloc[0] in {"view_product", "add_to_cart", "search"}
        same = ["action_type", "ip_address", "user_agent", "session_id", "customer_id"]
        same += ["details_product_id", "details_query", "details_quantity"]
        assert (rows[same].nunique(dropna=False) == 1).all()
        gaps = rows["timestamp"].diff().dropna()
        assert gaps.between(0.2 * SECOND, 3 * SECOND).all()
        assert (activities["session_id"] == rows["session_id"].iloc[0]).sum() == len(rows)


def test_failed_login_runs_are_5_to_20_anonymous_failures_for_one_email_from_one_ip(catalog, day):
    runs = episodes(day, constants.ANOMALY_KIND_FAILED_LOGINS)
    assert len(runs) >= 2
    for rows in runs:
        assert 5 <= len(rows) <= 20
        assert (rows["action_type"] == "failed_login").all()
        assert rows["customer_id"].isna().all()
        assert rows["details_attempted_email"].nunique() == 1
        assert rows["ip_address"].nunique() == 1
        assert rows["timestamp"].diff().dropna().between(1 * SECOND, 6 * SECOND).all()


def test_abnormal_totals_are_10_to_100_times_the_cost_or_10_cents_to_10(day):
    labels = day.simulation_labels
    orders = day.orders.set_index("id")
    cost = items_cost(day)
    order_labels = labels[labels["entity_type"] == constants.ENTITY_ORDER]
    high = order_labels.loc[order_labels["anomaly_kind"] == constants.ANOMALY_KIND_HIGH_TOTAL, "entity_id"]
    low = order_labels.loc[order_labels["anomaly_kind"] == constants.ANOMALY_KIND_LOW_TOTAL, "entity_id"]
    assert len(high) > 0 and len(low) > 0
    ratio = orders.loc[high, "total_amount"] / cost.loc[high]
    assert ratio.between(10 - 1e-3, 100 + 1e-3).all()
    assert orders.loc[low, "total_amount"].between(0.1, 10).all()
    assert (orders.loc[low, "total_amount"] < cost.loc[low]).all()


def test_an_abnormal_total_order_and_its_purchase_share_one_label_episode(day):
    labels = day.simulation_labels
    purchases = day.user_activities.set_index("id")
    order_labels = labels[
        (labels["entity_type"] == constants.ENTITY_ORDER)
        & labels["anomaly_kind"].isin([constants.ANOMALY_KIND_HIGH_TOTAL, constants.ANOMALY_KIND_LOW_TOTAL])
    ]
    assert len(order_labels) > 0
    activity_labels = labels[labels["entity_type"] == constants.ENTITY_ACTIVITY].set_index("episode_id")
    for order_label in order_labels.itertuples():
        partner = activity_labels.loc[[order_label.episode_id]]
        assert len(partner) == 1
        purchase = purchases.loc[partner["entity_id"].iloc[0]]
        assert purchase["action_type"] == "purchase"
        assert purchase["details_order_id"] == order_label.entity_id
        assert partner["anomaly_kind"].iloc[0] == order_label.anomaly_kind


def test_injected_counts_match_the_rates(large_day):
    labels = large_day.simulation_labels
    kinds = labels.groupby(["entity_type", "anomaly_kind"]).size()
    order_kinds = kinds.loc[constants.ENTITY_ORDER]
    abnormal = order_kinds[[constants.ANOMALY_KIND_HIGH_TOTAL, constants.ANOMALY_KIND_LOW_TOTAL]].sum()
    expected = LARGE_SETTINGS.order_anomaly_rate * LARGE_SETTINGS.orders_per_day
    assert abs(abnormal - expected) <= 1
    # 70 % high totals: within four binomial standard deviations.
    assert abs(order_kinds[constants.ANOMALY_KIND_HIGH_TOTAL] - 0.7 * abnormal) <= 4 * np.sqrt(abnormal * 0.21)
    activity_kinds = kinds.loc[constants.ENTITY_ACTIVITY]
    activities = LARGE_SETTINGS.activities_per_day
    # Episodes are drawn up to the target; only the last one's size stands between.
    assert abs(activity_kinds[constants.ANOMALY_KIND_BURST] - LARGE_SETTINGS.burst_rate * activities) <= 15
    failed_target = LARGE_SETTINGS.failed_login_rate * activities
    assert abs(activity_kinds[constants.ANOMALY_KIND_FAILED_LOGINS] - failed_target) <= 20


def test_zero_rates_inject_nothing(catalog):
    rates = ["order_anomaly_rate", "burst_rate", "failed_login_rate", "account_takeover_rate", "card_testing_rate"]
    rates += ["scraping_rate", "credential_stuffing_rate", "quantity_hoarding_rate"]
    quiet = dataclasses.replace(SETTINGS, **dict.fromkeys(rates, 0.0))
    simulated = simulate_day(quiet, DAY, catalog)
    assert simulated.simulation_labels.empty
    assert len(simulated.user_activities) == quiet.activities_per_day
    assert len(simulated.orders) == quiet.orders_per_day
    assert_totals_within_pricing_bounds(simulated, simulated.orders)
    assert count_failed_login_runs(simulated.user_activities) == 0
    assert count_bursts(simulated.user_activities) == 0


# --- guards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"num_customers": 0},
        {"orders_per_day": -1},
        {"activities_per_day": -5},
        {"burst_rate": 1.5},
        {"order_anomaly_rate": -0.1},
        {"burst_rate": 0.6, "failed_login_rate": 0.6},
        {"seed": -1},
    ],
)
def test_settings_reject_values_out_of_range(change):
    with pytest.raises(ValueError):
        dataclasses.replace(SETTINGS, **change)


def test_a_catalog_built_for_other_settings_is_rejected(catalog):
    with pytest.raises(ValueError, match="simulate_catalog"):
        simulate_day(dataclasses.replace(SETTINGS, num_customers=61), DAY, catalog)


def test_the_simulator_never_imports_dagster():
    code = "import sys, anomalens_dagster.core.simulator; print('dagster' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_batches_of_days_hold_exactly_the_days_simulated_one_by_one():
    settings = SimulationSettings(
        seed=3, num_categories=2, num_products=10, num_customers=30, orders_per_day=10, activities_per_day=200
    )
    catalog = simulate_catalog(settings)
    days = [dt.date(2026, 3, 1) + dt.timedelta(days=i) for i in range(3)]

    batches = list(simulate_days(settings, days, catalog, batch_activities=300))

    assert len(batches) == 2  # 200 + 200 activities reach 300, the third day is its own batch
    one_by_one = [simulate_day(settings, day, catalog) for day in days]
    expected = pd.concat([d.user_activities for d in one_by_one], ignore_index=True)
    assert_frame_equal(pd.concat([b.user_activities for b in batches], ignore_index=True), expected)
