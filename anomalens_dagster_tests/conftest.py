"""Shared fixtures: a DuckDB file in tmp_path and small, seeded simulation settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anomalens_dagster.constants import SETTINGS_ENV_VAR
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile

# A settings file that does not exist: runs see the built-in defaults, never a developer's data/settings.yaml.
NO_SETTINGS_FILE = Path(__file__).with_name("no-settings.yaml")
DEFAULT_SETTINGS = SettingsFile(path=str(NO_SETTINGS_FILE))


def pytest_configure(config) -> None:
    """Point the code location (imported during collection, and the processes tests start) at no settings file."""
    os.environ[SETTINGS_ENV_VAR] = str(NO_SETTINGS_FILE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The scale-out module first: `make test` spreads modules over two pytest-xdist workers, and the
    longest module started last would leave one worker idle for minutes at the end."""
    items.sort(key=lambda item: item.get_closest_marker("scaleout") is None)


# Small enough for a fast test, big enough that the four original anomaly kinds are injected on every
# day (the kinds added for issue 14 keep their default rates: at this size a day holds few or none).
SMALL_SIMULATION = {
    "seed": 7,
    "num_categories": 4,
    "num_products": 40,
    "num_customers": 150,
    "orders_per_day": 120,
    "activities_per_day": 1500,
    "order_anomaly_rate": 0.05,
    "burst_rate": 0.03,
    "failed_login_rate": 0.02,
}


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "anomalens.duckdb"


@pytest.fixture
def duckdb_resource(db_path) -> AnomaLensDuckDB:
    return AnomaLensDuckDB(database=str(db_path))


@pytest.fixture
def small_simulation() -> dict:
    return dict(SMALL_SIMULATION)


@pytest.fixture
def landing_dir(tmp_path) -> Path:
    """An empty landing folder in tmp_path."""
    directory = tmp_path / "landing"
    directory.mkdir()
    return directory
