"""Tier-1 tests of the simulator's realistic normal traffic: order pricing and benign oddities."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from anomalens_dagster import constants
from anomalens_dagster.core.simulator import (
    MAX_TOTAL_TO_ITEMS,
    MIN_TOTAL_TO_ITEMS,
    SHIPPING_FEE,
    SimulatedDay,
    SimulationSettings,
    simulate_catalog,
    simulate_day,
)
from anomalens_dagster.core.simulator.pricing import charged_cents
from anomalens_dagster.core.simulator.profiles import TAX_RATES

DAY = dt.date(2026, 11, 20)
SETTINGS = SimulationSettings(
    seed=11,
    num_categories=6,
    num_products=120,
    num_customers=1_500,
    orders_per_day=3_000,
    activities_per_day=40_000,
)
SECOND = pd.Timedelta(seconds=1)


@pytest.fixture(scope="module")
def catalog():
    return simulate_catalog(SETTINGS)


@pytest.fixture(scope="module")
def day(catalog) -> SimulatedDay:
    return simulate_day(SETTINGS, DAY, catalog)


@pytest.fixture(scope="module")
def normal(day) -> pd.DataFrame:
    labels = day.simulation_labels
    injected = labels.loc[labels["entity_type"] == constants.ENTITY_ACTIVITY, "entity_id"]
    return day.user_activities[~day.user_activities["id"].isin(injected)]


def sessions_of(activities: pd.DataFrame) -> pd.DataFrame:
    gaps = activities.groupby("session_id")["timestamp"].diff()
    return (
        activities.assign(gap=gaps)
        .groupby("session_id")
        .agg(
            customer=("customer_id", "first"),
            rows=("id", "size"),
            actions=("action_type", lambda s: set(s)),
            median_gap=("gap", "median"),
            start=("timestamp", "min"),
            ip=("ip_address", "first"),
        )
    )


# --- pricing -------------------------------------------------------------------------------------


BASKETS = np.random.default_rng(0).integers(1_299, 40_000, size=20_000)
TAX = np.array(TAX_RATES)[np.random.default_rng(1).integers(0, len(TAX_RATES), size=len(BASKETS))]


def test_every_charge_lies_within_the_documented_bounds_of_its_items():
    total = charged_cents(np.random.default_rng(2), BASKETS, TAX)
    assert MIN_TOTAL_TO_ITEMS == pytest.approx(0.75) and MAX_TOTAL_TO_ITEMS == pytest.approx(1.10)
    assert (total >= np.floor(BASKETS * MIN_TOTAL_TO_ITEMS)).all()
    assert (total <= np.ceil(BASKETS * MAX_TOTAL_TO_ITEMS) + round(SHIPPING_FEE * 100)).all()


def test_without_tax_a_charge_is_the_items_less_one_known_discount_plus_shipping_below_fifty():
    total = charged_cents(np.random.default_rng(3), BASKETS, np.zeros(len(BASKETS)))
    candidates = [np.zeros(len(BASKETS), dtype=np.int64)]
    candidates += [np.rint(BASKETS * p).astype(np.int64) for p in (0.05, 0.10, 0.15, 0.20)]
    candidates += [np.where(BASKETS >= 4_000, coupon, -1) for coupon in (500, 1_000)]
    subtotal = np.stack([BASKETS - discount for discount in candidates])
    shipping = np.where(subtotal < 5_000, 499, 0)
    assert ((subtotal + shipping) == total).any(axis=0).all()
    discounted = (subtotal + shipping == total)[1:].any(axis=0) & ~(subtotal + shipping == total)[0]
    assert 0.14 < discounted.mean() < 0.19  # 12 % percentage discounts, 5 % coupons on baskets from 40
    no_discount = (subtotal[0] + shipping[0]) == total
    assert (total[no_discount & (BASKETS >= 5_000)] == BASKETS[no_discount & (BASKETS >= 5_000)]).all()
    assert (total[no_discount & (BASKETS < 5_000)] == BASKETS[no_discount & (BASKETS < 5_000)] + 499).all()


def test_tax_is_the_customers_rate_on_the_discounted_items():
    rate = np.full(len(BASKETS), 0.08)
    rng_state = np.random.default_rng(4)
    untaxed = charged_cents(np.random.default_rng(4), BASKETS, np.zeros(len(BASKETS)))
    taxed = charged_cents(rng_state, BASKETS, rate)
    free_shipping = untaxed >= 5_000 + 499  # the same draws: the same discount, so the same subtotal
    subtotal = untaxed[free_shipping]
    assert (taxed[free_shipping] == subtotal + np.rint(subtotal * 0.08)).all()


def test_purchases_carry_the_charged_total_and_most_totals_differ_from_their_items(day):
    items = day.order_items
    cost = (items["price"] * items["quantity"]).groupby(items["order_id"]).sum()
    orders = day.orders.set_index("id")
    assert (np.abs(orders["total_amount"] - cost.loc[orders.index]) > 0.005).mean() > 0.7
    purchases = day.user_activities[day.user_activities["action_type"] == "purchase"].set_index("details_order_id")
    assert (purchases.loc[orders.index, "details_order_total"].to_numpy() == orders["total_amount"].to_numpy()).all()


# --- benign oddities -----------------------------------------------------------------------------


def test_some_customers_mistype_their_password_and_leave_in_about_one_and_a_half_percent_of_browsing_sessions(
    day, normal
):
    sessions = sessions_of(normal)
    gave_up = sessions["actions"].map(lambda actions: actions == {"failed_login"})
    browsing = sessions["actions"].map(lambda actions: "purchase" not in actions)
    assert 0.007 < gave_up.sum() / browsing.sum() < 0.025
    assert sessions.loc[gave_up, "rows"].between(1, 2).all()
    # They come from the customer's own IP, and nobody labels them.
    labels = day.simulation_labels
    labelled = labels.loc[labels["entity_type"] == constants.ENTITY_ACTIVITY, "entity_id"]
    gave_up_rows = day.user_activities[day.user_activities["session_id"].isin(sessions.index[gave_up])]
    assert len(gave_up_rows) == sessions.loc[gave_up, "rows"].sum()
    assert not gave_up_rows["id"].isin(labelled).any()


def test_power_shoppers_click_through_long_sessions_seconds_apart_in_about_three_percent_of_browsing(catalog, normal):
    sessions = sessions_of(normal)
    fast = (sessions["rows"] >= 20) & (sessions["median_gap"] < 6 * SECOND)
    assert fast.sum() >= 10
    assert (sessions.loc[fast, "customer"] - 1).isin(catalog.pools.profiles.power_shoppers).all()
    browsing_rows = sessions.loc[sessions["actions"].map(lambda a: "purchase" not in a), "rows"].sum()
    assert 0.015 < sessions.loc[fast, "rows"].sum() / browsing_rows < 0.045


def test_night_owls_shop_mostly_at_night_while_the_others_do_not(catalog, normal):
    known = normal[normal["customer_id"].notna()]
    owl = catalog.pools.profiles.night_owl[(known["customer_id"] - 1).to_numpy()]
    night = known["timestamp"].dt.hour.isin([20, 21, 22, 23, 0, 1, 2, 3])  # a third of the day
    assert owl.sum() > 200
    assert night[owl].mean() > 0.55  # 0.70 expected from their daily cycle
    assert night[~owl].mean() < 0.3  # 0.24 expected


def test_business_customers_order_consistently_large_baskets_without_being_labelled(catalog, day):
    labels = day.simulation_labels
    orders = day.orders[
        ~day.orders["id"].isin(labels.loc[labels["entity_type"] == constants.ENTITY_ORDER, "entity_id"])
    ]
    business = catalog.pools.profiles.business[(orders["customer_id"] - 1).to_numpy()]
    items = day.order_items.merge(orders[["id"]].assign(business=business), left_on="order_id", right_on="id")
    assert 0.01 < business.mean() < 0.05
    assert items.loc[items["business"], "quantity"].between(3, 12).all()
    units = items.groupby("order_id").agg(units=("quantity", "sum"), business=("business", "first"))
    assert units.loc[units["business"], "units"].median() > 4 * units.loc[~units["business"], "units"].median()


def test_offices_put_several_customers_behind_one_ip_and_carriers_many(catalog, normal):
    pools = catalog.pools
    known = normal[normal["customer_id"].notna()]
    customers_per_ip = known.groupby("ip_address")["customer_id"].nunique()
    carrier_ips = set(pools.ip_addresses.take(pools.carrier_ips))
    office_ips = customers_per_ip.drop(index=list(carrier_ips & set(customers_per_ip.index)))
    assert (office_ips >= 3).sum() >= 3
    assert customers_per_ip.loc[list(carrier_ips & set(customers_per_ip.index))].min() >= 5
    sessions = sessions_of(known)
    on_carrier = sessions["ip"].isin(carrier_ips).mean()
    assert 0.05 < on_carrier < 0.2  # 30 % of customers are on their phone in 40 % of their sessions
    anonymous = normal[normal["customer_id"].isna() & (normal["action_type"] != "failed_login")]
    assert anonymous["ip_address"].isin(carrier_ips).any()


def test_accounts_kept_for_fraud_never_shop_normally(catalog, day, normal):
    fresh = catalog.pools.profiles.fresh_accounts + 1
    assert len(fresh) > 0
    assert not normal["customer_id"].isin(fresh).any()
    labels = day.simulation_labels
    normal_orders = day.orders[
        ~day.orders["id"].isin(labels.loc[labels["entity_type"] == constants.ENTITY_ORDER, "entity_id"])
    ]
    assert not normal_orders["customer_id"].isin(fresh).any()
