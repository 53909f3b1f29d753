"""Vectorised random draws shared by the day's parts: weighted picks, episode sizes, times of day."""

from __future__ import annotations

import numpy as np

from anomalens_dagster.core.simulator.vocabulary import US_PER_S

# Relative activity per hour of the day (UTC): quiet 2-5 h, lunch peak, evening peak 19-21 h.
# Relative activity per hour of the day (UTC): quiet 2-5 h, lunch peak, evening peak 19-21 h.
_HOURLY_ACTIVITY_WEIGHTS = (
    0.9, 0.6, 0.4, 0.3, 0.3, 0.4, 0.7, 1.2, 1.8, 2.3, 2.6, 2.9,
    3.2, 3.1, 2.9, 2.8, 2.9, 3.1, 3.4, 3.8, 4.0, 3.6, 2.6, 1.6,
)  # fmt: skip
# Night owls (profiles.py) shop mostly between 21 h and 3 h.
_NIGHT_OWL_HOURLY_WEIGHTS = (
    3.6, 3.4, 2.8, 2.0, 1.2, 0.6, 0.4, 0.3, 0.3, 0.3, 0.4, 0.5,
    0.6, 0.6, 0.6, 0.6, 0.7, 0.8, 1.0, 1.4, 2.0, 2.8, 3.4, 3.6,
)  # fmt: skip


def pick(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """``size`` indices drawn with the weights whose cumulative sum is ``cdf``."""
    picks = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    return np.minimum(picks, len(cdf) - 1)


def pick_from(rng: np.random.Generator, pool: np.ndarray, size: int) -> np.ndarray:
    return pool[rng.integers(0, len(pool), size=size)]


def usual(rng: np.random.Generator, table: np.ndarray, counts: np.ndarray, who: np.ndarray) -> np.ndarray:
    """One of each customer's 1-3 usual IPs or user agents (``who`` must be valid customer indices)."""
    column = (rng.random(len(who)) * counts[who]).astype(np.int64)
    return table[who, column]


def stochastic_round(rng: np.random.Generator, x: float) -> int:
    """``floor(x)`` or ``ceil(x)``, with the probabilities that make its expectation ``x``."""
    whole = int(np.floor(x))
    return whole + int(rng.random() < x - whole)


def episode_sizes(rng: np.random.Generator, target_rows: float, low: int, high: int) -> np.ndarray:
    """Episode sizes in [low, high] whose sum is ``target_rows`` in expectation (and within ``high``)."""
    if target_rows <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = rng.integers(low, high + 1, size=int(target_rows // low) + 2)
    reached = np.concatenate([[0], np.cumsum(sizes)])
    k = int(np.searchsorted(reached, target_rows, side="right")) - 1  # reached[k] <= target < reached[k+1]
    k += int(rng.random() < (target_rows - reached[k]) / sizes[k])
    return sizes[:k]


def time_of_day_us(rng: np.random.Generator, size: int, night: np.ndarray | None = None) -> np.ndarray:
    """Microseconds after midnight, following the daily activity cycle (the night owls' where ``night``)."""
    u = rng.random(size)
    hour = _hour_at(u, _HOURLY_ACTIVITY_WEIGHTS)
    if night is not None:
        hour = np.where(night, _hour_at(u, _NIGHT_OWL_HOURLY_WEIGHTS), hour)
    return hour * 3600 * US_PER_S + rng.integers(0, 3600 * US_PER_S, size=size)


def _hour_at(u: np.ndarray, weights: tuple[float, ...]) -> np.ndarray:
    cdf = np.cumsum(weights)
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(cdf) - 1)


def rank(values: np.ndarray) -> np.ndarray:
    """Rank (0-based) of each value, ties broken by position."""
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


def distinct_picks(rng: np.random.Generator, group: np.ndarray, group_start: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Items drawn with the weights whose cumulative sum is ``cdf``, redrawn where a group (an order's
    lines, an episode's rows; contiguous, starting at ``group_start``) would hold one twice."""
    n_items = len(cdf)
    item = pick(rng, cdf, len(group))
    for _ in range(20):
        key = group * n_items + item
        by_key = np.argsort(key, kind="stable")
        repeated = by_key[1:][key[by_key][1:] == key[by_key][:-1]]
        if repeated.size == 0:
            return item
        item[repeated] = pick(rng, cdf, repeated.size)
    # Small pools with steep weights, or groups larger than the pool: consecutive items from each
    # group's first one.
    position = np.arange(len(group)) - group_start[group]
    return (item[group_start[group]] + position) % n_items
