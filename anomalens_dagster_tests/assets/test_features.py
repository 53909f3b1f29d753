"""Feature assets against a DuckDB file in tmp_path, after a real store materialisation."""

import logging

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.assets.day_summaries import entity_day_summaries
from anomalens_dagster.assets.features import activity_features, feature_checks, order_features
from anomalens_dagster.settings import SettingsFile
from anomalens_dagster_tests.assets.conftest import RANGE_TAGS, materialize_store
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS


def RESOURCES(duckdb_resource) -> dict:  # noqa: N802 - reads as the constant it stands for
    return {"duckdb": duckdb_resource, "settings": DEFAULT_SETTINGS}


def features_of(db_path, table: str) -> pd.DataFrame:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM features.{table} ORDER BY id").df()


def test_features_of_a_range_have_one_row_per_source_row_and_pass_their_checks(
    duckdb_resource, db_path, small_simulation
):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)

    result = dg.materialize(
        [entity_day_summaries, activity_features, order_features, *feature_checks],
        resources=RESOURCES(duckdb_resource),
        tags=RANGE_TAGS,
        selection=[*entity_day_summaries.keys, activity_features.key, order_features.key],
    )

    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 4 and all(e.passed for e in evaluations)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        activities = conn.execute("SELECT count(*) FROM store.user_activities").fetchone()[0]
        orders = conn.execute("SELECT count(*) FROM store.orders").fetchone()[0]
    assert len(features_of(db_path, "activity_features")) == activities
    assert len(features_of(db_path, "order_features")) == orders
    # One materialisation per day, each carrying the range's figures: labelled as such, never as the day's size.
    activity_events = [e for e in result.get_asset_materialization_events() if e.asset_key == activity_features.key]
    assert len(activity_events) == 2
    for event in activity_events:
        metadata = event.materialization.metadata
        assert "dagster/row_count" not in metadata
        assert metadata["rows_in_range"].value == activities
        assert metadata["range"].value.startswith("2026-03-01 .. 2026-03-02 (2 partitions")


def test_a_day_materialised_alone_equals_the_same_day_from_a_range_run(duckdb_resource, db_path, small_simulation):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    assets = [entity_day_summaries, activity_features, order_features]
    dg.materialize(assets, resources=RESOURCES(duckdb_resource), tags=RANGE_TAGS)
    from_range = {table: features_of(db_path, table) for table in ("activity_features", "order_features")}

    day_rows = {}
    for day in ("2026-03-01", "2026-03-02"):
        result = dg.materialize(assets, resources=RESOURCES(duckdb_resource), partition_key=day)
        (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == activity_features.key]
        day_rows[day] = event.materialization.metadata["dagster/row_count"].value

    for table, expected in from_range.items():
        pd.testing.assert_frame_equal(features_of(db_path, table), expected)
    assert sum(day_rows.values()) == len(from_range["activity_features"])
    assert all(rows > 0 for rows in day_rows.values())


def land_activities_without_features(db_path, day: str, rows: int = 3) -> None:
    """Rows of `day` loaded after its features were computed, as a landed file leaves them."""
    with duckdb.connect(str(db_path)) as conn:
        conn.execute(
            """INSERT INTO store.user_activities (id, timestamp, action_type, source)
               SELECT 999000000 + i, CAST($day AS TIMESTAMP) + INTERVAL 12 HOUR + i * INTERVAL 1 SECOND,
                      'view_page', 'landed.jsonl'
               FROM range($rows) AS t(i)""",
            {"day": day, "rows": rows},
        )


def feature_check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}


def test_a_day_refreshed_while_the_next_day_has_rows_without_features_passes_its_checks(
    duckdb_resource, db_path, small_simulation
):
    # As automation does it: new rows land on the second day, and the first day (whose windows
    # reach into the second) re-runs first. Its checks judge the day it wrote, not the second day.
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    dg.materialize(
        [entity_day_summaries, activity_features, order_features], resources=RESOURCES(duckdb_resource), tags=RANGE_TAGS
    )
    land_activities_without_features(db_path, "2026-03-02")

    first_day = dg.materialize(
        [activity_features, *feature_checks],
        resources=RESOURCES(duckdb_resource),
        partition_key="2026-03-01",
        selection=[activity_features.key],
    )
    whole_table = dg.materialize(
        [activity_features, *feature_checks],
        resources=RESOURCES(duckdb_resource),
        selection=dg.AssetSelection.checks_for_assets(activity_features),
        raise_on_error=False,
    )

    assert first_day.success
    assert set(feature_check_results(first_day).values()) == {True}
    # Without a partition the check looks at every day, and sees the second day's missing features.
    assert feature_check_results(whole_table)[("activity_features", "check_one_row_per_source_row")] is False


def warnings_of(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id) if entry.level == logging.WARNING]


def test_a_range_with_a_day_without_activities_names_that_day_in_the_metadata_and_the_log(
    duckdb_resource, small_simulation
):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    instance = dg.DagsterInstance.ephemeral()
    # The store holds 2026-03-01 and 03-02; the range runs one day further.
    with_empty_day = {**RANGE_TAGS, "dagster/asset_partition_range_end": "2026-03-03"}

    dg.materialize([entity_day_summaries], resources=RESOURCES(duckdb_resource), tags=with_empty_day)

    result = dg.materialize(
        [activity_features, order_features],
        resources=RESOURCES(duckdb_resource),
        tags=with_empty_day,
        instance=instance,
    )
    one_full_day = dg.materialize([order_features], resources=RESOURCES(duckdb_resource), partition_key="2026-03-02")

    assert result.success
    for event in result.get_asset_materialization_events():
        assert event.materialization.metadata["empty_days"].value == ["2026-03-03"]
        assert "1 of 3 days had no rows" in event.materialization.metadata["note"].value
    assert sorted(warnings_of(instance, result.run_id)) == [
        "no rows in store.orders for 2026-03-03: nothing to compute, so that day has no rows here",
        "no rows in store.user_activities for 2026-03-03: nothing to compute, so that day has no rows here",
    ]
    assert "empty_days" not in one_full_day.get_asset_materialization_events()[0].materialization.metadata


def test_the_settings_files_features_section_reaches_the_baselines(
    duckdb_resource, db_path, small_simulation, tmp_path
):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    dg.materialize([entity_day_summaries, order_features], resources=RESOURCES(duckdb_resource), tags=RANGE_TAGS)
    shrunk = features_of(db_path, "order_features")["amount_to_customer_usual_log_ratio"]
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("features:\n  baseline_shrinkage: 0\n")

    dg.materialize(
        [order_features],
        resources={"duckdb": duckdb_resource, "settings": SettingsFile(path=str(settings_file))},
        partition_key="2026-03-02",
    )

    unshrunk = features_of(db_path, "order_features")["amount_to_customer_usual_log_ratio"]
    second_day = features_of(db_path, "order_features")["created_at"] >= "2026-03-02"
    assert (unshrunk[~second_day] == shrunk[~second_day]).all()
    # Without shrinkage a returning customer's usual is their own: farther from the store's for some.
    assert (unshrunk[second_day] != shrunk[second_day]).any()
