"""The simulator's settings, a pure mirror of the Dagster ``SimulationConfig``."""

from __future__ import annotations

from dataclasses import dataclass

from anomalens_dagster import constants

# A day's rows must fit its id range: an order needs up to 6 activities (5 add_to_carts and the
# purchase) and 5 items, and the activity sort key (µs of the day times sessions) must fit int64.
_MAX_ACTIVITIES_PER_DAY = 50_000_000
_MAX_ORDERS_PER_DAY = 8_000_000


@dataclass(frozen=True)
class SimulationSettings:
    """Knobs of the simulator: a pure mirror of the Dagster ``SimulationConfig``."""

    seed: int = constants.DEFAULT_SEED
    num_categories: int = constants.DEFAULT_NUM_CATEGORIES
    num_products: int = constants.DEFAULT_NUM_PRODUCTS
    num_customers: int = constants.DEFAULT_NUM_CUSTOMERS
    orders_per_day: int = constants.DEFAULT_ORDERS_PER_DAY
    activities_per_day: int = constants.DEFAULT_ACTIVITIES_PER_DAY
    order_anomaly_rate: float = constants.DEFAULT_ORDER_ANOMALY_RATE
    burst_rate: float = constants.DEFAULT_BURST_RATE
    failed_login_rate: float = constants.DEFAULT_FAILED_LOGIN_RATE

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("num_categories", "num_products", "num_customers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.orders_per_day <= _MAX_ORDERS_PER_DAY:
            raise ValueError(f"orders_per_day must be in [0, {_MAX_ORDERS_PER_DAY:_}], got {self.orders_per_day}")
        if not 0 <= self.activities_per_day <= _MAX_ACTIVITIES_PER_DAY:
            raise ValueError(
                f"activities_per_day must be in [0, {_MAX_ACTIVITIES_PER_DAY:_}], got {self.activities_per_day}"
            )
        for name in ("order_anomaly_rate", "burst_rate", "failed_login_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.burst_rate + self.failed_login_rate > 1.0:
            raise ValueError(
                "burst_rate + failed_login_rate must be <= 1 (they are shares of the same day's "
                f"activities), got {self.burst_rate} + {self.failed_login_rate}"
            )
