"""The simulator's settings, a pure mirror of the Dagster ``SimulationConfig``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anomalens_dagster import constants

# A day's rows must fit its id range: an order needs up to 6 activities (5 add_to_carts and the
# purchase) and 5 items, and the activity sort key (µs of the day times sessions) must fit int64.
_MAX_ACTIVITIES_PER_DAY = 50_000_000
_MAX_ORDERS_PER_DAY = 8_000_000


# Kinds whose rate is a share of the day's activities (they share one activity budget) and of its orders.
ACTIVITY_RATES = {
    constants.ANOMALY_KIND_BURST: "burst_rate",
    constants.ANOMALY_KIND_FAILED_LOGINS: "failed_login_rate",
    constants.ANOMALY_KIND_ACCOUNT_TAKEOVER: "account_takeover_rate",
    constants.ANOMALY_KIND_CARD_TESTING: "card_testing_rate",
    constants.ANOMALY_KIND_SCRAPING: "scraping_rate",
    constants.ANOMALY_KIND_CREDENTIAL_STUFFING: "credential_stuffing_rate",
}
ORDER_RATES = ("order_anomaly_rate", "quantity_hoarding_rate")


class UnknownAnomalyKindError(ValueError):
    """``anomaly_kinds`` names a kind the simulator cannot inject."""


def check_anomaly_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple, or an error naming each unknown kind and the known ones."""
    if isinstance(kinds, str):
        raise UnknownAnomalyKindError(f"anomaly_kinds must be a list of kind names, got the string {kinds!r}")
    unknown = [kind for kind in kinds if kind not in constants.ANOMALY_KINDS]
    if unknown:
        raise UnknownAnomalyKindError(
            f"unknown anomaly kind(s) {', '.join(map(repr, unknown))} in anomaly_kinds; "
            f"known kinds: {', '.join(constants.ANOMALY_KINDS)}"
        )
    return tuple(kinds)


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
    account_takeover_rate: float = constants.DEFAULT_ACCOUNT_TAKEOVER_RATE
    card_testing_rate: float = constants.DEFAULT_CARD_TESTING_RATE
    scraping_rate: float = constants.DEFAULT_SCRAPING_RATE
    credential_stuffing_rate: float = constants.DEFAULT_CREDENTIAL_STUFFING_RATE
    quantity_hoarding_rate: float = constants.DEFAULT_QUANTITY_HOARDING_RATE
    # Kinds injected; a kind left out is not injected and the others keep their rates.
    anomaly_kinds: tuple[str, ...] = constants.ANOMALY_KINDS

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
        for name in (*ORDER_RATES, *ACTIVITY_RATES.values()):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for names, what in ((tuple(ACTIVITY_RATES.values()), "activities"), (ORDER_RATES, "orders")):
            if sum(getattr(self, name) for name in names) > 1.0:
                values = " + ".join(str(getattr(self, name)) for name in names)
                raise ValueError(
                    f"{' + '.join(names)} must be <= 1 (they are shares of the same day's {what}), got {values}"
                )
        object.__setattr__(self, "anomaly_kinds", check_anomaly_kinds(self.anomaly_kinds))

    def injects(self, kind: str) -> bool:
        """Whether ``kind`` is among the injected kinds."""
        return kind in self.anomaly_kinds

    def activity_rate(self, kind: str) -> float:
        """The share of the day's activities that ``kind`` injects (0 when it is left out)."""
        return getattr(self, ACTIVITY_RATES[kind]) if self.injects(kind) else 0.0
