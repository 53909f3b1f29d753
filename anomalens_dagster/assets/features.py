"""Feature assets: one engineered row per activity and per order, daily-partitioned."""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.assets.daily import replace_days_in_groups
from anomalens_dagster.constants import (
    ACTIVITY_FEATURES,
    DUCKDB_POOL,
    FEATURES_GROUP,
    FEATURES_SCHEMA,
    ORDER_FEATURES,
    ORDER_ITEMS,
    ORDERS,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.features import (
    ACTIVITY_FEATURE_COLUMNS,
    ORDER_FEATURE_COLUMNS,
    compute_order_features,
    iter_activity_features,
)
from anomalens_dagster.partitions import daily_partitions
from anomalens_dagster.resources import AnomaLensDuckDB

# A day's rolling windows read the previous day's last minutes (and the next day's first minutes
# when they are already stored), so a day depends on its own partition and the one before.
DAY_AND_DAY_BEFORE = dg.TimeWindowPartitionMapping(start_offset=-1, allow_nonexistent_upstream_partitions=True)


def _materialize_features(
    context: dg.AssetExecutionContext,
    duckdb: AnomaLensDuckDB,
    table: str,
    time_column: str,
    compute: Callable[[duckdb.DuckDBPyConnection, datetime, datetime], Iterable[pd.DataFrame]],
) -> dg.MaterializeResult:
    """Replace the feature rows of the run's days, a few days at a time; features are SQL window queries, read."""
    _, metadata = replace_days_in_groups(
        context,
        duckdb,
        FEATURES_SCHEMA,
        table,
        time_column,
        read=lambda conn, start, end: list(compute(conn, start, end)),
        compute=lambda frames, _start, _end: frames,
    )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name=ACTIVITY_FEATURES,
    group_name=FEATURES_GROUP,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep(USER_ACTIVITIES, partition_mapping=DAY_AND_DAY_BEFORE)],
    kinds={"duckdb", "numpy"},
    pool=DUCKDB_POOL,
)
def activity_features(context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    """Engineered features of each user activity: per-IP rolling counts, recency, session shape."""
    return _materialize_features(context, duckdb, ACTIVITY_FEATURES, "timestamp", iter_activity_features)


@dg.asset(
    name=ORDER_FEATURES,
    group_name=FEATURES_GROUP,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # The customer's usual amount looks at all of their earlier orders, hence the whole history.
    deps=[dg.AssetDep(ORDERS, partition_mapping=dg.AllPartitionMapping()), ORDER_ITEMS],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def order_features(context: dg.AssetExecutionContext, duckdb: AnomaLensDuckDB) -> dg.MaterializeResult:
    """Engineered features of each order: amount, size, time, amount against its items and its customer."""
    return _materialize_features(
        context,
        duckdb,
        ORDER_FEATURES,
        "created_at",
        lambda conn, start, end: [compute_order_features(conn, start, end)],
    )


# --- Asset checks -------------------------------------------------------------------------------


def _non_finite_check(table: str, columns: Sequence[str]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name="check_features_are_finite",
        description="No numeric feature is NULL, NaN or infinite.",
        pool=DUCKDB_POOL,
        blocking=True,
    )
    def check_features_are_finite(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
        counts = ", ".join(
            f"count(*) FILTER (WHERE {column} IS NULL OR NOT isfinite(CAST({column} AS DOUBLE))) AS {column}"
            for column in columns
        )
        with duckdb.read_connection() as conn:
            row = conn.execute(f"SELECT {counts} FROM {FEATURES_SCHEMA}.{table}").fetchone()
        bad = {column: int(count) for column, count in zip(columns, row, strict=True) if count}
        return dg.AssetCheckResult(
            passed=not bad,
            metadata={
                "non_finite_values": dg.MetadataValue.int(sum(bad.values())),
                **{f"bad/{c}": n for c, n in bad.items()},
            },
        )

    return check_features_are_finite


def _one_row_per_source_row_check(
    table: str, time_column: str, source_table: str, source_time_column: str
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name="check_one_row_per_source_row",
        description=f"Every day with features has exactly one feature row per {STORE_SCHEMA}.{source_table} row.",
        pool=DUCKDB_POOL,
        blocking=True,
    )
    def check_one_row_per_source_row(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
        with duckdb.read_connection() as conn:
            missing, extra, duplicated = conn.execute(
                f"""WITH featured_days AS (
                        SELECT DISTINCT CAST({time_column} AS DATE) AS day FROM {FEATURES_SCHEMA}.{table}),
                    source AS (
                        SELECT id FROM {STORE_SCHEMA}.{source_table}
                        WHERE CAST({source_time_column} AS DATE) IN (SELECT day FROM featured_days)),
                    features AS (SELECT id FROM {FEATURES_SCHEMA}.{table})
                    SELECT
                        (SELECT count(*) FROM source WHERE id NOT IN (SELECT id FROM features)),
                        (SELECT count(*) FROM features WHERE id NOT IN (SELECT id FROM source)),
                        (SELECT count(*) - count(DISTINCT id) FROM features)"""
            ).fetchone()
        return dg.AssetCheckResult(
            passed=missing == extra == duplicated == 0,
            metadata={
                "source_rows_without_features": int(missing),
                "feature_rows_without_source": int(extra),
                "duplicated_feature_rows": int(duplicated),
            },
        )

    return check_one_row_per_source_row


feature_checks = [
    _non_finite_check(ACTIVITY_FEATURES, ACTIVITY_FEATURE_COLUMNS),
    _non_finite_check(ORDER_FEATURES, ORDER_FEATURE_COLUMNS),
    _one_row_per_source_row_check(ACTIVITY_FEATURES, "timestamp", USER_ACTIVITIES, "timestamp"),
    _one_row_per_source_row_check(ORDER_FEATURES, "created_at", ORDERS, "created_at"),
]
