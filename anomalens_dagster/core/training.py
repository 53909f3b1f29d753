"""What each detector trains on: the entity's feature table, a trailing window, a reproducible sample."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from anomalens_dagster.constants import (
    ACTIVITY_FEATURES,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    FEATURES_SCHEMA,
    ORDER_FEATURES,
)
from anomalens_dagster.core.features import (
    ACTIVITY_CATEGORICAL_COLUMNS,
    ACTIVITY_FEATURE_COLUMNS,
    ORDER_FEATURE_COLUMNS,
)

logger = logging.getLogger(__name__)

# Feature columns the detectors see; the feature tables hold more, for analysts and explanations.
# Left out: identifiers (customer_id), calendar fields (hour, day of week: the store's traffic has a
# daily cycle, and an hour is no reason for alarm on its own), and columns whose rare values are
# normal: time_since_last_activity_ip is days for an IP's first action of a visit, and
# session_duration_seconds is 0 for every one-action session. The plain amount-to-items ratio gives
# way to its logarithm, which puts a tenth and ten times the items' price equally far out.
# amount_to_customer_median_ratio stays for the reasons (anomalies.py) only: most customers have one
# or two earlier orders in a few weeks, so their "usual" amount is one order's, and a normal order
# read as 60-115 times it (a customer whose earlier order was small, or itself abnormal). As an
# input it gave the ensemble 10 false alarms on a 7-day store (seed 11; order F1 0.944), without it
# none (0.986), and no other seed lost a caught order.
_NOT_DETECTOR_INPUTS = frozenset(
    {
        "customer_id",
        "timestamp_hour",
        "timestamp_dayofweek",
        "time_since_last_activity_ip",
        "session_duration_seconds",
        "hour_of_day",
        "day_of_week",
        "amount_to_items_ratio",
        "amount_to_customer_median_ratio",
        # How much history a customer has in the baseline window: loyal and business customers reach
        # values far above the rest, which says nothing unusual by itself; the amount, hour, IP and
        # user-agent baselines (detector inputs) say what is unusual against that history.
        "customer_orders_in_window",
        "customer_spend_in_window",
        # Rare indicators that are benign alone: the z-score detector flags any |z| above 5, which a
        # 0/1 or mostly-0 column reaches whenever it is set. As inputs on a 7-day store (seed 11) they
        # pushed normal rows past it by themselves: ip_distinct_emails_24h 2.2 % and _1h 1.4 % of
        # normal activities, ip_new_for_customer 1.1 %, user_agent_new_for_customer 1.1 %,
        # customer_account_age_days 1.6 % of normal orders (activity ensemble F1 0.97 -> 0.46, order
        # 0.99 -> 0.70). They stay in the tables for the reasons and for analysts until the detectors
        # weigh a rare value by how rare it is.
        "ip_distinct_emails_1h",
        "ip_distinct_emails_24h",
        "ip_new_for_customer",
        "user_agent_new_for_customer",
        "customer_account_age_days",
        # Without those, 66 of the 166 normal activities the ensemble still flagged (0.24 %, against
        # 0.1 % before the baselines) were lone failed logins reading 0.25 here; the per-IP
        # failed-login counts already tell a run of failures from one.
        "ip_failed_login_share_24h",
    }
)
ACTIVITY_DETECTOR_COLUMNS = tuple(c for c in ACTIVITY_FEATURE_COLUMNS if c not in _NOT_DETECTOR_INPUTS)
ORDER_DETECTOR_COLUMNS = tuple(c for c in ORDER_FEATURE_COLUMNS if c not in _NOT_DETECTOR_INPUTS)


@dataclass(frozen=True)
class EntityFeatures:
    """Where an entity's features live and which columns the detectors see."""

    entity_type: str
    table: str
    time_column: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def qualified_table(self) -> str:
        return f"{FEATURES_SCHEMA}.{self.table}"


ENTITY_FEATURES: dict[str, EntityFeatures] = {
    ENTITY_ACTIVITY: EntityFeatures(
        ENTITY_ACTIVITY, ACTIVITY_FEATURES, "timestamp", ACTIVITY_DETECTOR_COLUMNS, ACTIVITY_CATEGORICAL_COLUMNS
    ),
    ENTITY_ORDER: EntityFeatures(ENTITY_ORDER, ORDER_FEATURES, "created_at", ORDER_DETECTOR_COLUMNS, ()),
}


@dataclass(frozen=True)
class TrainingFrame:
    """Feature rows to fit on, and the window [start, end) they were drawn from.

    `rows_in_window` counts the rows with every detector feature; `rows_missing_features` those
    left out because some detector feature is NULL (days written before the column was added).
    """

    frame: pd.DataFrame
    start: dt.datetime
    end: dt.datetime
    rows_in_window: int
    rows_missing_features: int = 0


class NoTrainingDataError(LookupError):
    """The feature table is missing or empty, so there is nothing to train on."""


def load_training_frame(
    conn: duckdb.DuckDBPyConnection, entity: EntityFeatures, training_days: int, max_rows: int, seed: int
) -> TrainingFrame:
    """The last `training_days` whole days of features, ending with the latest day that has any."""
    try:
        latest = conn.execute(f"SELECT max({entity.time_column}) FROM {entity.qualified_table}").fetchone()[0]
    except duckdb.CatalogException:
        latest = None
    if latest is None:
        raise NoTrainingDataError(
            f"{entity.qualified_table} has no rows: materialise {entity.table} for some days before training"
        )
    end = dt.datetime.combine(latest.date() + dt.timedelta(days=1), dt.time())
    training = load_feature_sample(conn, entity, end - dt.timedelta(days=training_days), end, max_rows, seed)
    if training.rows_in_window == 0:
        raise NoTrainingDataError(
            f"{entity.qualified_table} has no row with every detector feature in [{training.start}, {training.end}) "
            f"({training.rows_missing_features} rows miss some): rebuild those days with "
            f"`anomalens rebuild {entity.table}` before training"
        )
    return training


def load_feature_sample(
    conn: duckdb.DuckDBPyConnection,
    entity: EntityFeatures,
    start: dt.datetime,
    end: dt.datetime,
    max_rows: int | None = None,
    seed: int = 0,
) -> TrainingFrame:
    """Feature rows in [start, end); past `max_rows` (None: no limit), a uniform sample of them.

    The sample is drawn with `seed` from the rows ordered by id, so the same data and seed always
    give the same rows. Rows where a detector feature is NULL are never read: they belong to days
    stored before that feature column was added (the table was migrated, its old rows kept), and
    stay so until those days are re-materialised (`anomalens rebuild`). How many were left out is
    logged and returned.
    """
    feature_columns = (*entity.numeric, *entity.categorical)
    in_window = f"{entity.time_column} >= $start AND {entity.time_column} < $end"
    complete = " AND ".join(f"{column} IS NOT NULL" for column in feature_columns)
    window = {"start": start, "end": end}
    ((missing,),) = conn.execute(
        f"SELECT count(*) FROM {entity.qualified_table} WHERE {in_window} AND NOT ({complete})", window
    ).fetchall()
    if missing:
        logger.warning(
            "skipped %d %s rows in [%s, %s) whose detector features are missing (written before a feature "
            "column was added): rebuild their days with `anomalens rebuild %s`",
            missing,
            entity.entity_type,
            start,
            end,
            entity.table,
        )
    columns = ", ".join(("id", entity.time_column, *feature_columns))
    frame = conn.execute(
        f"SELECT {columns} FROM {entity.qualified_table} WHERE {in_window} AND {complete} ORDER BY id", window
    ).df()
    rows_in_window = len(frame)
    if max_rows is not None and rows_in_window > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(rows_in_window, size=max_rows, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)
    logger.info("sampled %d of %d %s rows in [%s, %s)", len(frame), rows_in_window, entity.entity_type, start, end)
    return TrainingFrame(
        frame=frame, start=start, end=end, rows_in_window=rows_in_window, rows_missing_features=missing
    )
