"""A day's orders: lines, quantities, statuses, totals, and the order anomalies injected among them."""

from __future__ import annotations

import numpy as np

from anomalens_dagster import constants
from anomalens_dagster.core.simulator.catalogue import TrafficPools
from anomalens_dagster.core.simulator.draws import distinct_picks, pick, stochastic_round
from anomalens_dagster.core.simulator.pricing import charged_cents
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

# Business customers (profiles.py) order bigger baskets: more lines, 3-12 units of each.
_BUSINESS_LINE_PROBS = (0.10, 0.15, 0.25, 0.25, 0.25)
_BUSINESS_QUANTITY = (3, 12)

_ABNORMAL_HIGH_SHARE = 0.7
_HIGH_TOTAL_FACTOR = (10.0, 100.0)
_LOW_TOTAL_RANGE = (0.1, 10.0)
# A hoarding order takes 20-100 units of one product (normal lines: 1-5, business ones up to 12).
_HOARD_QUANTITY = (20, 100)


def draw_orders(
    rng: np.random.Generator, hoard_rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools
) -> Orders:
    """Orders of 1-5 distinct products, mostly 1-3 units each, charged with discounts, tax and shipping
    (pricing.py); some get an abnormal total, some hoard one product (``hoard_rng``'s draws, so leaving
    that kind out changes no other order)."""
    n = settings.orders_per_day
    customer = pick(rng, pools.customer_cdf, n)
    business = pools.profiles.business[customer]
    n_lines = _line_counts(rng, _ORDER_LINE_PROBS, pools, n)
    n_lines[business] = _line_counts(rng, _BUSINESS_LINE_PROBS, pools, int(business.sum()))
    line_start = np.cumsum(n_lines) - n_lines
    line_order = np.repeat(np.arange(n), n_lines)
    line_product = distinct_picks(rng, line_order, line_start, pools.product_cdf)
    line_quantity = rng.choice(np.arange(1, len(QUANTITY_PROBS) + 1), size=len(line_order), p=QUANTITY_PROBS)
    business_line = np.flatnonzero(business[line_order])
    line_quantity[business_line] = rng.integers(_BUSINESS_QUANTITY[0], _BUSINESS_QUANTITY[1] + 1, len(business_line))
    status_probs = [_ORDER_STATUS_PROBS[status] for status in constants.ORDER_STATUSES]
    status = rng.choice(len(status_probs), size=n, p=status_probs)
    abnormal = rng.choice(n, size=stochastic_round(rng, settings.order_anomaly_rate * n), replace=False)
    high = rng.random(len(abnormal)) < _ABNORMAL_HIGH_SHARE
    high_factor = rng.uniform(*_HIGH_TOTAL_FACTOR, size=len(abnormal))
    low_total = rng.uniform(*_LOW_TOTAL_RANGE, size=len(abnormal))
    pricing_rng = np.random.default_rng(rng.integers(0, 2**63))

    anomaly_kind = np.full(n, -1, dtype=np.int64)
    line_labelled = np.zeros(len(line_order), dtype=bool)
    if settings.injects(constants.ANOMALY_KIND_QUANTITY_HOARDING):
        is_abnormal = np.zeros(n, dtype=bool)
        is_abnormal[abnormal] = True
        normal = np.flatnonzero(~is_abnormal)
        hoarding = hoard_rng.choice(
            normal,
            size=min(len(normal), stochastic_round(hoard_rng, settings.quantity_hoarding_rate * n)),
            replace=False,
        )
        hoarded_line = line_start[hoarding] + (hoard_rng.random(len(hoarding)) * n_lines[hoarding]).astype(np.int64)
        line_quantity[hoarded_line] = hoard_rng.integers(_HOARD_QUANTITY[0], _HOARD_QUANTITY[1] + 1, size=len(hoarding))
        line_labelled[hoarded_line] = True
        anomaly_kind[hoarding] = KIND_CODE[constants.ANOMALY_KIND_QUANTITY_HOARDING]
    line_price_cents = pools.product_price_cents[line_product]
    items_cents = np.bincount(line_order, weights=line_price_cents * line_quantity, minlength=n).astype(np.int64)
    # Whole cents summed exactly, then divided once: the total is the nearest float to the sum.
    total = charged_cents(pricing_rng, items_cents, pools.profiles.tax_rate[customer]) / 100.0

    cost = items_cents / 100.0
    for kind, orders, new_total in (
        (constants.ANOMALY_KIND_HIGH_TOTAL, abnormal[high], np.round(cost[abnormal[high]] * high_factor[high], 2)),
        (constants.ANOMALY_KIND_LOW_TOTAL, abnormal[~high], np.round(low_total[~high], 2)),
    ):
        if settings.injects(kind):
            total[orders] = new_total
            anomaly_kind[orders] = KIND_CODE[kind]
    return Orders(
        customer=customer,
        status=status,
        total=total,
        anomaly_kind=anomaly_kind,
        episode=np.where(anomaly_kind >= 0, np.arange(n), -1),
        n_lines=n_lines,
        line_start=line_start,
        line_order=line_order,
        line_product=line_product,
        line_quantity=line_quantity,
        line_price_cents=line_price_cents,
        line_labelled=line_labelled,
    )


def injected_orders(
    rng: np.random.Generator,
    pools: TrafficPools,
    customer: np.ndarray,
    line_order: np.ndarray,
    line_product: np.ndarray,
    line_quantity: np.ndarray,
    kind: str,
    episode: np.ndarray,
) -> Orders:
    """Orders of an injected episode, charged like any order: the anomaly is who orders what, how."""
    n = len(customer)
    n_lines = np.bincount(line_order, minlength=n)
    line_price_cents = pools.product_price_cents[line_product]
    items_cents = np.bincount(line_order, weights=line_price_cents * line_quantity, minlength=n).astype(np.int64)
    status_probs = [_ORDER_STATUS_PROBS[status] for status in constants.ORDER_STATUSES]
    return Orders(
        customer=customer,
        status=rng.choice(len(status_probs), size=n, p=status_probs),
        total=charged_cents(rng, items_cents, pools.profiles.tax_rate[customer]) / 100.0,
        anomaly_kind=np.full(n, KIND_CODE[kind], dtype=np.int64),
        episode=episode,
        n_lines=n_lines,
        line_start=np.cumsum(n_lines) - n_lines,
        line_order=line_order,
        line_product=line_product,
        line_quantity=line_quantity,
        line_price_cents=line_price_cents,
        line_labelled=np.zeros(len(line_order), dtype=bool),
    )


def _line_counts(rng: np.random.Generator, probs: tuple[float, ...], pools: TrafficPools, n: int) -> np.ndarray:
    """1-5 lines per order, at most the number of products."""
    max_lines = min(len(probs), len(pools.product_cdf))
    return pick(rng, np.cumsum(probs[:max_lines]), n) + 1
