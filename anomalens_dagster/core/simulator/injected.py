"""Injected activity anomalies: bursts of identical actions and runs of failed logins."""

from __future__ import annotations

import numpy as np

from anomalens_dagster import constants
from anomalens_dagster.core.simulator.catalogue import TrafficPools
from anomalens_dagster.core.simulator.draws import episode_sizes, pick, pick_from, usual
from anomalens_dagster.core.simulator.rows import Rows
from anomalens_dagster.core.simulator.settings import SimulationSettings
from anomalens_dagster.core.simulator.vocabulary import (
    ACTION_CODE,
    ADD_TO_CART,
    FAILED_LOGIN,
    KIND_CODE,
    SEARCH,
    US_PER_S,
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


def _attacker_user_agents(rng: np.random.Generator, pools: TrafficPools, size: int) -> np.ndarray:
    return np.where(
        rng.random(size) < _SCRIPT_USER_AGENT_PROB,
        pick_from(rng, pools.script_user_agents, size),
        pick_from(rng, pools.browser_user_agents, size),
    )


def _episode_rows(
    rng: np.random.Generator, sizes: np.ndarray, gap_s: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Episode index of each row, and each row's gap to the episode's previous row."""
    episode = np.repeat(np.arange(len(sizes)), sizes)
    pos = np.arange(len(episode)) - (np.cumsum(sizes) - sizes)[episode]
    gap_us = (rng.uniform(*gap_s, size=len(episode)) * US_PER_S).astype(np.int64)
    gap_us[pos == 0] = 0
    return episode, gap_us


def draw_bursts(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Rows:
    """Bursts of 5-15 identical actions from one IP, 0.2-3 s apart, each in a session of its own."""
    sizes = episode_sizes(rng, settings.burst_rate * settings.activities_per_day, *_BURST_SIZE)
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
        _attacker_user_agents(rng, pools, n),
    )
    subject = np.where(action == SEARCH, pick(rng, pools.search_cdf, n), pick(rng, pools.product_cdf, n))
    quantity = np.where(action == ADD_TO_CART, 1, 0)
    episode, gap_us = _episode_rows(rng, sizes, _BURST_GAP_S)
    return Rows(
        session=episode,
        gap_us=gap_us,
        code=action[episode],
        customer=customer[episode],
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=subject[episode],
        quantity=quantity[episode],
        kind=np.full(len(episode), KIND_CODE[constants.ANOMALY_KIND_BURST], dtype=np.int64),
    )


def draw_failed_login_runs(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Rows:
    """Runs of 5-20 anonymous failed logins for one email from one IP, 1-6 s apart."""
    sizes = episode_sizes(rng, settings.failed_login_rate * settings.activities_per_day, *_FAILED_RUN_SIZE)
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
        _attacker_user_agents(rng, pools, n),
        usual(rng, pools.customer_user_agents, pools.customer_user_agent_counts, victim),
    )
    episode, gap_us = _episode_rows(rng, sizes, _FAILED_RUN_GAP_S)
    return Rows(
        session=episode,
        gap_us=gap_us,
        code=np.full(len(episode), FAILED_LOGIN, dtype=np.int64),
        customer=np.full(len(episode), -1, dtype=np.int64),
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=email[episode],
        quantity=np.zeros(len(episode), dtype=np.int64),
        kind=np.full(len(episode), KIND_CODE[constants.ANOMALY_KIND_FAILED_LOGINS], dtype=np.int64),
    )
