"""Run settings as `dg.Config` schemas: the launchpad shows them, schedules and sensors pass them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from anomalens_dagster import constants as c
from anomalens_dagster.core.landing.mapping import LandingSettings, LandingSettingsError
from anomalens_dagster.core.simulator import SimulationSettings, check_anomaly_kinds
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
    account_takeover_rate: float = Field(
        default=c.DEFAULT_ACCOUNT_TAKEOVER_RATE,
        ge=0.0,
        le=0.5,
        description="Share of activities in account takeovers: a customer's account logged into from an IP and user "
        "agent new to them, the profile changed, then an order of the store's dearest products.",
    )
    card_testing_rate: float = Field(
        default=c.DEFAULT_CARD_TESTING_RATE,
        ge=0.0,
        le=0.5,
        description="Share of activities in card testing: 3-10 small orders within minutes from one IP, placed by "
        "accounts that never shopped before.",
    )
    scraping_rate: float = Field(
        default=c.DEFAULT_SCRAPING_RATE,
        ge=0.0,
        le=0.5,
        description="Share of activities in scraping: one IP viewing 40-120 distinct products at a steady 15-35 s pace.",
    )
    credential_stuffing_rate: float = Field(
        default=c.DEFAULT_CREDENTIAL_STUFFING_RATE,
        ge=0.0,
        le=0.5,
        description="Share of activities in credential stuffing: logins against 20-60 distinct accounts from one IP, "
        "10-120 s apart, mostly failing.",
    )
    quantity_hoarding_rate: float = Field(
        default=c.DEFAULT_QUANTITY_HOARDING_RATE,
        ge=0.0,
        le=0.5,
        description="Share of orders that take 20-100 units of one product at its normal price.",
    )
    anomaly_kinds: list[str] = Field(
        default_factory=lambda: list(c.ANOMALY_KINDS),
        description=f"Kinds of anomaly injected (default all: {', '.join(c.ANOMALY_KINDS)}); a kind left out is "
        "not injected and the others keep their rates.",
    )

    schedule: bool = Field(
        default=False,
        description="Whether the daily simulation schedule simulates yesterday's traffic into the store; only a "
        "demo sets it (a real store's data comes from the landing zone).",
    )

    @field_validator("anomaly_kinds")
    @classmethod
    def _anomaly_kinds_are_known(cls, value: list[str]) -> list[str]:
        return list(check_anomaly_kinds(value))

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
    holdout_days: int = Field(
        default=c.DEFAULT_HOLDOUT_DAYS,
        ge=0,
        description="Latest days kept out of training: the window ends this many days before the latest day with "
        "features, and detector_evaluation reports those days as out-of-time figures. 0 trains on the latest days "
        f"(a real store); `anomalens run` uses {c.DEMO_HOLDOUT_DAYS} when it simulates, unless the settings say otherwise.",
    )


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

    thresholds: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description=(
            "Thresholds that replace the fitted ones, per entity type and detector, and for the ensemble (`ensemble`, "
            f"default {c.ENSEMBLE_THRESHOLD:g}): e.g. {{order: {{zscore: 6.5, ensemble: 0.9}}}}. Written by `anomalens "
            "thresholds --apply` from the analysts' verdicts; a retrained model keeps its entity's value."
        ),
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds_name_entities_and_detectors(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        known = (*c.DETECTOR_NAMES, c.DETECTOR_ENSEMBLE)
        for entity_type, by_detector in value.items():
            if entity_type not in c.ENTITY_TYPES:
                raise ValueError(f"unknown entity type {entity_type!r} (expected {', '.join(c.ENTITY_TYPES)})")
            for detector, threshold in by_detector.items():
                if detector not in known:
                    raise ValueError(f"{entity_type}: unknown detector {detector!r} (expected {', '.join(known)})")
                if not threshold > 0:
                    raise ValueError(f"{entity_type}.{detector}: threshold {threshold} is not positive")
        return value

    def threshold_override(self, detector: str, entity_type: str) -> float | None:
        """The threshold the settings set for this detector and entity type, or None to keep the fitted one."""
        value = self.thresholds.get(entity_type, {}).get(detector)
        return None if value is None else float(value)

    def ensemble_threshold(self, entity_type: str) -> float:
        """Above which ensemble score a row of this entity type is flagged."""
        return self.threshold_override(c.DETECTOR_ENSEMBLE, entity_type) or c.ENSEMBLE_THRESHOLD

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


class FeaturesConfig(dg.Config):
    """How the feature assets' per-entity baselines read the history."""

    baseline_days: int = Field(
        default=c.DEFAULT_BASELINE_DAYS,
        ge=1,
        le=c.DEFAULT_BASELINE_DAYS,
        description="Earlier days whose summaries the customer, IP, product and store baselines read. At most "
        f"{c.DEFAULT_BASELINE_DAYS}: the days a late-landed day refreshes by itself reach that far.",
    )
    baseline_shrinkage: int = Field(
        default=c.DEFAULT_BASELINE_SHRINKAGE,
        ge=0,
        description="Pseudo-observations of the store-wide distribution in a shrunk baseline: an entity with n "
        "earlier observations weighs n / (n + this) against the store.",
    )


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


class IncidentsConfig(dg.Config):
    """How flagged rows are grouped into incidents (core/incidents.py)."""

    gap_minutes: float = Field(
        default=c.DEFAULT_INCIDENT_GAP_MINUTES,
        gt=0,
        description=(
            "Flagged rows of one session, customer or (anonymous rows) IP at most this many minutes apart "
            "belong to one incident."
        ),
    )


class WebhookTargetConfig(dg.Config):
    """A JSON webhook that receives every alert (POST, `Idempotency-Key` header)."""

    url: str | None = Field(default=None, description="URL the alerts are POSTed to as JSON.")
    url_env: str | None = Field(
        default=None,
        description="Environment variable holding the URL instead, for a webhook whose URL is itself the secret.",
    )
    token_env: str | None = Field(
        default=None,
        description="Environment variable holding the webhook's token (never the token itself); empty: no auth header.",
    )
    auth_header: str = Field(default="Authorization", description="Header that carries the token.")
    auth_scheme: str = Field(
        default="Bearer",
        description="Written before the token in the header ('Bearer <token>'); empty: the token alone.",
    )

    @model_validator(mode="after")
    def _one_url(self) -> WebhookTargetConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("webhook: give either url or url_env (the variable holding a secret URL)")
        return self


class SlackTargetConfig(dg.Config):
    """A Slack channel that receives every alert, posted with a bot token (dagster-slack's SlackResource)."""

    channel: str = Field(description="Channel to post to, e.g. '#fraud-alerts' or a channel id.")
    token_env: str = Field(
        default=c.DEFAULT_SLACK_TOKEN_ENV,
        description="Environment variable holding the Slack bot token (never the token itself).",
    )
    api_url: str = Field(
        default=c.DEFAULT_SLACK_API_URL, description="Base URL of Slack's Web API (change only for a proxy or a test)."
    )


class EmailTargetConfig(dg.Config):
    """Recipients who receive every alert by e-mail over SMTP."""

    host: str = Field(description="SMTP server.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587 for STARTTLS submission).")
    sender: str = Field(description="From address of the alerts.")
    recipients: list[str] = Field(min_length=1, description="To addresses.")
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS before logging in.")
    user_env: str | None = Field(
        default=None, description="Environment variable holding the SMTP user name; empty: no login."
    )
    password_env: str | None = Field(
        default=None, description="Environment variable holding the SMTP password (never the password itself)."
    )


class AlertsConfig(dg.Config):
    """Who is told about new incidents (and a store gone quiet), and how failed deliveries are retried."""

    # A secret pasted into the section by mistake must not be echoed by the error that rejects it.
    model_config = ConfigDict(hide_input_in_errors=True)

    min_severity: str = Field(
        default=c.DEFAULT_ALERT_MIN_SEVERITY,
        description=f"Incidents of this severity or worse are notified ({', '.join(c.SEVERITIES)}).",
    )
    notify_since_days: float = Field(
        default=c.DEFAULT_ALERT_NOTIFY_SINCE_DAYS,
        gt=0,
        description="Incidents whose last row is older than this many days are never notified (turning alerts on "
        "over a long history does not send its past).",
    )
    stale_after_hours: float = Field(
        default=c.DEFAULT_STALE_AFTER_HOURS,
        gt=0,
        description="Alert once when no landed or simulated rows have arrived for this many hours.",
    )
    retry_initial_seconds: float = Field(
        default=c.DEFAULT_ALERT_RETRY_INITIAL_SECONDS,
        gt=0,
        description="Wait after a failed delivery before the first retry; each next wait doubles.",
    )
    retry_max_seconds: float = Field(
        default=c.DEFAULT_ALERT_RETRY_MAX_SECONDS, gt=0, description="Longest wait between two delivery attempts."
    )
    send_timeout_seconds: float = Field(
        default=c.DEFAULT_ALERT_SEND_TIMEOUT_SECONDS, gt=0, description="Give up on one attempt after this long."
    )
    webhook: WebhookTargetConfig | None = Field(default=None, description="JSON webhook target.")
    slack: SlackTargetConfig | None = Field(default=None, description="Slack target.")
    email: EmailTargetConfig | None = Field(default=None, description="E-mail target.")

    @field_validator("min_severity")
    @classmethod
    def _severity_is_known(cls, value: str) -> str:
        if value not in c.SEVERITIES:
            raise ValueError(f"must be one of {', '.join(c.SEVERITIES)}, got {value!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _targets_name_known_keys(cls, values: Any) -> Any:
        # Config classes accept unknown nested keys silently: a typo (`tokn_env`) must fail naming it.
        if isinstance(values, Mapping):
            for name, target_class in (
                ("webhook", WebhookTargetConfig),
                ("slack", SlackTargetConfig),
                ("email", EmailTargetConfig),
            ):
                target = values.get(name)
                if isinstance(target, Mapping):
                    unknown = sorted(set(target) - set(target_class.model_fields))
                    if unknown:
                        raise ValueError(
                            f"unknown key(s) {', '.join(unknown)} in '{name}' "
                            f"(known: {', '.join(sorted(target_class.model_fields))})"
                        )
        return values

    @model_validator(mode="after")
    def _retry_delays_are_ordered(self) -> AlertsConfig:
        if self.retry_initial_seconds > self.retry_max_seconds:
            raise ValueError(
                f"retry_initial_seconds ({self.retry_initial_seconds}) exceeds retry_max_seconds ({self.retry_max_seconds})"
            )
        return self


SIMULATION_SECTION = "simulation"
LANDING_SECTION = "landing"
INCIDENTS_SECTION = "incidents"
ALERTS_SECTION = "alerts"
FEATURES_SECTION = "features"
SETTINGS_SECTIONS: dict[str, type[dg.Config]] = {
    SIMULATION_SECTION: SimulationConfig,
    "training": TrainingConfig,
    "detection": DetectionConfig,
    LANDING_SECTION: LandingConfig,
    INCIDENTS_SECTION: IncidentsConfig,
    ALERTS_SECTION: AlertsConfig,
    FEATURES_SECTION: FeaturesConfig,
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


class RecordFeedbackConfig(dg.Config):
    """An analyst's verdict, given from the launchpad (`record_feedback_job`)."""

    verdict: str = Field(description="confirm (an anomaly: fraud, abuse, a fault) or dismiss (normal for this store).")
    incident_id: str | None = Field(default=None, description="The incident judged (leave empty to judge an entity).")
    entity: str | None = Field(
        default=None,
        description="Instead of an incident, one row: activity:ID or order:ID (confirming an unflagged "
        "row records a miss).",
    )
    note: str | None = Field(default=None, description="Why: kept with the verdict.")
    by: str | None = Field(default=None, description="Who gives the verdict.")
    allow: str | None = Field(
        default=None,
        description="With dismiss: 'ip' or 'customer' allows the incident's (or entity's) IPs or customers, so their "
        "incidents are recorded but raise no alert.",
    )
    days: float | None = Field(default=None, gt=0, description="How many days the allow rule lasts.")


class CalibrationConfig(dg.Config):
    """How thresholds are calibrated on analysts' verdicts."""

    min_verdicts: int = Field(
        default=c.MIN_CALIBRATION_VERDICTS,
        ge=2,
        description="Judged rows of an entity type (an incident's verdict judges each of its rows) needed before a "
        "threshold is proposed for it.",
    )
