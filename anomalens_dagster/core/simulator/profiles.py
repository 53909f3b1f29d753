"""Customer profiles: the habits that make normal traffic uneven, and the accounts kept for fraud.

Real stores are not uniform, and a detector that only works on uniform traffic fails on the first
real one. Each customer gets a sales-tax rate (their region) and, for a modest documented share,
one benign habit that looks odd store-wide but is usual for them:

- ``_OFFICE_WORKER_SHARE`` of customers also shop from their office, whose one IP they share with
  their colleagues (offices of about ``_MEAN_OFFICE_SIZE`` customers);
- ``_MOBILE_CUSTOMER_SHARE`` shop from their phone in ``_MOBILE_SESSION_PROB`` of their sessions,
  from whichever of their carrier's few shared IPs the network hands out that time, which many
  other customers (and anonymous visitors) also use;
- ``_NIGHT_OWL_SHARE`` habitually shop at night;
- ``_BUSINESS_CUSTOMER_SHARE`` are business customers whose baskets are consistently large;
- ``_POWER_SHOPPER_SHARE`` are power shoppers who now and then click through many products fast.

``_FRESH_ACCOUNT_SHARE`` of the registered accounts never shop normally: injected card testing
uses them, so they have no history of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Sales-tax rates of the customers' regions; the share of customers in each is uniform.
TAX_RATES = (0.0, 0.05, 0.06, 0.0725, 0.08, 0.0875, 0.10)
_OFFICE_WORKER_SHARE = 0.08
_MEAN_OFFICE_SIZE = 15
_MOBILE_CUSTOMER_SHARE = 0.30
MOBILE_SESSION_PROB = 0.40  # a mobile customer's session comes from a carrier IP
_CUSTOMERS_PER_CARRIER_IP = 150
_NIGHT_OWL_SHARE = 0.05
_BUSINESS_CUSTOMER_SHARE = 0.02
_POWER_SHOPPER_SHARE = 0.03
_FRESH_ACCOUNT_SHARE = 0.02


@dataclass(frozen=True, eq=False)
class CustomerProfiles:
    """Per-customer habits (arrays of length num_customers, read-only) and the special pools."""

    tax_rate: np.ndarray  # float64
    office: np.ndarray  # int64 office index, -1 for none
    n_offices: int
    mobile: np.ndarray  # bool
    n_carrier_ips: int
    night_owl: np.ndarray  # bool
    business: np.ndarray  # bool
    power_shoppers: np.ndarray  # int64 indices of power-shopper customers
    fresh_accounts: np.ndarray  # int64 indices of accounts that never shop normally


def simulate_profiles(rng: np.random.Generator, n_customers: int) -> CustomerProfiles:
    """Draw every customer's tax region and habits; deterministic in ``rng``'s seed."""
    n_fresh = min(max(3, round(_FRESH_ACCOUNT_SHARE * n_customers)), n_customers // 4)
    fresh_accounts = np.sort(rng.choice(n_customers, size=n_fresh, replace=False))
    regular = np.ones(n_customers, dtype=bool)
    regular[fresh_accounts] = False

    def share(p: float) -> np.ndarray:
        return regular & (rng.random(n_customers) < p)

    in_office = share(_OFFICE_WORKER_SHARE)
    n_offices = max(1, round(in_office.sum() / _MEAN_OFFICE_SIZE)) if in_office.any() else 0
    office = np.where(in_office, rng.integers(0, max(n_offices, 1), size=n_customers), -1)
    return CustomerProfiles(
        tax_rate=_frozen(np.array(TAX_RATES)[rng.integers(0, len(TAX_RATES), size=n_customers)]),
        office=_frozen(office.astype(np.int64)),
        n_offices=n_offices,
        mobile=_frozen(share(_MOBILE_CUSTOMER_SHARE)),
        n_carrier_ips=max(4, n_customers // _CUSTOMERS_PER_CARRIER_IP),
        night_owl=_frozen(share(_NIGHT_OWL_SHARE)),
        business=_frozen(share(_BUSINESS_CUSTOMER_SHARE)),
        power_shoppers=_frozen(np.flatnonzero(share(_POWER_SHOPPER_SHARE)).astype(np.int64)),
        fresh_accounts=_frozen(fresh_accounts.astype(np.int64)),
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
