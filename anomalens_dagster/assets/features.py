"""Feature assets: one engineered row per activity and per order, daily-partitioned."""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.assets.daily import replace_days_in_groups
from anomalens_dagster.automation import features_refresh
from anomalens_dagster.configs import FEATURES_SECTION, FeaturesConfig
from anomalens_dagster.constants import (
    ACTIVITY_FEATURES,
    DEFAULT_BASELINE_DAYS,
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
    ACTIVITY_CHUNK_ROWS,
    ACTIVITY_DTYPES,
    ACTIVITY_FEATURE_COLUMNS,
    ACTIVITY_SUMMARY_TABLES,
    ORDER_DTYPES,
    ORDER_FEATURE_COLUMNS,
    ORDER_SUMMARY_TABLES,
    compute_order_features,
    iter_activity_features,
    unsummarised_days,
)
from anomalens_dagster.core.warehouse import table_shape_version
from anomalens_dagster.partitions import checked_window, daily_partitions, naive_utc_window
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile

# A day's rolling windows read the previous day's last minutes and the next day's first minutes, so
# a day depends on its own partition and its two neighbours: new rows of a day refresh all three.
DAY_AND_NEIGHBOURS = dg.TimeWindowPartitionMapping(
    start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True
)
# A day's baselines read the summaries of the days before it (never its own): a late day's new
# summaries make the following window stale (automation.features_refresh refreshes it).
EARLIER_BASELINE_DAYS = dg.TimeWindowPartitionMapping(
    start_offset=-DEFAULT_BASELINE_DAYS, end_offset=-1, allow_nonexistent_upstream_partitions=True
)


def _baseline_deps(tables: Sequence[str]) -> list[dg.AssetDep]:
    return [dg.AssetDep(table, partition_mapping=EARLIER_BASELINE_DAYS) for table in tables]


def _materialize_features(
    context: dg.AssetExecutionContext,
    duckdb: AnomaLensDuckDB,
    table: str,
    time_column: str,
    compute: Callable[[duckdb.DuckDBPyConnection, datetime, datetime], Iterable[pd.DataFrame]],
    source: str,
    baseline_days: int,
) -> dg.MaterializeResult:
    """Replace the feature rows of the run's days, a few days at a time; `source` is the store table
    (same time column) each feature row stands for. Features are SQL window queries: reads."""
    start, end = naive_utc_window(context)
    with duckdb.read_connection() as conn:
        unsummarised = unsummarised_days(conn, start, end, baseline_days)
    if unsummarised:
        # Not an error: a day may be summarised later, which refreshes these features (automation.py).
        context.log.warning(
            f"the baselines of {table} read {len(unsummarised)} days with store rows but no summaries "
            f"({', '.join(day.isoformat() for day in unsummarised[:5])}...), taken as empty: materialise "
            "entity_day_summaries for them"
        )
    _, metadata = replace_days_in_groups(
        context,
        duckdb,
        FEATURES_SCHEMA,
        table,
        time_column,
        read=lambda conn, start, end: list(compute(conn, start, end)),
        compute=lambda frames, _start, _end: frames,
        sources=[(f"{STORE_SCHEMA}.{source}", time_column)],
        # Each read of activity features also scans the history before it (every IP's last action), so
        # fewer, larger groups: as many events as the computation takes in one chunk. Writing a million
        # feature rows holds the file about a second.
        events_per_write=ACTIVITY_CHUNK_ROWS,
    )
    metadata["unsummarised_baseline_days"] = dg.MetadataValue.int(len(unsummarised))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name=ACTIVITY_FEATURES,
    group_name=FEATURES_GROUP,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep(USER_ACTIVITIES, partition_mapping=DAY_AND_NEIGHBOURS), *_baseline_deps(ACTIVITY_SUMMARY_TABLES)],
    # Derived from the columns, so days written before a column change read as stale (`anomalens rebuild`).
    code_version=table_shape_version(ACTIVITY_DTYPES),
    kinds={"duckdb", "numpy"},
    pool=DUCKDB_POOL,
    automation_condition=features_refresh,
)
def activity_features(
    context: dg.AssetExecutionContext, config: FeaturesConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> dg.MaterializeResult:
    """Engineered features of each user activity: per-IP rolling counts, session shape, customer and IP baselines."""
    effective = settings.resolve(config, FEATURES_SECTION)
    return _materialize_features(
        context,
        duckdb,
        ACTIVITY_FEATURES,
        "timestamp",
        lambda conn, start, end: iter_activity_features(
            conn, start, end, baseline_days=effective.baseline_days, shrinkage=effective.baseline_shrinkage
        ),
        USER_ACTIVITIES,
        effective.baseline_days,
    )


@dg.asset(
    name=ORDER_FEATURES,
    group_name=FEATURES_GROUP,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # The customer's usual amount also reads their earlier orders; a day refreshes when its own orders
    # or items change (mapping every earlier day would re-score the whole history on each delivery).
    deps=[ORDERS, ORDER_ITEMS, *_baseline_deps(ORDER_SUMMARY_TABLES)],
    code_version=table_shape_version(ORDER_DTYPES),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    automation_condition=features_refresh,
)
def order_features(
    context: dg.AssetExecutionContext, config: FeaturesConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> dg.MaterializeResult:
    """Engineered features of each order: amount, size, time, against its items, its customer, products and store."""
    effective = settings.resolve(config, FEATURES_SECTION)
    return _materialize_features(
        context,
        duckdb,
        ORDER_FEATURES,
        "created_at",
        lambda conn, start, end: [
            compute_order_features(
                conn, start, end, baseline_days=effective.baseline_days, shrinkage=effective.baseline_shrinkage
            )
        ],
        ORDERS,
        effective.baseline_days,
    )


# --- Asset checks -------------------------------------------------------------------------------


def _non_finite_check(table: str, time_column: str, columns: Sequence[str]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name="check_features_are_finite",
        description=(
            "No numeric feature of the days the run wrote is NaN or infinite (an error), nor NULL (a warning: rows "
            "of days stored before the feature's column was added, until `anomalens rebuild`)."
        ),
        pool=DUCKDB_POOL,
        blocking=True,
    )
    def check_features_are_finite(
        context: dg.AssetCheckExecutionContext, duckdb: AnomaLensDuckDB
    ) -> dg.AssetCheckResult:
        counts = ", ".join(
            f"count(*) FILTER (WHERE {column} IS NULL), count(*) FILTER (WHERE NOT isfinite(CAST({column} AS DOUBLE)))"
            for column in columns
        )
        where, window = _window_filter(context, time_column)
        with duckdb.read_connection() as conn:
            row = conn.execute(f"SELECT {counts} FROM {FEATURES_SCHEMA}.{table} WHERE {where}", window).fetchone()
        missing = {column: int(count) for column, count in zip(columns, row[0::2], strict=True) if count}
        bad = {column: int(count) for column, count in zip(columns, row[1::2], strict=True) if count}
        return dg.AssetCheckResult(
            passed=not bad and not missing,
            # NULLs are stale days kept by a migration, which training skips and scoring refuses: worth
            # a warning, not blocking the days that are up to date.
            severity=dg.AssetCheckSeverity.ERROR if bad else dg.AssetCheckSeverity.WARN,
            metadata={
                "non_finite_values": dg.MetadataValue.int(sum(bad.values())),
                "missing_values": dg.MetadataValue.int(sum(missing.values())),
                **{f"bad/{c}": n for c, n in bad.items()},
                **{f"missing/{c}": n for c, n in missing.items()},
            },
        )

    return check_features_are_finite


def _window_filter(context: dg.AssetCheckExecutionContext, time_column: str) -> tuple[str, dict]:
    """A SQL condition (and its parameters) keeping the rows of the days the check's run wrote."""
    window = checked_window(context)
    if window is None:
        return "true", {}
    return f"{time_column} >= $start AND {time_column} < $end", {"start": window[0], "end": window[1]}


def _one_row_per_source_row_check(
    table: str, time_column: str, source_table: str, source_time_column: str
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name="check_one_row_per_source_row",
        description=(
            f"Every day the run wrote has exactly one feature row per {STORE_SCHEMA}.{source_table} row of that day."
        ),
        pool=DUCKDB_POOL,
        blocking=True,
    )
    def check_one_row_per_source_row(
        context: dg.AssetCheckExecutionContext, duckdb: AnomaLensDuckDB
    ) -> dg.AssetCheckResult:
        where, window = _window_filter(context, time_column)
        source_where, _ = _window_filter(context, source_time_column)
        with duckdb.read_connection() as conn:
            missing, extra, duplicated = conn.execute(
                f"""WITH featured_days AS (
                        SELECT DISTINCT CAST({time_column} AS DATE) AS day FROM {FEATURES_SCHEMA}.{table} WHERE {where}),
                    source AS (
                        SELECT id FROM {STORE_SCHEMA}.{source_table}
                        WHERE {source_where} AND CAST({source_time_column} AS DATE) IN (SELECT day FROM featured_days)),
                    features AS (SELECT id FROM {FEATURES_SCHEMA}.{table} WHERE {where})
                    SELECT
                        (SELECT count(*) FROM source WHERE id NOT IN (SELECT id FROM features)),
                        (SELECT count(*) FROM features WHERE id NOT IN (SELECT id FROM source)),
                        (SELECT count(*) - count(DISTINCT id) FROM features)""",
                window,
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
    _non_finite_check(ACTIVITY_FEATURES, "timestamp", ACTIVITY_FEATURE_COLUMNS),
    _non_finite_check(ORDER_FEATURES, "created_at", ORDER_FEATURE_COLUMNS),
    _one_row_per_source_row_check(ACTIVITY_FEATURES, "timestamp", USER_ACTIVITIES, "timestamp"),
    _one_row_per_source_row_check(ORDER_FEATURES, "created_at", ORDERS, "created_at"),
]
