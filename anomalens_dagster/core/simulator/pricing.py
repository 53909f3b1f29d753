"""What an order charges: its items, less an occasional discount, plus the customer's sales tax and
shipping below a free-shipping threshold.

A normal order's total therefore differs from the sum of its items, within documented bounds that
the store's check on order totals uses as its tolerance:

    items * MIN_TOTAL_TO_ITEMS  <=  total  <=  items * MAX_TOTAL_TO_ITEMS + SHIPPING_FEE

- ``_PERCENT_DISCOUNT_PROB`` of orders get 5-20 % off their items, ``_COUPON_PROB`` a coupon of 5 or 10
  off a basket of at least 40 (so at most 25 % off);
- sales tax at the customer's regional rate (``profiles.TAX_RATES``, 0-10 %) on the discounted items;
- shipping of ``SHIPPING_FEE`` when the discounted items come to less than ``FREE_SHIPPING_FROM``.
"""

from __future__ import annotations

import numpy as np

from anomalens_dagster.core.simulator.profiles import TAX_RATES

SHIPPING_FEE = 4.99
FREE_SHIPPING_FROM = 50.0
_PERCENT_DISCOUNT_PROB = 0.12
_PERCENT_DISCOUNTS = (0.05, 0.10, 0.15, 0.20)
_COUPON_PROB = 0.05
_COUPONS = (5.0, 10.0)
_COUPON_MIN_ITEMS = 40.0

MIN_TOTAL_TO_ITEMS = 1 - max(max(_PERCENT_DISCOUNTS), max(_COUPONS) / _COUPON_MIN_ITEMS)
MAX_TOTAL_TO_ITEMS = 1 + max(TAX_RATES)


def _cents(amount: float) -> int:
    return round(amount * 100)


def charged_cents(rng: np.random.Generator, items_cents: np.ndarray, tax_rate: np.ndarray) -> np.ndarray:
    """The total charged for baskets worth ``items_cents``, in whole cents (int64)."""
    n = len(items_cents)
    u = rng.random(n)
    percent = np.array(_PERCENT_DISCOUNTS)[rng.integers(0, len(_PERCENT_DISCOUNTS), size=n)]
    coupon = np.array([_cents(c) for c in _COUPONS])[rng.integers(0, len(_COUPONS), size=n)]
    discount = np.where(u < _PERCENT_DISCOUNT_PROB, np.rint(items_cents * percent), 0).astype(np.int64)
    gets_coupon = (u >= _PERCENT_DISCOUNT_PROB) & (u < _PERCENT_DISCOUNT_PROB + _COUPON_PROB)
    gets_coupon &= items_cents >= _cents(_COUPON_MIN_ITEMS)
    discount[gets_coupon] = coupon[gets_coupon]
    subtotal = items_cents - discount
    tax = np.rint(subtotal * tax_rate).astype(np.int64)
    shipping = np.where(subtotal < _cents(FREE_SHIPPING_FROM), _cents(SHIPPING_FEE), 0)
    return subtotal + tax + shipping
