"""Tier-1 tests of the injected kinds added for issue 14, and of choosing kinds with `anomaly_kinds`."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from anomalens_dagster import constants
from anomalens_dagster.configs import SettingsFileError, SimulationConfig, validate_settings
from anomalens_dagster.core.simulator import (
    SimulatedDay,
    SimulationSettings,
    UnknownAnomalyKindError,
    simulate_catalog,
    simulate_day,
)

DAY = dt.date(2026, 11, 20)
SETTINGS = SimulationSettings(
    seed=23,
    num_categories=6,
    num_products=200,
    num_customers=800,
    orders_per_day=800,
    activities_per_day=15_000,
    account_takeover_rate=0.02,
    card_testing_rate=0.02,
    scraping_rate=0.03,
    credential_stuffing_rate=0.02,
    quantity_hoarding_rate=0.03,
)
SECOND = pd.Timedelta(seconds=1)
MINUTE = 60 * SECOND
NEW_KINDS = (
    constants.ANOMALY_KIND_ACCOUNT_TAKEOVER,
    constants.ANOMALY_KIND_CARD_TESTING,
    constants.ANOMALY_KIND_SCRAPING,
    constants.ANOMALY_KIND_CREDENTIAL_STUFFING,
    constants.ANOMALY_KIND_QUANTITY_HOARDING,
)


@pytest.fixture(scope="module")
def catalog():
    return simulate_catalog(SETTINGS)


@pytest.fixture(scope="module")
def day(catalog) -> SimulatedDay:
    return simulate_day(SETTINGS, DAY, catalog)


def episodes(simulated: SimulatedDay, kind: str) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Each episode of ``kind``: its activities in time order and its orders."""
    labels = simulated.simulation_labels
    mine = labels[labels["anomaly_kind"] == kind]
    activities = simulated.user_activities.set_index("id")
    orders = simulated.orders.set_index("id")
    found = []
    for _, rows in mine.groupby("episode_id"):
        of = rows.groupby("entity_type")["entity_id"].apply(list)
        found.append(
            (
                activities.loc[of.get(constants.ENTITY_ACTIVITY, [])].sort_values("timestamp"),
                orders.loc[of.get(constants.ENTITY_ORDER, [])],
            )
        )
    return found


def normal_activities(simulated: SimulatedDay) -> pd.DataFrame:
    labels = simulated.simulation_labels
    labelled = labels.loc[labels["entity_type"] == constants.ENTITY_ACTIVITY, "entity_id"]
    return simulated.user_activities[~simulated.user_activities["id"].isin(labelled)]


# --- every new kind ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_each_new_kind_is_labelled_per_entity_with_chronologically_numbered_episodes(day, kind):
    labels = day.simulation_labels
    mine = labels[labels["anomaly_kind"] == kind]
    assert mine["episode_id"].nunique() >= 2
    numbers = mine["episode_id"].str.rsplit(":", n=1).str[1].astype(int)
    assert sorted(set(numbers)) == list(range(1, numbers.max() + 1))
    assert mine["episode_id"].str.startswith(f"{DAY.isoformat()}:{kind}:").all()
    first_seen = [
        rows["timestamp"].min() for rows, _ in sorted(episodes(day, kind), key=lambda found: found[0].index.min())
    ]
    assert first_seen == sorted(first_seen)


def test_injected_activities_and_orders_stay_a_few_percent_at_the_default_rates():
    settings = SimulationSettings(seed=5, num_customers=2_000)
    simulated = simulate_day(settings, DAY, simulate_catalog(settings))
    labels = simulated.simulation_labels
    activity_share = (labels["entity_type"] == constants.ENTITY_ACTIVITY).sum() / len(simulated.user_activities)
    order_share = (labels["entity_type"] == constants.ENTITY_ORDER).sum() / len(simulated.orders)
    assert 0.01 < activity_share < 0.06
    assert 0.01 < order_share < 0.06


# --- account takeover ----------------------------------------------------------------------------


def test_an_account_takeover_logs_in_from_an_ip_and_agent_new_to_the_customer_then_orders_dear_products(catalog, day):
    pools = catalog.pools
    normal = normal_activities(day)
    found = episodes(day, constants.ANOMALY_KIND_ACCOUNT_TAKEOVER)
    assert len(found) >= 5
    for rows, orders in found:
        victim = int(rows["customer_id"].iloc[0])
        assert (rows["customer_id"] == victim).all()
        assert rows["action_type"].iloc[0] == "login" and rows["action_type"].iloc[-1] == "purchase"
        assert "update_profile" in set(rows["action_type"])
        assert rows[["ip_address", "user_agent", "session_id"]].nunique().eq(1).all()
        own_ips = set(pools.ip_addresses.take(pools.customer_ips[victim - 1]))
        own_agents = set(pools.user_agents.take(pools.customer_user_agents[victim - 1]))
        assert rows["ip_address"].iloc[0] not in own_ips
        assert rows["user_agent"].iloc[0] not in own_agents
        assert rows["ip_address"].iloc[0] not in set(normal.loc[normal["customer_id"] == victim, "ip_address"])
        assert len(orders) == 1 and orders["customer_id"].iloc[0] == victim
        items = day.order_items[day.order_items["order_id"] == orders.index[0]]
        assert (items["product_id"] - 1).isin(pools.expensive_products).all()
        assert rows["timestamp"].diff().dropna().between(4 * SECOND, 40 * SECOND).all()


# --- card testing --------------------------------------------------------------------------------


def test_card_testing_is_a_few_minutes_of_small_orders_from_fresh_accounts_and_one_ip(catalog, day):
    fresh = set(catalog.pools.profiles.fresh_accounts + 1)
    found = episodes(day, constants.ANOMALY_KIND_CARD_TESTING)
    assert len(found) >= 2
    for rows, orders in found:
        assert 3 <= len(orders) <= 10
        assert len(rows) == 3 * len(orders)
        assert rows["ip_address"].nunique() == 1 and rows["user_agent"].nunique() == 1
        assert set(orders["customer_id"]) <= fresh and 1 <= orders["customer_id"].nunique() <= 3
        assert rows["session_id"].nunique() == len(orders)  # each order its own session
        assert rows["timestamp"].max() - rows["timestamp"].min() < 16 * MINUTE
        items = day.order_items[day.order_items["order_id"].isin(orders.index)]
        assert len(items) == len(orders) and (items["quantity"] == 1).all()
        assert (items["product_id"] - 1).isin(catalog.pools.cheap_products).all()
        purchases = rows[rows["action_type"] == "purchase"].set_index("details_order_id")
        assert (
            purchases.loc[orders.index, "details_order_total"].to_numpy() == orders["total_amount"].to_numpy()
        ).all()


# --- scraping ------------------------------------------------------------------------------------


def test_scraping_views_many_distinct_products_from_one_ip_at_a_steady_pace(day):
    found = episodes(day, constants.ANOMALY_KIND_SCRAPING)
    assert len(found) >= 2
    for rows, orders in found:
        assert orders.empty
        assert 40 <= len(rows) <= 120
        assert (rows["action_type"] == "view_product").all() and rows["customer_id"].isna().all()
        assert rows["ip_address"].nunique() == 1 and rows["user_agent"].nunique() == 1
        assert rows["details_product_id"].is_unique
        gaps = rows["timestamp"].diff().dropna().dt.total_seconds()
        assert gaps.between(15 * 0.9 - 0.01, 35 * 1.1 + 0.01).all()
        assert gaps.max() / gaps.min() <= 1.1 / 0.9 + 1e-6  # near-regular: one pace, give or take 10 %
        assert 9 * MINUTE < rows["timestamp"].max() - rows["timestamp"].min() < 75 * MINUTE
        assert rows["session_id"].nunique() in (1, len(rows))  # with cookies or without


# --- credential stuffing -------------------------------------------------------------------------


def test_credential_stuffing_tries_many_distinct_accounts_from_one_ip_spread_over_time(catalog, day):
    email_of = catalog.customers.set_index("id")["email"]
    found = episodes(day, constants.ANOMALY_KIND_CREDENTIAL_STUFFING)
    assert len(found) >= 2
    successes = failures = 0
    for rows, orders in found:
        assert orders.empty
        assert 20 <= len(rows) <= 60
        assert set(rows["action_type"]) <= {"login", "failed_login"}
        assert rows["ip_address"].nunique() == 1
        assert rows["session_id"].is_unique
        tried = rows["details_attempted_email"].where(
            rows["action_type"] == "failed_login", email_of.reindex(rows["customer_id"]).to_numpy()
        )
        assert tried.is_unique
        assert rows["timestamp"].diff().dropna().between(10 * SECOND, 120 * SECOND).all()
        successes += (rows["action_type"] == "login").sum()
        failures += (rows["action_type"] == "failed_login").sum()
    assert successes >= 1
    assert failures > 5 * successes


# --- quantity hoarding ---------------------------------------------------------------------------


def test_quantity_hoarding_orders_one_product_in_a_quantity_far_above_usual_at_its_normal_price(catalog, day):
    price = catalog.products.set_index("id")["price"]
    found = episodes(day, constants.ANOMALY_KIND_QUANTITY_HOARDING)
    assert len(found) >= 5
    for rows, orders in found:
        assert len(orders) == 1
        items = day.order_items[day.order_items["order_id"] == orders.index[0]]
        hoarded = items[items["quantity"] >= 20]
        assert len(hoarded) == 1 and hoarded["quantity"].iloc[0] <= 100
        assert (items["price"].to_numpy() == price.loc[items["product_id"]].to_numpy()).all()
        assert list(rows["action_type"]) == ["add_to_cart", "purchase"]
        assert rows["details_product_id"].iloc[0] == hoarded["product_id"].iloc[0]
        assert rows["details_quantity"].iloc[0] == hoarded["quantity"].iloc[0]
        assert rows["details_order_id"].iloc[1] == orders.index[0]


# --- choosing kinds ------------------------------------------------------------------------------


def test_only_the_chosen_kinds_are_injected(catalog):
    chosen = (constants.ANOMALY_KIND_SCRAPING, constants.ANOMALY_KIND_HIGH_TOTAL)
    simulated = simulate_day(dataclasses.replace(SETTINGS, anomaly_kinds=chosen), DAY, catalog)
    assert set(simulated.simulation_labels["anomaly_kind"]) == set(chosen)
    assert len(simulated.user_activities) == SETTINGS.activities_per_day


def test_no_kinds_inject_nothing(catalog):
    simulated = simulate_day(dataclasses.replace(SETTINGS, anomaly_kinds=()), DAY, catalog)
    assert simulated.simulation_labels.empty
    assert len(simulated.orders) == SETTINGS.orders_per_day


def test_leaving_a_kind_out_leaves_the_other_kinds_episodes_as_they_were(catalog, day):
    without = simulate_day(
        dataclasses.replace(SETTINGS, anomaly_kinds=tuple(k for k in constants.ANOMALY_KINDS if k != "scraping")),
        DAY,
        catalog,
    )

    def attempts(simulated: SimulatedDay) -> list[tuple[str, str]]:
        rows = [r for r, _ in episodes(simulated, constants.ANOMALY_KIND_CREDENTIAL_STUFFING)]
        return sorted((r["ip_address"].iloc[0], "|".join(r["details_attempted_email"].fillna(""))) for r in rows)

    assert constants.ANOMALY_KIND_SCRAPING not in set(without.simulation_labels["anomaly_kind"])
    assert attempts(without) == attempts(day)


def test_an_unknown_kind_is_rejected_naming_it_and_the_known_kinds():
    with pytest.raises(UnknownAnomalyKindError, match=r"'scrapping'.*known kinds: order_high_total.*scraping"):
        dataclasses.replace(SETTINGS, anomaly_kinds=("scrapping",))
    with pytest.raises(ValueError, match="scrapping"):
        SimulationConfig(anomaly_kinds=["scraping", "scrapping"])
    with pytest.raises(SettingsFileError, match=r"(?s)settings.yaml.*simulation.*scrapping"):
        validate_settings({"simulation": {"anomaly_kinds": ["scrapping"]}}, source="settings.yaml")


def test_the_config_passes_the_chosen_kinds_and_defaults_to_all():
    assert SimulationConfig().to_settings().anomaly_kinds == constants.ANOMALY_KINDS
    chosen = SimulationConfig(anomaly_kinds=[constants.ANOMALY_KIND_CARD_TESTING]).to_settings()
    assert chosen.anomaly_kinds == (constants.ANOMALY_KIND_CARD_TESTING,)
    assert validate_settings({"simulation": {"anomaly_kinds": ["scraping"]}}, source="s.yaml") == {
        "simulation": {"anomaly_kinds": ["scraping"]}
    }


# --- determinism ---------------------------------------------------------------------------------


def test_a_day_with_every_kind_is_a_function_of_seed_date_and_settings(catalog, day):
    again = simulate_day(SETTINGS, DAY, simulate_catalog(SETTINGS))
    for field in ("orders", "order_items", "user_activities", "simulation_labels"):
        assert_frame_equal(getattr(again, field), getattr(day, field))
    other_date = simulate_day(SETTINGS, DAY + dt.timedelta(days=1), catalog)
    assert not np.array_equal(other_date.orders["total_amount"], day.orders["total_amount"][: len(other_date.orders)])
    other_seed = dataclasses.replace(SETTINGS, seed=SETTINGS.seed + 1)
    assert not simulate_day(other_seed, DAY, simulate_catalog(other_seed)).user_activities.equals(day.user_activities)
