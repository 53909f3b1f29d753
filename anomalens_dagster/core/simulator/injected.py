"""Injected activity anomalies: bursts of identical actions, runs of failed logins, scraping sweeps and
credential stuffing."""

from __future__ import annotations

import numpy as np

from anomalens_dagster import constants
from anomalens_dagster.core.simulator.catalogue import TrafficPools
from anomalens_dagster.core.simulator.draws import distinct_picks, episode_sizes, pick, pick_from, usual
from anomalens_dagster.core.simulator.rows import Rows
from anomalens_dagster.core.simulator.settings import SimulationSettings
from anomalens_dagster.core.simulator.vocabulary import (
    ACTION_CODE,
    ADD_TO_CART,
    FAILED_LOGIN,
    KIND_CODE,
    LOGIN,
    SEARCH,
    US_PER_S,
    VIEW_PRODUCT,
)

_BURST_SIZE = (5, 15)
_BURST_GAP_S = (0.2, 3.0)
_BURST_ACTIONS = ("view_product", "add_to_cart", "search")
_BURST_BY_CUSTOMER_PROB = 0.5
_FAILED_RUN_SIZE = (5, 20)
_FAILED_RUN_GAP_S = (1.0, 6.0)
_FAILED_RUN_REAL_EMAIL_PROB = 0.8
_FAILED_RUN_ATTACKER_IP_PROB = 0.8
_SCRIPT_USER_AGENT_PROB = 0.5  # attackers' share of HTTP-library user agents
# Scraping: one IP views 40-120 distinct products at a steady pace, 15-35 s apart give or take 10 %
# (10 minutes to over an hour); half the scrapers keep no cookies, a new session per request.
_SCRAPE_SIZE = (40, 120)
_SCRAPE_GAP_S = (15.0, 35.0)
_SCRAPE_JITTER = 0.1
_COOKIELESS_PROB = 0.5
# Credential stuffing: one IP tries 20-60 distinct accounts, 10-120 s apart (no cookies), 15 % of
# them emails no customer has; 8 % of the tries on real accounts get in.
_STUFFING_SIZE = (20, 60)
_STUFFING_GAP_S = (10.0, 120.0)
_STUFFING_MADE_UP_PROB = 0.15
_STUFFING_SUCCESS_PROB = 0.08


def attacker_user_agents(rng: np.random.Generator, pools: TrafficPools, size: int) -> np.ndarray:
    return np.where(
        rng.random(size) < _SCRIPT_USER_AGENT_PROB,
        pick_from(rng, pools.script_user_agents, size),
        pick_from(rng, pools.browser_user_agents, size),
    )


def episode_rows(
    rng: np.random.Generator, sizes: np.ndarray, gap_s: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episode index of each row, its position in the episode, and its gap to the episode's previous row."""
    episode = np.repeat(np.arange(len(sizes)), sizes)
    pos = np.arange(len(episode)) - (np.cumsum(sizes) - sizes)[episode]
    gap_us = (rng.uniform(*gap_s, size=len(episode)) * US_PER_S).astype(np.int64)
    gap_us[pos == 0] = 0
    return episode, pos, gap_us


def injected_rows(kind: str, episode: np.ndarray, part: np.ndarray | None = None, **columns: np.ndarray) -> Rows:
    """Rows of ``kind``'s episodes, each episode one unit of timing (``part`` splits it in sessions)."""
    n = len(episode)
    return Rows(
        session=episode,
        kind=np.full(n, KIND_CODE[kind], dtype=np.int64),
        episode=episode,
        part=np.zeros(n, dtype=np.int64) if part is None else part,
        **columns,
    )


def draw_bursts(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Rows:
    """Bursts of 5-15 identical actions from one IP, 0.2-3 s apart, each in a session of its own."""
    sizes = episode_sizes(
        rng, settings.activity_rate(constants.ANOMALY_KIND_BURST) * settings.activities_per_day, *_BURST_SIZE
    )
    n = len(sizes)
    action = np.array([ACTION_CODE[name] for name in _BURST_ACTIONS])[rng.integers(0, len(_BURST_ACTIONS), size=n)]
    by_customer = rng.random(n) < _BURST_BY_CUSTOMER_PROB
    customer = np.where(by_customer, pick(rng, pools.customer_cdf, n), -1)
    who = np.maximum(customer, 0)
    ip = np.where(
        by_customer,
        usual(rng, pools.customer_ips, pools.customer_ip_counts, who),
        pick_from(rng, pools.attacker_ips, n),
    )
    user_agent = np.where(
        by_customer,
        usual(rng, pools.customer_user_agents, pools.customer_user_agent_counts, who),
        attacker_user_agents(rng, pools, n),
    )
    subject = np.where(action == SEARCH, pick(rng, pools.search_cdf, n), pick(rng, pools.product_cdf, n))
    quantity = np.where(action == ADD_TO_CART, 1, 0)
    episode, _, gap_us = episode_rows(rng, sizes, _BURST_GAP_S)
    return injected_rows(
        constants.ANOMALY_KIND_BURST,
        episode,
        gap_us=gap_us,
        code=action[episode],
        customer=customer[episode],
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=subject[episode],
        quantity=quantity[episode],
    )


def draw_failed_login_runs(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Rows:
    """Runs of 5-20 anonymous failed logins for one email from one IP, 1-6 s apart."""
    sizes = episode_sizes(
        rng,
        settings.activity_rate(constants.ANOMALY_KIND_FAILED_LOGINS) * settings.activities_per_day,
        *_FAILED_RUN_SIZE,
    )
    n = len(sizes)
    real = rng.random(n) < _FAILED_RUN_REAL_EMAIL_PROB
    victim = rng.integers(0, len(pools.customer_cdf), size=n)
    email = np.where(real, victim, pick_from(rng, pools.made_up_emails, n))
    from_attacker = ~real | (rng.random(n) < _FAILED_RUN_ATTACKER_IP_PROB)
    ip = np.where(
        from_attacker,
        pick_from(rng, pools.attacker_ips, n),
        usual(rng, pools.customer_ips, pools.customer_ip_counts, victim),
    )
    user_agent = np.where(
        from_attacker,
        attacker_user_agents(rng, pools, n),
        usual(rng, pools.customer_user_agents, pools.customer_user_agent_counts, victim),
    )
    episode, _, gap_us = episode_rows(rng, sizes, _FAILED_RUN_GAP_S)
    return injected_rows(
        constants.ANOMALY_KIND_FAILED_LOGINS,
        episode,
        gap_us=gap_us,
        code=np.full(len(episode), FAILED_LOGIN, dtype=np.int64),
        customer=np.full(len(episode), -1, dtype=np.int64),
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=email[episode],
        quantity=np.zeros(len(episode), dtype=np.int64),
    )


def draw_scraping(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Rows:
    """Sweeps of 40-120 distinct product views from one IP at a steady pace of 15-35 s a view."""
    rate = settings.activity_rate(constants.ANOMALY_KIND_SCRAPING)
    sizes = episode_sizes(rng, rate * settings.activities_per_day, *_SCRAPE_SIZE)
    n = len(sizes)
    ip = pick_from(rng, pools.attacker_ips, n)
    user_agent = attacker_user_agents(rng, pools, n)
    pace_s = rng.uniform(*_SCRAPE_GAP_S, size=n)
    cookieless = rng.random(n) < _COOKIELESS_PROB
    episode, pos, _ = episode_rows(rng, sizes, (0.0, 0.0))
    gap_s = pace_s[episode] * rng.uniform(1 - _SCRAPE_JITTER, 1 + _SCRAPE_JITTER, size=len(episode))
    gap_us = np.where(pos == 0, 0, gap_s * US_PER_S).astype(np.int64)
    uniform = np.arange(1, len(pools.product_cdf) + 1, dtype=np.float64)
    product = distinct_picks(rng, episode, np.cumsum(sizes) - sizes, uniform)
    return injected_rows(
        constants.ANOMALY_KIND_SCRAPING,
        episode,
        part=np.where(cookieless[episode], pos, 0),
        gap_us=gap_us,
        code=np.full(len(episode), VIEW_PRODUCT, dtype=np.int64),
        customer=np.full(len(episode), -1, dtype=np.int64),
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=product,
        quantity=np.zeros(len(episode), dtype=np.int64),
    )


def draw_credential_stuffing(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Rows:
    """Logins against 20-60 distinct accounts from one IP, 10-120 s apart, each in a session of its
    own; most fail (an anonymous failed_login with the email tried), a few get in."""
    rate = settings.activity_rate(constants.ANOMALY_KIND_CREDENTIAL_STUFFING)
    sizes = episode_sizes(rng, rate * settings.activities_per_day, *_STUFFING_SIZE)
    n = len(sizes)
    ip = pick_from(rng, pools.attacker_ips, n)
    user_agent = attacker_user_agents(rng, pools, n)
    episode, pos, gap_us = episode_rows(rng, sizes, _STUFFING_GAP_S)
    n_rows = len(episode)
    # Emails of a leaked list: customers' (login_emails starts with them, by customer index) and others.
    n_customers, n_emails = len(pools.customer_cdf), len(pools.login_emails)
    weight = np.where(
        np.arange(n_emails) < n_customers,
        (1 - _STUFFING_MADE_UP_PROB) / n_customers,
        _STUFFING_MADE_UP_PROB / max(n_emails - n_customers, 1),
    )
    email = distinct_picks(rng, episode, np.cumsum(sizes) - sizes, np.cumsum(weight))
    account = np.where(email < n_customers, email, -1)
    success = (account >= 0) & (rng.random(n_rows) < _STUFFING_SUCCESS_PROB)
    return injected_rows(
        constants.ANOMALY_KIND_CREDENTIAL_STUFFING,
        episode,
        part=pos,
        gap_us=gap_us,
        code=np.where(success, LOGIN, FAILED_LOGIN).astype(np.int64),
        customer=np.where(success, account, -1),
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=np.where(success, -1, email),
        quantity=np.zeros(n_rows, dtype=np.int64),
    )
