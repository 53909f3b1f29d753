"""A day's orders: lines, quantities, statuses, totals, and the abnormal totals injected among them."""

from __future__ import annotations

import numpy as np

from anomalens_dagster import constants
from anomalens_dagster.core.simulator.catalogue import TrafficPools
from anomalens_dagster.core.simulator.draws import pick, stochastic_round
from anomalens_dagster.core.simulator.rows import Orders
from anomalens_dagster.core.simulator.settings import SimulationSettings
from anomalens_dagster.core.simulator.vocabulary import KIND_CODE

_ORDER_LINE_PROBS = (0.35, 0.30, 0.18, 0.11, 0.06)  # 1..5 lines
QUANTITY_PROBS = (0.70, 0.20, 0.07, 0.02, 0.01)  # 1..5 units
_ORDER_STATUS_PROBS = {  # one per constants.ORDER_STATUSES
    "pending": 0.08,
    "processing": 0.14,
    "shipped": 0.24,
    "delivered": 0.48,
    "cancelled": 0.06,
}

_ABNORMAL_HIGH_SHARE = 0.7
_HIGH_TOTAL_FACTOR = (10.0, 100.0)
_LOW_TOTAL_RANGE = (0.1, 10.0)


def draw_orders(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> Orders:
    """Orders of 1-5 distinct products, mostly 1-3 units each; some get an abnormal total."""
    n = settings.orders_per_day
    n_products = len(pools.product_cdf)
    max_lines = min(len(_ORDER_LINE_PROBS), n_products)
    line_probs = np.array(_ORDER_LINE_PROBS[:max_lines])
    n_lines = rng.choice(np.arange(1, max_lines + 1), size=n, p=line_probs / line_probs.sum())
    line_start = np.cumsum(n_lines) - n_lines
    line_order = np.repeat(np.arange(n), n_lines)
    line_product = _distinct_products(rng, line_order, line_start, pools.product_cdf)
    line_quantity = rng.choice(np.arange(1, len(QUANTITY_PROBS) + 1), size=len(line_order), p=QUANTITY_PROBS)
    line_price_cents = pools.product_price_cents[line_product]
    # Whole cents summed exactly, then divided once: the total is the nearest float to the sum.
    cost = np.bincount(line_order, weights=line_price_cents * line_quantity, minlength=n) / 100.0
    total = cost.copy()

    anomaly_kind = np.full(n, -1, dtype=np.int64)
    abnormal = rng.choice(n, size=stochastic_round(rng, settings.order_anomaly_rate * n), replace=False)
    high = rng.random(len(abnormal)) < _ABNORMAL_HIGH_SHARE
    high_orders, low_orders = abnormal[high], abnormal[~high]
    total[high_orders] = np.round(cost[high_orders] * rng.uniform(*_HIGH_TOTAL_FACTOR, size=len(high_orders)), 2)
    total[low_orders] = np.round(rng.uniform(*_LOW_TOTAL_RANGE, size=len(low_orders)), 2)
    anomaly_kind[high_orders] = KIND_CODE[constants.ANOMALY_KIND_HIGH_TOTAL]
    anomaly_kind[low_orders] = KIND_CODE[constants.ANOMALY_KIND_LOW_TOTAL]

    status_probs = [_ORDER_STATUS_PROBS[status] for status in constants.ORDER_STATUSES]
    status = rng.choice(len(status_probs), size=n, p=status_probs)
    return Orders(
        customer=pick(rng, pools.customer_cdf, n),
        status=status,
        total=total,
        anomaly_kind=anomaly_kind,
        n_lines=n_lines,
        line_start=line_start,
        line_order=line_order,
        line_product=line_product,
        line_quantity=line_quantity,
        line_price_cents=line_price_cents,
    )


def _distinct_products(
    rng: np.random.Generator, line_order: np.ndarray, line_start: np.ndarray, product_cdf: np.ndarray
) -> np.ndarray:
    """Products by popularity, redrawn where an order would list one product twice."""
    n_products = len(product_cdf)
    product = pick(rng, product_cdf, len(line_order))
    for _ in range(20):
        key = line_order * n_products + product
        by_key = np.argsort(key, kind="stable")
        repeated = by_key[1:][key[by_key][1:] == key[by_key][:-1]]
        if repeated.size == 0:
            return product
        product[repeated] = pick(rng, product_cdf, repeated.size)
    # Tiny catalogs with steep popularity: consecutive products from each order's first one.
    line_no = np.arange(len(line_order)) - line_start[line_order]
    return (product[line_start[line_order]] + line_no) % n_products
