"""Run settings as `dg.Config` schemas: the launchpad shows them, schedules and sensors pass them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import Field, ValidationError, field_validator, model_validator

from anomalens_dagster import constants as c
from anomalens_dagster.core.landing.mapping import LandingSettings, LandingSettingsError
from anomalens_dagster.core.simulator import SimulationSettings
from anomalens_dagster.scaleout.settings import EXECUTION_SECTION, STORAGE_SECTION, ExecutionConfig, StorageConfig


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

    schedule: bool = Field(
        default=False,
        description="Whether the daily simulation schedule simulates yesterday's traffic into the store; only a "
        "demo sets it (a real store's data comes from the landing zone).",
    )

    def to_settings(self) -> SimulationSettings:
        return SimulationSettings(**self.model_dump(exclude={"schedule"}))


class TrainingConfig(dg.Config):
    """Which feature rows the detectors are trained on."""

    training_days: int = Field(
        default=c.DEFAULT_TRAINING_DAYS,
        ge=1,
        description="Trailing window of days, ending with the latest day that has features, to train on.",
    )
    max_training_rows: int = Field(
        default=c.DEFAULT_MAX_TRAINING_ROWS,
        ge=100,
        description="Train on at most this many rows of the window, sampled reproducibly with `seed`.",
    )
    seed: int = Field(default=c.DEFAULT_SEED, description="Seed of the training sample and of every model.")


class DetectionConfig(dg.Config):
    """Hyperparameters and thresholds of the four detectors."""

    z_threshold: float = Field(
        default=c.DEFAULT_Z_THRESHOLD, gt=0, description="Z-score: a row is anomalous where any |z| exceeds this."
    )
    dbscan_eps: float | None = Field(
        default=c.DEFAULT_DBSCAN_EPS,
        gt=0,
        description="DBSCAN: neighbourhood radius, as a root-mean-square distance per standardised feature; rows "
        "farther than this from every core sample are noise (anomalies). Null derives it from the data "
        "(99th percentile of the distance to the min_samples-th neighbour).",
    )
    dbscan_min_samples: int = Field(
        default=c.DEFAULT_DBSCAN_MIN_SAMPLES, ge=1, description="DBSCAN: neighbours within eps that make a core sample."
    )
    iforest_contamination: str = Field(
        default=str(c.DEFAULT_IFOREST_CONTAMINATION),
        description="Isolation Forest: expected share of anomalies, 'auto' (scikit-learn's offset) or a fraction such as '0.01'.",
    )
    iforest_n_estimators: int = Field(
        default=c.DEFAULT_IFOREST_N_ESTIMATORS, ge=10, description="Isolation Forest: number of trees."
    )
    autoencoder_threshold_quantile: float | None = Field(
        default=None,
        gt=0.5,
        lt=1.0,
        description=(
            "Autoencoder: threshold = this quantile of the training reconstruction errors; empty for the entity's "
            f"default ({', '.join(f'{e} {q}' for e, q in c.DEFAULT_AUTOENCODER_THRESHOLD_QUANTILES.items())})."
        ),
    )
    autoencoder_epochs: int = Field(
        default=c.DEFAULT_AUTOENCODER_EPOCHS,
        ge=1,
        description="Autoencoder: maximum training epochs (early stopping on a validation split may end sooner).",
    )

    @field_validator("iforest_contamination")
    @classmethod
    def _contamination_is_auto_or_a_fraction(cls, value: str) -> str:
        if value != "auto":
            try:
                fraction = float(value)
            except ValueError:
                raise ValueError(f"must be 'auto' or a number in (0, 0.5], got {value!r}") from None
            if not 0 < fraction <= 0.5:
                raise ValueError(f"must be 'auto' or a number in (0, 0.5], got {value!r}")
        return value

    def detector_params(self, detector: str, seed: int, entity_type: str) -> dict[str, Any]:
        """Constructor parameters of the named detector for an entity type under these settings."""
        contamination: str | float = (
            self.iforest_contamination if self.iforest_contamination == "auto" else float(self.iforest_contamination)
        )
        return {
            "zscore": {"z_threshold": self.z_threshold},
            # Isolation Forest stays on one core: with n_jobs=-1 it scored 1.6x faster, but its
            # threads sum path lengths in varying order, so a re-scored day differed in the 16th digit.
            "isolation_forest": {
                "contamination": contamination,
                "n_estimators": self.iforest_n_estimators,
                "random_state": seed,
            },
            # Nearest-core distances are the same on any number of cores; DuckDB steps run one at a
            # time (the `duckdb` pool), so both cores are free for it.
            "dbscan": {
                "eps": self.dbscan_eps,
                "min_samples": self.dbscan_min_samples,
                "random_state": seed,
                "n_jobs": -1,
            },
            "autoencoder": {
                "threshold_quantile": self.autoencoder_threshold_quantile
                or c.DEFAULT_AUTOENCODER_THRESHOLD_QUANTILES[entity_type],
                "epochs": self.autoencoder_epochs,
                "random_state": seed,
            },
        }[detector]


class ModelConfig(dg.Config):
    """Settings of a model asset: the training window and the detector's hyperparameters."""

    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Training window and sample.")
    detection: DetectionConfig = Field(default_factory=DetectionConfig, description="Detector hyperparameters.")


class IngestConfig(dg.Config):
    """Which landing-zone files the ingest reads."""

    files: list[str] = Field(
        default_factory=list,
        description=(
            "File names inside the landing folder; empty ingests every file there (each is a delivery: rows "
            "already in the store count as already_loaded and change nothing)."
        ),
    )


class LandingKindConfig(dg.Config):
    """How one kind of landing file names our columns and values."""

    columns: dict[str, str] = Field(default_factory=dict, description="Their column name -> ours.")
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Per column (ours): their value -> ours (matched case-insensitively)."
    )


class LandingConfig(dg.Config):
    """How the store's own files are read: column and value mappings per kind, time zone, pending age."""

    timezone: str = Field(default="UTC", description="Time zone of timestamps written without an offset.")
    pending_max_age_days: float = Field(
        default=7.0, gt=0, description="Rows waiting longer than this for a reference (a customer) are rejected."
    )
    categories: LandingKindConfig | None = Field(default=None, description="Mapping of categories files.")
    products: LandingKindConfig | None = Field(default=None, description="Mapping of products files.")
    customers: LandingKindConfig | None = Field(default=None, description="Mapping of customers files.")
    orders: LandingKindConfig | None = Field(default=None, description="Mapping of orders files.")
    order_items: LandingKindConfig | None = Field(default=None, description="Mapping of order items files.")
    user_activities: LandingKindConfig | None = Field(default=None, description="Mapping of user activities files.")

    @model_validator(mode="before")
    @classmethod
    def _mappings_name_known_kinds_keys_and_columns(cls, values: Any) -> Any:
        # Config classes accept unknown nested keys silently: the core's reader of the section
        # checks every level, so a typo (`colums`, `custmer_id`) fails naming it.
        try:
            LandingSettings.from_section(values)
        except LandingSettingsError as error:
            raise ValueError(str(error)) from error
        return values


class ClearAnomaliesConfig(dg.Config):
    """Which anomaly records `clear_anomalies_job` deletes."""

    day: str | None = Field(
        default=None,
        description="UTC day (YYYY-MM-DD) whose anomalies are deleted; leave empty to delete every anomaly record.",
    )


SIMULATION_SECTION = "simulation"
LANDING_SECTION = "landing"
SETTINGS_SECTIONS: dict[str, type[dg.Config]] = {
    SIMULATION_SECTION: SimulationConfig,
    "training": TrainingConfig,
    "detection": DetectionConfig,
    LANDING_SECTION: LandingConfig,
    # Read when the code location loads: the storage backend and the executor (scaleout/settings.py).
    STORAGE_SECTION: StorageConfig,
    EXECUTION_SECTION: ExecutionConfig,
}


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
