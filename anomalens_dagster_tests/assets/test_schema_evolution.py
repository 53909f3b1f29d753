"""Schema evolution: a column added to a daily derived table loses no day, marks the others stale,
and `anomalens rebuild` brings them up to date in one run."""

import datetime as dt

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

import anomalens_dagster.assets.features as feature_assets
import anomalens_dagster.definitions as definitions
from anomalens_dagster.assets.day_summaries import entity_day_summaries
from anomalens_dagster.assets.features import _non_finite_check, order_features
from anomalens_dagster.assets.store import simulated_store_days, store_catalog
from anomalens_dagster.cli import main, stale_days
from anomalens_dagster.core.features import ORDER_DTYPES, ORDER_FEATURE_COLUMNS, compute_order_features
from anomalens_dagster.core.warehouse import table_shape_version
from anomalens_dagster.instance import ensure_dagster_home
from anomalens_dagster_tests.assets.conftest import materialize_store
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS

DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")
THREE_DAYS = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
NEW_COLUMN = "amount_per_item"


def with_amount_per_item(conn, start, end, **baselines):
    """The order features after a developer added one column."""
    features = compute_order_features(conn, start, end, **baselines)
    return features.assign(**{NEW_COLUMN: features["total_amount"] / features["item_count"].clip(lower=1)})


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """The persistent instance `anomalens` uses, in a fresh DAGSTER_HOME."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        yield instance


def rows_by_day(db_path) -> dict[str, tuple[int, int]]:
    """Per day: order feature rows, and how many of them have the new column filled."""
    with duckdb.connect(str(db_path), read_only=True) as conn:
        columns = {name for (name, *_) in conn.execute("DESCRIBE features.order_features").fetchall()}
        filled = f"count({NEW_COLUMN})" if NEW_COLUMN in columns else "0"
        rows = conn.execute(
            f"SELECT strftime(created_at, '%Y-%m-%d'), count(*), {filled} FROM features.order_features GROUP BY 1"
        ).fetchall()
    return {day: (count, with_value) for day, count, with_value in rows}


def statuses(instance, assets) -> dict[str, tuple[StaleStatus, set[StaleCauseCategory]]]:
    """Each day's stale status as the Dagster UI resolves it, with the categories of its causes."""
    resolver = get_stale_status_resolver(instance, assets)
    return {
        day: (
            resolver.get_status(order_features.key, day),
            {cause.category for cause in resolver.get_stale_causes(order_features.key, day)},
        )
        for day in DAYS
    }


def test_a_column_added_to_one_day_keeps_the_other_days_stale_until_rebuild_fills_them(
    instance, duckdb_resource, db_path, small_simulation, monkeypatch
):
    materialize_store(duckdb_resource, small_simulation, instance=instance, tags=THREE_DAYS)
    dg.materialize(
        [entity_day_summaries, order_features],
        resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS},
        instance=instance,
        tags=THREE_DAYS,
    )
    before = rows_by_day(db_path)

    # The developer's change: the computation writes one more feature column, the asset's code
    # version follows from the new column list, the finiteness check covers the new column.
    monkeypatch.setattr(feature_assets, "compute_order_features", with_amount_per_item)
    new_version = table_shape_version({**ORDER_DTYPES, NEW_COLUMN: "float64"})
    changed = order_features.map_asset_specs(lambda spec: spec.replace_attributes(code_version=new_version))
    check = _non_finite_check("order_features", "created_at", (*ORDER_FEATURE_COLUMNS, NEW_COLUMN))
    assets = [store_catalog, simulated_store_days, entity_day_summaries, changed]
    one_day = dg.materialize(
        [changed, check],
        resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS},
        instance=instance,
        partition_key=DAYS[1],
    )

    counts = {day: count for day, (count, _) in before.items()}
    assert sorted(counts) == list(DAYS)
    assert rows_by_day(db_path) == {
        DAYS[0]: (counts[DAYS[0]], 0),
        DAYS[1]: (counts[DAYS[1]], counts[DAYS[1]]),
        DAYS[2]: (counts[DAYS[2]], 0),
    }
    (evaluation,) = one_day.get_asset_check_evaluations()
    assert evaluation.passed  # the check judges the day its run wrote, which has every column
    whole_table = dg.materialize(
        [changed, check],
        resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS},
        instance=instance,
        selection=dg.AssetSelection.checks_for_assets(changed),
    )
    (evaluation,) = whole_table.get_asset_check_evaluations()  # run alone, it looks at every day
    assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert evaluation.metadata["missing/amount_per_item"].value == counts[DAYS[0]] + counts[DAYS[2]]
    stale = (StaleStatus.STALE, {StaleCauseCategory.CODE})
    assert statuses(instance, assets) == {DAYS[0]: stale, DAYS[1]: (StaleStatus.FRESH, set()), DAYS[2]: stale}
    defs = dg.Definitions(
        assets=assets, asset_checks=[check], resources={"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS}
    )
    assert stale_days(defs, instance, "order_features") == [DAYS[0], DAYS[2]]
    assert stale_days(defs, instance, "order_features", first=dt.date(2026, 3, 2)) == [DAYS[2]]

    monkeypatch.setattr(definitions, "defs", defs)
    runs_before = len(instance.get_runs())
    rebuilt = CliRunner().invoke(main, ["rebuild", "order_features", "--db", str(db_path)])

    assert rebuilt.exit_code == 0, rebuilt.output
    assert f"stale days: {DAYS[0]}, {DAYS[2]}" in rebuilt.output
    assert len(instance.get_runs()) == runs_before + 1
    latest_check = instance.get_latest_asset_check_evaluation_record(check.check_key)
    assert latest_check.run_id == instance.get_runs()[0].run_id
    assert latest_check.status == AssetCheckExecutionRecordStatus.SUCCEEDED
    assert rows_by_day(db_path) == {day: (count, count) for day, count in counts.items()}
    assert statuses(instance, assets) == dict.fromkeys(DAYS, (StaleStatus.FRESH, set()))
    again = CliRunner().invoke(main, ["rebuild", "order_features", "--db", str(db_path)])
    assert "Nothing to rebuild" in again.output
