"""Feature engineering: DuckDB store tables in, one feature row per activity or order out.

One module per concern:

- ``activities``: the activity feature rows (per-IP windows, sessions, purchases) and their chunked
  computation; ``activity_baselines``: the as-of customer and IP baselines they carry;
- ``orders``: the order feature rows, with the customer, product and store baselines;
- ``day_summaries``: the per-day, per-entity summaries the baselines read, so that a day's
  features cost the same on the store's 300th day as on its 3rd;
- ``common``: SQL snippets and the sorted-window arithmetic they share.

Every feature of an event reads only earlier data (plus the documented look-ahead of the activity
window features), so a day computed alone equals the same day computed within a range, and loading
a later day changes no earlier day's features.
"""

from anomalens_dagster.core.features.activities import (
    ACTIVITY_CATEGORICAL_COLUMNS,
    ACTIVITY_CHUNK_ROWS,
    ACTIVITY_COLUMNS,
    ACTIVITY_DTYPES,
    ACTIVITY_EXTRA_FEATURE_COLUMNS,
    ACTIVITY_FEATURE_COLUMNS,
    ACTIVITY_KEY_COLUMNS,
    ACTIVITY_REQUIRED_FEATURE_COLUMNS,
    ACTIVITY_SUMMARY_TABLES,
    DETAILS_JSON_PATHS_SQL,
    NEAREST_ACTIVITY_CAP_SECONDS,
    compute_activity_features,
    iter_activity_features,
)
from anomalens_dagster.core.features.activity_baselines import (
    ACCOUNT_AGE_CAP_DAYS,
    ACTIVITY_BASELINE_COLUMNS,
    CUSTOMER_BASELINE_COLUMNS,
    FAILED_LOGIN_PSEUDO_ATTEMPTS,
    IP_GAP_ACTIONS,
    IP_GAP_CAP_SECONDS,
    IP_GAP_MIN_GAPS,
)
from anomalens_dagster.core.features.day_summaries import (
    DAY_SUMMARY_COLUMN_DESCRIPTIONS,
    DAY_SUMMARY_TABLES,
    compute_day_summaries,
    replace_day_summaries,
    unsummarised_days,
    write_day_summaries,
)
from anomalens_dagster.core.features.orders import (
    ORDER_BASELINE_COLUMNS,
    ORDER_COLUMNS,
    ORDER_DTYPES,
    ORDER_EXTRA_FEATURE_COLUMNS,
    ORDER_FEATURE_COLUMNS,
    ORDER_KEY_COLUMNS,
    ORDER_REQUIRED_FEATURE_COLUMNS,
    ORDER_SUMMARY_TABLES,
    compute_order_features,
)

__all__ = [
    "ACCOUNT_AGE_CAP_DAYS",
    "ACTIVITY_BASELINE_COLUMNS",
    "ACTIVITY_CATEGORICAL_COLUMNS",
    "ACTIVITY_CHUNK_ROWS",
    "ACTIVITY_COLUMNS",
    "ACTIVITY_DTYPES",
    "ACTIVITY_EXTRA_FEATURE_COLUMNS",
    "ACTIVITY_FEATURE_COLUMNS",
    "ACTIVITY_KEY_COLUMNS",
    "ACTIVITY_REQUIRED_FEATURE_COLUMNS",
    "ACTIVITY_SUMMARY_TABLES",
    "CUSTOMER_BASELINE_COLUMNS",
    "DAY_SUMMARY_COLUMN_DESCRIPTIONS",
    "DAY_SUMMARY_TABLES",
    "DETAILS_JSON_PATHS_SQL",
    "FAILED_LOGIN_PSEUDO_ATTEMPTS",
    "IP_GAP_ACTIONS",
    "IP_GAP_CAP_SECONDS",
    "IP_GAP_MIN_GAPS",
    "NEAREST_ACTIVITY_CAP_SECONDS",
    "ORDER_BASELINE_COLUMNS",
    "ORDER_COLUMNS",
    "ORDER_DTYPES",
    "ORDER_EXTRA_FEATURE_COLUMNS",
    "ORDER_FEATURE_COLUMNS",
    "ORDER_KEY_COLUMNS",
    "ORDER_REQUIRED_FEATURE_COLUMNS",
    "ORDER_SUMMARY_TABLES",
    "compute_activity_features",
    "compute_day_summaries",
    "compute_order_features",
    "iter_activity_features",
    "replace_day_summaries",
    "unsummarised_days",
    "write_day_summaries",
]
