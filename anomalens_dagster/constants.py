"""Names and defaults shared by SQL, asset keys, configs and the pure core (no dagster import)."""

from __future__ import annotations

# --- Storage -------------------------------------------------------------------------------------
DEFAULT_DUCKDB_PATH = "data/anomalens.duckdb"
DUCKDB_PATH_ENV_VAR = "ANOMALENS_DUCKDB_PATH"
DUCKDB_POOL = "duckdb"  # concurrency pool shared by every asset that touches the DuckDB file
# Run tag of every run that writes the DuckDB file; the instance's run queue runs one such run at a time.
DUCKDB_RUN_TAG = "anomalens/duckdb"
DUCKDB_WRITER_TAGS = {DUCKDB_RUN_TAG: "writer"}
# Runs that schedules, sensors and automation start unattended are re-executed by the daemon when they
# fail, up to twice (jobs.py says why that is safe).
UNATTENDED_RUN_TAGS = {**DUCKDB_WRITER_TAGS, "dagster/max_retries": "2"}

# The deployment's settings file, read by every run (settings.py); it belongs to the deployment, not the repository.
DEFAULT_SETTINGS_PATH = "data/settings.yaml"
SETTINGS_ENV_VAR = "ANOMALENS_SETTINGS"

# Landing zone: where store files arrive (see core/landing.py for the format).
DEFAULT_LANDING_DIR = "data/landing"
LANDING_DIR_ENV_VAR = "ANOMALENS_LANDING_DIR"

STORE_SCHEMA = "store"
FEATURES_SCHEMA = "features"
ML_SCHEMA = "ml"
DETECTIONS_SCHEMA = "detections"
OPS_SCHEMA = "ops"
ALL_SCHEMAS = (STORE_SCHEMA, FEATURES_SCHEMA, ML_SCHEMA, DETECTIONS_SCHEMA, OPS_SCHEMA)

CATEGORIES = "categories"
PRODUCTS = "products"
CUSTOMERS = "customers"
ORDERS = "orders"
ORDER_ITEMS = "order_items"
USER_ACTIVITIES = "user_activities"
SIMULATION_LABELS = "simulation_labels"

# --- Asset groups --------------------------------------------------------------------------------
STORE_GROUP = "store"
FEATURES_GROUP = "features"
MODELS_GROUP = "models"
DETECTIONS_GROUP = "detections"
REPORTS_GROUP = "reports"
OPS_GROUP = "ops"

# --- Automation ----------------------------------------------------------------------------------
# Days a new model version re-scores by itself, ending today (declarative automation, automation.py).
DEFAULT_RESCORE_DAYS = 7
# When the detectors retrain by themselves: Mondays 00:30 UTC.
WEEKLY_TRAINING_CRON = "30 0 * * 1"
# "0" turns the daily simulation schedule off by default (a store fed by the landing zone only).
DEMO_MODE_ENV_VAR = "ANOMALENS_DEMO_MODE"

# --- Partitions ----------------------------------------------------------------------------------
PARTITIONS_START_DATE = "2026-01-01"

# Rows a simulated day writes carry this value in their `source` column; landed rows carry the file.
SIMULATOR_SOURCE = "simulator"

# --- Store vocabulary ----------------------------------------------------------------------------
ACTION_TYPES = (
    "view_page",
    "view_product",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "login",
    "failed_login",
    "logout",
    "purchase",
    "update_profile",
)
ORDER_STATUSES = ("pending", "processing", "shipped", "delivered", "cancelled")

ANOMALY_KIND_HIGH_TOTAL = "order_high_total"
ANOMALY_KIND_LOW_TOTAL = "order_low_total"
ANOMALY_KIND_BURST = "activity_burst"
ANOMALY_KIND_FAILED_LOGINS = "failed_login_run"
ANOMALY_KIND_ACCOUNT_TAKEOVER = "account_takeover"
ANOMALY_KIND_CARD_TESTING = "card_testing"
ANOMALY_KIND_SCRAPING = "scraping"
ANOMALY_KIND_CREDENTIAL_STUFFING = "credential_stuffing"
ANOMALY_KIND_QUANTITY_HOARDING = "quantity_hoarding"
ANOMALY_KINDS = (
    ANOMALY_KIND_HIGH_TOTAL,
    ANOMALY_KIND_LOW_TOTAL,
    ANOMALY_KIND_BURST,
    ANOMALY_KIND_FAILED_LOGINS,
    ANOMALY_KIND_ACCOUNT_TAKEOVER,
    ANOMALY_KIND_CARD_TESTING,
    ANOMALY_KIND_SCRAPING,
    ANOMALY_KIND_CREDENTIAL_STUFFING,
    ANOMALY_KIND_QUANTITY_HOARDING,
)
ENTITY_ORDER = "order"
ENTITY_ACTIVITY = "activity"

# --- Simulation defaults -------------------------------------------------------------------------
DEFAULT_SEED = 42
DEFAULT_NUM_CATEGORIES = 12
DEFAULT_NUM_PRODUCTS = 300
DEFAULT_NUM_CUSTOMERS = 3_000
DEFAULT_ORDERS_PER_DAY = 1_000
DEFAULT_ACTIVITIES_PER_DAY = 10_000
DEFAULT_ORDER_ANOMALY_RATE = 0.02  # share of a day's orders whose total is abnormal
DEFAULT_BURST_RATE = 0.01  # share of a day's activities that belong to injected bursts
DEFAULT_FAILED_LOGIN_RATE = 0.005  # share of a day's activities that belong to failed-login runs
# The kinds added for issue 14. With these defaults about 3 % of a day's activities and 3 % of its
# orders are injected (measured at the default sizes: README, "The simulated store").
DEFAULT_ACCOUNT_TAKEOVER_RATE = 0.003  # share of a day's activities in account takeovers
DEFAULT_CARD_TESTING_RATE = 0.003  # share of a day's activities in card-testing runs
DEFAULT_SCRAPING_RATE = 0.005  # share of a day's activities in scraping sweeps
DEFAULT_CREDENTIAL_STUFFING_RATE = 0.004  # share of a day's activities in credential stuffing
DEFAULT_QUANTITY_HOARDING_RATE = 0.005  # share of a day's orders that hoard one product

# --- Training and detection defaults -------------------------------------------------------------
DEFAULT_TRAINING_DAYS = 30
DEFAULT_MAX_TRAINING_ROWS = 200_000
# z is measured in log space for skewed features (core/detectors/zscore.py); at 3 and 4 the
# simulated normal traffic had 9 % and 2 % of its activities flagged, at 5 under 0.1 %.
DEFAULT_Z_THRESHOLD = 5.0
# DBSCAN fits on DEFAULT_DBSCAN_MAX_FIT_ROWS sampled rows, and the bursts of all episodes lie
# within eps of one another: at 1 % of the activities, a 2,000-row sample holds 20 +- 4.4 burst
# rows, so a min_samples of 20 made them a core sample, called normal, in about half the stores
# (30 and 26 sampled burst rows at seeds 11 and 123: DBSCAN caught 10 % and 26 % of the bursts).
# 40, 2 % of the sample (the share of anomalies the isolation forest assumes), lies 4.5 standard
# deviations above that count. eps 0.75 (RMS) kept 1-1.5 % of normal rows as noise.
DEFAULT_DBSCAN_EPS = 0.75
DEFAULT_DBSCAN_MIN_SAMPLES = 40
# scikit-learn's "auto" flagged 6-7 % of the simulated activities and 18-19 % of the orders.
DEFAULT_IFOREST_CONTAMINATION = 0.02
DEFAULT_IFOREST_N_ESTIMATORS = 100  # scikit-learn's default; 200 trees scored under 100k rows/s on one core
# The autoencoder's threshold is this quantile of its training errors, per entity type: the share
# of rows it may call anomalous. Its errors rank abnormal orders almost perfectly (PR-AUC 0.99) but
# at 0.995 it flagged only a quarter of them (2 % of the simulated orders are abnormal); at 0.98 on
# activities it flagged 1.6 % of normal ones, which the median ensemble then let through with DBSCAN.
DEFAULT_AUTOENCODER_THRESHOLD_QUANTILE = 0.995  # the detector's own default, whatever it scores
DEFAULT_AUTOENCODER_THRESHOLD_QUANTILES = {ENTITY_ACTIVITY: DEFAULT_AUTOENCODER_THRESHOLD_QUANTILE, ENTITY_ORDER: 0.98}
DEFAULT_AUTOENCODER_EPOCHS = 20

# --- Features ------------------------------------------------------------------------------------
# Activity features of a range [start, end) read the store this far around it (the widest window
# looks 15 minutes back and, for the symmetric extras, 15 minutes ahead), plus each IP's last action
# before that and the whole of every session active in the range. A day's features therefore change
# when the first minutes of the next day, or later actions of its sessions, are loaded: re-compute
# the day before too.
ACTIVITY_FEATURES_LOOKBACK_SECONDS = 15 * 60
ACTIVITY_FEATURES_LOOKAHEAD_SECONDS = 15 * 60

# --- Entity baselines (core/features/day_summaries.py, core/features/*_baselines.py) -------------
# Days of history the per-entity baselines read: at most this many earlier days' summaries. Also the
# reach of automation's staleness rule (a summary day refreshes the features of the days after it).
DEFAULT_BASELINE_DAYS = 30
# Pseudo-observations of the store-wide distribution in a shrunk baseline: an entity with n earlier
# observations weighs n / (n + k) against the store's, so one or two earlier orders never make an
# extreme ratio (one earlier order: weight 1/6).
DEFAULT_BASELINE_SHRINKAGE = 5
ENTITY_DAY_SUMMARIES = "entity_day_summaries"  # the multi-asset writing the five summary tables below
CUSTOMER_DAY_SUMMARIES = "customer_day_summaries"
CUSTOMER_ACCESS_DAY_SUMMARIES = "customer_access_day_summaries"
IP_DAY_SUMMARIES = "ip_day_summaries"
PRODUCT_DAY_SUMMARIES = "product_day_summaries"
STORE_DAY_SUMMARIES = "store_day_summaries"

# --- Detectors and model registry ----------------------------------------------------------------
ENTITY_TYPES = (ENTITY_ORDER, ENTITY_ACTIVITY)
MODEL_REGISTRY = "model_registry"  # table in ML_SCHEMA

DETECTOR_ZSCORE = "zscore"
DETECTOR_ISOLATION_FOREST = "isolation_forest"
DETECTOR_DBSCAN = "dbscan"
DETECTOR_AUTOENCODER = "autoencoder"
DETECTOR_NAMES = (DETECTOR_ZSCORE, DETECTOR_ISOLATION_FOREST, DETECTOR_DBSCAN, DETECTOR_AUTOENCODER)
DETECTOR_ENSEMBLE = "ensemble"  # not a model: the combination of the four in detection scores

DEFAULT_EXPLAIN_TOP_K = 3
# Training rows DBSCAN is fitted on (a seeded sample when there are more). Scoring is a nearest-core
# query whose cost grows with the core samples: 2,000 keeps 25 activity columns above 100k rows/s.
DEFAULT_DBSCAN_MAX_FIT_ROWS = 2_000
DEFAULT_DBSCAN_EPS_QUANTILE = 0.99  # with eps unset: share of the sampled rows that become core samples
DEFAULT_AUTOENCODER_BATCH_SIZE = 1_024  # batch 32 on 200k rows took 81 s for 5 epochs, 1024 took 8 s
DEFAULT_AUTOENCODER_VALIDATION_FRACTION = 0.1
DEFAULT_AUTOENCODER_PATIENCE = 3  # epochs without a better validation loss before early stopping

# --- Derived tables (asset keys equal table names) -----------------------------------------------
ACTIVITY_FEATURES = "activity_features"
ORDER_FEATURES = "order_features"
ACTIVITY_SCORES = "activity_scores"
ORDER_SCORES = "order_scores"
DETECTOR_EVALUATION = "detector_evaluation"
STORE_SUMMARY = "store_summary"  # report tables live in DETECTIONS_SCHEMA too
ACTIVITY_TIMELINE = "activity_timeline"
ANOMALY_SUMMARY = "anomaly_summary"
ANOMALY_REPORT = "anomaly_report"  # an HTML file, not a table

# --- Evaluation ----------------------------------------------------------------------------------
# `anomaly_kind` of the evaluation row that pools every labelled kind of an entity type.
EVALUATION_ALL_KINDS = "all"

# --- Anomaly records -----------------------------------------------------------------------------
ANOMALIES = "anomalies"  # table in DETECTIONS_SCHEMA: one row per entity x detector hit
CONSOLIDATED_ANOMALIES = "consolidated_anomalies"  # table in DETECTIONS_SCHEMA: one row per entity
# The ensemble score is the median capped score / threshold ratio, or one sure detector's evidence on
# the same scale (core/scoring.py): above 1, about half the detectors agree or one is sure.
ENSEMBLE_THRESHOLD = 1.0

# --- Incidents -----------------------------------------------------------------------------------
INCIDENTS = "incidents"  # table in DETECTIONS_SCHEMA: flagged rows grouped into one row per incident
# Flagged rows of one IP, customer or session at most this far apart belong to one incident: a
# credential-stuffing run or a burst pauses seconds between actions, a shopper's next flagged order
# of the same spree comes within minutes (core/incidents.py).
DEFAULT_INCIDENT_GAP_MINUTES = 30.0

SEVERITY_LOW = "Low"
SEVERITY_MEDIUM = "Medium"
SEVERITY_HIGH = "High"
SEVERITIES = (SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH)  # in increasing order
# (Medium, High): a hit is Medium when score / threshold >= the first cut, High when >= the second.
# Each detector's score has its own shape, so each has its own cuts; core/anomalies.py says why.
SEVERITY_RATIO_CUTS: dict[str, tuple[float, float]] = {
    DETECTOR_ZSCORE: (1.5, 3.0),
    DETECTOR_ISOLATION_FOREST: (1.05, 1.15),
    DETECTOR_DBSCAN: (1.25, 2.0),
    DETECTOR_AUTOENCODER: (1.5, 4.0),
    # The middle detectors at 1.25 / 1.5 times their thresholds, or one detector's p below 1e-7.5 / 1e-9.
    DETECTOR_ENSEMBLE: (1.25, 1.5),
}

# --- Analyst feedback (contract B; core/feedback.py) -----------------------------------------------
ANALYST_FEEDBACK = "analyst_feedback"  # append-only table in OPS_SCHEMA: one row per verdict (and allowed value)
CONFIRMED_ANOMALIES = "confirmed_anomalies"  # view in OPS_SCHEMA: entities whose latest verdict is confirm
ACTIVE_ALLOW_RULES = "active_allow_rules"  # view in OPS_SCHEMA: IPs and customers allowed until a time
ENTITY_VERDICTS = "entity_verdicts"  # view in OPS_SCHEMA: each judged entity's latest verdict and outcome
VERDICT_CONFIRM = "confirm"
VERDICT_DISMISS = "dismiss"
VERDICTS = (VERDICT_CONFIRM, VERDICT_DISMISS)
ALLOW_IP = "ip"
ALLOW_CUSTOMER = "customer"
ALLOW_KINDS = (ALLOW_IP, ALLOW_CUSTOMER)
FEEDBACK_LANDING_KIND = "feedback"  # landing files named feedback*.csv|jsonl|parquet carry verdicts
THRESHOLD_CALIBRATION = "threshold_calibration"  # report table in DETECTIONS_SCHEMA
# Calibration proposes thresholds only from this many judged entities on: fewer say too little.
MIN_CALIBRATION_VERDICTS = 20

# --- Alerts --------------------------------------------------------------------------------------
ALERTS = "alerts"  # table in OPS_SCHEMA: the outbox, one row per (incident, target)
ALERT_OUTBOX = "alert_outbox"  # the asset that fills and sends the outbox
ALERT_TARGETS = ("webhook", "slack", "email")
DEFAULT_ALERT_MIN_SEVERITY = SEVERITY_HIGH
# A demo store is simulated once a day (00:15 UTC, yesterday's traffic): its newest row is then up
# to 24 h 15 min old just before the next day arrives, so 26 h leaves the schedule some slack.
DEFAULT_STALE_AFTER_HOURS = 26.0
# Turning alerts on over a long history must not mail its past: older incidents are left alone.
DEFAULT_ALERT_NOTIFY_SINCE_DAYS = 2.0
# Failed deliveries wait 30 s, 60 s, 120 s, ... at most an hour between attempts.
DEFAULT_ALERT_RETRY_INITIAL_SECONDS = 30.0
DEFAULT_ALERT_RETRY_MAX_SECONDS = 3600.0
DEFAULT_ALERT_SEND_TIMEOUT_SECONDS = 10.0
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_SLACK_TOKEN_ENV = "ANOMALENS_SLACK_TOKEN"
# --- Training exclusion --------------------------------------------------------------------------
# Days before the latest that `anomalens run` keeps out of training when simulating, so the demo's
# evaluation has out-of-time figures (a real store's training.holdout_days defaults to 0).
DEFAULT_HOLDOUT_DAYS = 0
DEMO_HOLDOUT_DAYS = 2
