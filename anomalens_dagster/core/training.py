"""What each detector trains on: the entity's feature table, a trailing window, a reproducible sample.

Training exclusion: attacks cannot poison the models
    Retraining on a window that holds attacks would teach the detectors that the attack is normal.
    The window therefore leaves out (`training_exclusions`):
    - rows the models in force flagged High: a record of theirs in `detections.anomalies` has
      severity High, whichever detector (or the ensemble) wrote it; the records of a day come from
      the model versions that scored it, the versions in force then. Any detector's High counts, not
      only the ensemble's: an attack that is a few percent of the window makes the ensemble's
      calibration read it as ordinary (core/detectors/calibration.py), while a detector with an
      absolute threshold (z-score, DBSCAN's radius) still calls it far out. A normal row one detector
      calls High is one row left out of thousands like it;
    - every entity in `ops.confirmed_anomalies`, the analyst's confirmed anomalies, when that view
      exists (no feedback yet: nothing confirmed).
    How many rows each reason left out is returned and recorded with the model. Attacks the models
    in force missed stay in; the tail calibration (core/detectors/calibration.py) keeps up to about
    2 % of a window from making their scores look ordinary, not more. Measured (README, "Training
    that attacks cannot poison"): six copies of a day's attacks landed into three training days, the
    ensemble's recall on that day's attacks went from 0.874 to 1.000 after retraining, and to 0.107
    with the exclusion switched off.

Hold-out days
    With `holdout_days` N the window ends N days before the latest day: the models never see the
    last N days, which are then scored out of time, as new days are in production
    (`detector_evaluation` reports them apart).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from anomalens_dagster.constants import (
    ACTIVITY_FEATURES,
    ANOMALIES,
    CONFIRMED_ANOMALIES,
    DETECTIONS_SCHEMA,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    FEATURES_SCHEMA,
    OPS_SCHEMA,
    ORDER_FEATURES,
    SEVERITY_HIGH,
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

    `rows_in_window` counts the rows with every detector feature that no exclusion left out;
    `rows_missing_features` those left out because some detector feature is NULL (days written
    before the column was added); `rows_excluded` the rows each training exclusion left out, by
    reason (a row with both reasons counts under each).
    """

    frame: pd.DataFrame
    start: dt.datetime
    end: dt.datetime
    rows_in_window: int
    rows_missing_features: int = 0
    rows_excluded: dict[str, int] = field(default_factory=dict)

    def exclusion_metrics(self) -> dict[str, int]:
        """What the training exclusions left out, as training metrics: `excluded_<reason>` per reason."""
        return {f"excluded_{reason}": count for reason, count in self.rows_excluded.items()}


@dataclass(frozen=True)
class TrainingExclusion:
    """Rows a training window leaves out: `ids_sql` selects their ids (`$entity_type` bound)."""

    reason: str
    ids_sql: str


EXCLUDED_FLAGGED_HIGH = "flagged_high"
EXCLUDED_CONFIRMED = "confirmed_anomaly"


def training_exclusions(conn: duckdb.DuckDBPyConnection) -> list[TrainingExclusion]:
    """The exclusions that apply to this store: those whose table or view exists (module docstring)."""
    exclusions = []
    if _relation_exists(conn, DETECTIONS_SCHEMA, ANOMALIES):
        exclusions.append(
            TrainingExclusion(
                EXCLUDED_FLAGGED_HIGH,
                f"SELECT entity_id FROM {DETECTIONS_SCHEMA}.{ANOMALIES} WHERE entity_type = $entity_type "
                f"AND severity = '{SEVERITY_HIGH}'",
            )
        )
    if _relation_exists(conn, OPS_SCHEMA, CONFIRMED_ANOMALIES):
        exclusions.append(
            TrainingExclusion(
                EXCLUDED_CONFIRMED,
                f"SELECT entity_id FROM {OPS_SCHEMA}.{CONFIRMED_ANOMALIES} WHERE entity_type = $entity_type",
            )
        )
    return exclusions


def _relation_exists(conn: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    """Whether `schema.name` is a table or a view of the connection's database."""
    ((count,),) = conn.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = $schema AND table_name = $name",
        {"schema": schema, "name": name},
    ).fetchall()
    return count > 0


class NoTrainingDataError(LookupError):
    """The feature table is missing or empty, so there is nothing to train on."""


def load_training_frame(
    conn: duckdb.DuckDBPyConnection,
    entity: EntityFeatures,
    training_days: int,
    max_rows: int,
    seed: int,
    holdout_days: int = 0,
) -> TrainingFrame:
    """`training_days` whole days of features ending `holdout_days` before the latest day that has
    any, without the rows the training exclusions name (module docstring)."""
    try:
        latest = conn.execute(f"SELECT max({entity.time_column}) FROM {entity.qualified_table}").fetchone()[0]
    except duckdb.CatalogException:
        latest = None
    if latest is None:
        raise NoTrainingDataError(
            f"{entity.qualified_table} has no rows: materialise {entity.table} for some days before training"
        )
    if holdout_days < 0:
        raise ValueError(f"holdout_days must be >= 0, got {holdout_days}")
    end = dt.datetime.combine(latest.date() + dt.timedelta(days=1 - holdout_days), dt.time())
    ((earliest,),) = conn.execute(f"SELECT min({entity.time_column}) FROM {entity.qualified_table}").fetchall()
    if earliest >= end:
        raise NoTrainingDataError(
            f"{entity.qualified_table} holds the days {earliest.date()} .. {latest.date()}, all of them within the "
            f"{holdout_days} held-out day(s): lower training.holdout_days or materialise more days before training"
        )
    training = load_feature_sample(
        conn, entity, end - dt.timedelta(days=training_days), end, max_rows, seed, training_exclusions(conn)
    )
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
    exclusions: Sequence[TrainingExclusion] = (),
) -> TrainingFrame:
    """Feature rows in [start, end) but those `exclusions` name; past `max_rows` (None: no
    limit), a uniform sample of them.

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
    rows_excluded = {}
    kept = ""
    for exclusion in exclusions:
        ((excluded,),) = conn.execute(
            f"SELECT count(*) FROM {entity.qualified_table} WHERE {in_window} AND {complete} "
            f"AND id IN ({exclusion.ids_sql})",
            {**window, "entity_type": entity.entity_type},
        ).fetchall()
        rows_excluded[exclusion.reason] = excluded
        kept += f" AND id NOT IN ({exclusion.ids_sql})"
    if any(rows_excluded.values()):
        logger.info("left %s rows in [%s, %s) out of training: %s", entity.entity_type, start, end, rows_excluded)
    columns = ", ".join(("id", entity.time_column, *feature_columns))
    parameters = {**window, "entity_type": entity.entity_type} if exclusions else window
    frame = conn.execute(
        f"SELECT {columns} FROM {entity.qualified_table} WHERE {in_window} AND {complete}{kept} ORDER BY id",
        parameters,
    ).df()
    rows_in_window = len(frame)
    if max_rows is not None and rows_in_window > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(rows_in_window, size=max_rows, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)
    logger.info("sampled %d of %d %s rows in [%s, %s)", len(frame), rows_in_window, entity.entity_type, start, end)
    return TrainingFrame(
        frame=frame,
        start=start,
        end=end,
        rows_in_window=rows_in_window,
        rows_missing_features=missing,
        rows_excluded=rows_excluded,
    )
