"""Run settings as `dg.Config` schemas: the launchpad shows them, schedules and sensors pass them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field, ValidationError

from anomalens_dagster import constants as c
from anomalens_dagster.core.simulator import SimulationSettings


class SimulationConfig(dg.Config):
    """How the store simulator generates the catalog and each day's traffic."""

    seed: int = Field(default=c.DEFAULT_SEED, description="Seed of every random draw; same seed, same store.")
    num_categories: int = Field(default=c.DEFAULT_NUM_CATEGORIES, ge=1, description="Product categories.")
    num_products: int = Field(default=c.DEFAULT_NUM_PRODUCTS, ge=1, description="Products in the catalog.")
    num_customers: int = Field(default=c.DEFAULT_NUM_CUSTOMERS, ge=1, description="Registered customers.")
    orders_per_day: int = Field(default=c.DEFAULT_ORDERS_PER_DAY, ge=0, description="Orders placed per day.")
    activities_per_day: int = Field(
        default=c.DEFAULT_ACTIVITIES_PER_DAY,
        ge=0,
        description="User actions per day (page views, searches, logins, purchases, injected anomalies).",
    )
    order_anomaly_rate: float = Field(
        default=c.DEFAULT_ORDER_ANOMALY_RATE,
        ge=0.0,
        le=1.0,
        description="Share of orders whose total is abnormal (70 % 10-100x the items' cost, 30 % 0.1-10).",
    )
    burst_rate: float = Field(
        default=c.DEFAULT_BURST_RATE,
        ge=0.0,
        le=0.5,
        description="Share of activities that belong to bursts of 5-15 identical actions from one IP within seconds.",
    )
    failed_login_rate: float = Field(
        default=c.DEFAULT_FAILED_LOGIN_RATE,
        ge=0.0,
        le=0.5,
        description="Share of activities that belong to runs of 5-20 failed logins for one email from one IP.",
    )

    def to_settings(self) -> SimulationSettings:
        return SimulationSettings(**self.model_dump())


SETTINGS_SECTIONS: dict[str, type[dg.Config]] = {"simulation": SimulationConfig}


class SettingsFileError(ValueError):
    """A settings file that does not match the config schemas."""


def validate_settings(settings: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Check a parsed settings file (sections of config fields) and return it as plain dicts.

    Raises `SettingsFileError` naming the file, the section and the key for anything unknown or
    of the wrong type, so a typo never silently falls back to a default.
    """
    if not isinstance(settings, Mapping):
        raise SettingsFileError(f"{source}: expected a mapping of sections {sorted(SETTINGS_SECTIONS)}")
    validated: dict[str, dict[str, Any]] = {}
    for section, values in settings.items():
        config_class = SETTINGS_SECTIONS.get(section)
        if config_class is None:
            raise SettingsFileError(
                f"{source}: unknown section '{section}' (known sections: {', '.join(sorted(SETTINGS_SECTIONS))})"
            )
        values = values or {}
        if not isinstance(values, Mapping):
            raise SettingsFileError(f"{source}: section '{section}' must be a mapping of keys to values")
        known = set(config_class.model_fields)
        for key in values:
            if key not in known:
                raise SettingsFileError(
                    f"{source}: unknown key '{key}' in section '{section}' (known keys: {', '.join(sorted(known))})"
                )
        try:
            config_class(**values)
        except ValidationError as error:
            raise SettingsFileError(f"{source}: invalid value in section '{section}': {error}") from error
        validated[section] = dict(values)
    return validated
