"""Injected anomalies that place orders: account takeovers and card testing.

Their orders are charged like any other (pricing.py): what is wrong is who orders, from where, and
how. Each episode's activities and orders share one label episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomalens_dagster import constants
from anomalens_dagster.core.simulator.catalogue import TrafficPools
from anomalens_dagster.core.simulator.draws import distinct_picks, pick, pick_from, stochastic_round
from anomalens_dagster.core.simulator.injected import attacker_user_agents, episode_rows, injected_rows
from anomalens_dagster.core.simulator.orders import injected_orders
from anomalens_dagster.core.simulator.rows import Orders, Rows
from anomalens_dagster.core.simulator.settings import SimulationSettings
from anomalens_dagster.core.simulator.vocabulary import (
    ADD_TO_CART,
    LOGIN,
    PURCHASE,
    UPDATE_PROFILE,
    US_PER_S,
    VIEW_PAGE,
)

# Account takeover: someone else logs in to an established customer's account from an IP and user
# agent the customer never used, browses 0-3 pages, changes the profile (address, payment method,
# password) and orders 1-3 of the store's dearest products, 1-3 units each; actions 4-40 s apart.
_TAKEOVER_BROWSE = (0, 3)
_TAKEOVER_LINES = (1, 3)
_TAKEOVER_QUANTITY = (1, 3)
_TAKEOVER_GAP_S = (4.0, 40.0)
# Card testing: 3-10 orders of one cheap product, one unit, from 1-3 accounts that never shopped
# before (profiles.py), all from one IP: login, add_to_cart, purchase 3-10 s apart, orders 20-90 s
# apart, each order its own session.
_CARD_TEST_ORDERS = (3, 10)
_CARD_TEST_ACCOUNTS = (1, 3)
_CARD_TEST_STEP_S = (3.0, 10.0)
_CARD_TEST_ORDER_GAP_S = (20.0, 90.0)


@dataclass(frozen=True, eq=False)
class Injection:
    """Activities of injected episodes and the orders their purchases place (purchase subjects are
    indices into ``orders``)."""

    rows: Rows
    orders: Orders


def draw_account_takeovers(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Injection:
    """Takeovers of established customers' accounts ending in an order unusual for them."""
    rate = settings.activity_rate(constants.ANOMALY_KIND_ACCOUNT_TAKEOVER)
    mean_rows = 3 + np.mean(_TAKEOVER_BROWSE) + np.mean(_TAKEOVER_LINES)
    n = stochastic_round(rng, rate * settings.activities_per_day / mean_rows)
    victim = pick(rng, pools.customer_cdf, n)
    ip = pick_from(rng, pools.attacker_ips, n)
    user_agent = _user_agents_new_to(rng, pools, victim)
    n_browse = rng.integers(_TAKEOVER_BROWSE[0], _TAKEOVER_BROWSE[1] + 1, size=n)
    n_lines = rng.integers(_TAKEOVER_LINES[0], min(_TAKEOVER_LINES[1], len(pools.expensive_products)) + 1, size=n)
    sizes = n_browse + n_lines + 3
    episode, pos, gap_us = episode_rows(rng, sizes, _TAKEOVER_GAP_S)

    line_order = np.repeat(np.arange(n), n_lines)
    line_start = np.cumsum(n_lines) - n_lines
    expensive = pools.expensive_products
    line_product = expensive[
        distinct_picks(rng, line_order, line_start, np.arange(1, len(expensive) + 1, dtype=np.float64))
    ]
    line_quantity = rng.integers(_TAKEOVER_QUANTITY[0], _TAKEOVER_QUANTITY[1] + 1, size=len(line_order))
    orders = injected_orders(
        rng,
        pools,
        victim,
        line_order,
        line_product,
        line_quantity,
        constants.ANOMALY_KIND_ACCOUNT_TAKEOVER,
        np.arange(n),
    )

    # Layout: login, browsing (view_page), update_profile, add_to_cart per line, purchase.
    browse_end = n_browse[episode]
    code = np.full(len(episode), VIEW_PAGE, dtype=np.int64)
    code[pos == 0] = LOGIN
    code[pos == browse_end + 1] = UPDATE_PROFILE
    is_cart = (pos > browse_end + 1) & (pos < sizes[episode] - 1)
    code[is_cart] = ADD_TO_CART
    is_purchase = pos == sizes[episode] - 1
    code[is_purchase] = PURCHASE
    subject = np.full(len(episode), -1, dtype=np.int64)
    is_page = code == VIEW_PAGE
    subject[is_page] = pools.page_urls[pick(rng, pools.page_cdf, int(is_page.sum()))]
    is_profile = code == UPDATE_PROFILE
    subject[is_profile] = pick_from(rng, pools.profile_urls, int(is_profile.sum()))
    cart_line = line_start[episode[is_cart]] + pos[is_cart] - browse_end[is_cart] - 2
    subject[is_cart] = line_product[cart_line]
    quantity = np.zeros(len(episode), dtype=np.int64)
    quantity[is_cart] = line_quantity[cart_line]
    subject[is_purchase] = episode[is_purchase]
    rows = injected_rows(
        constants.ANOMALY_KIND_ACCOUNT_TAKEOVER,
        episode,
        gap_us=gap_us,
        code=code,
        customer=victim[episode],
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=subject,
        quantity=quantity,
    )
    return Injection(rows=rows, orders=orders)


def _user_agents_new_to(rng: np.random.Generator, pools: TrafficPools, customer: np.ndarray) -> np.ndarray:
    """An attacker's user agent for each customer, never one of the customer's own."""
    agent = attacker_user_agents(rng, pools, len(customer))
    browsers = pools.browser_user_agents
    for _ in range(pools.customer_user_agents.shape[1]):  # at most 3 of the customer's own to step past
        taken = (pools.customer_user_agents[customer] == agent[:, None]).any(axis=1)
        agent[taken] = browsers[(np.searchsorted(browsers, agent[taken]) + 1) % len(browsers)]
    return agent


def draw_card_testing(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Injection:
    """Bursts of small orders from fresh accounts and one IP, a few minutes in all."""
    rate = settings.activity_rate(constants.ANOMALY_KIND_CARD_TESTING)
    n = stochastic_round(rng, rate * settings.activities_per_day / (3 * np.mean(_CARD_TEST_ORDERS)))
    n_orders = rng.integers(_CARD_TEST_ORDERS[0], _CARD_TEST_ORDERS[1] + 1, size=n)
    accounts_pool = pools.profiles.fresh_accounts
    if len(accounts_pool) == 0:  # a catalogue too small to keep accounts aside
        accounts_pool = np.arange(len(pools.customer_cdf), dtype=np.int64)
    n_accounts = rng.integers(_CARD_TEST_ACCOUNTS[0], _CARD_TEST_ACCOUNTS[1] + 1, size=n)
    accounts = pick_from(rng, accounts_pool, n * _CARD_TEST_ACCOUNTS[1]).reshape(n, _CARD_TEST_ACCOUNTS[1])
    ip = pick_from(rng, pools.attacker_ips, n)
    user_agent = attacker_user_agents(rng, pools, n)

    order_episode = np.repeat(np.arange(n), n_orders)
    order_no = np.arange(len(order_episode)) - (np.cumsum(n_orders) - n_orders)[order_episode]
    customer = accounts[order_episode, order_no % n_accounts[order_episode]]
    n_total = len(order_episode)
    product = pick_from(rng, pools.cheap_products, n_total)
    orders = injected_orders(
        rng,
        pools,
        customer,
        np.arange(n_total),
        product,
        np.ones(n_total, dtype=np.int64),
        constants.ANOMALY_KIND_CARD_TESTING,
        order_episode,
    )

    # Each order: login, add_to_cart, purchase; rows are grouped by episode, orders in sequence.
    order_of_row = np.repeat(np.arange(n_total), 3)
    step = np.tile(np.arange(3), n_total)
    episode = order_episode[order_of_row]
    gap_s = np.where(
        step == 0,
        rng.uniform(*_CARD_TEST_ORDER_GAP_S, size=len(step)),
        rng.uniform(*_CARD_TEST_STEP_S, size=len(step)),
    )
    gap_s[(step == 0) & (order_no[order_of_row] == 0)] = 0
    rows = injected_rows(
        constants.ANOMALY_KIND_CARD_TESTING,
        episode,
        part=order_no[order_of_row],
        gap_us=(gap_s * US_PER_S).astype(np.int64),
        code=np.array([LOGIN, ADD_TO_CART, PURCHASE])[step],
        customer=customer[order_of_row],
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=np.where(step == 1, product[order_of_row], np.where(step == 2, order_of_row, -1)),
        quantity=np.where(step == 1, 1, 0),
    )
    return Injection(rows=rows, orders=orders)
