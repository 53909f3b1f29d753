"""Store assets against a DuckDB file in tmp_path, through real Dagster materialisations."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.constants import ANOMALY_KIND_BURST
from anomalens_dagster.core import simulator
from anomalens_dagster_tests.assets.conftest import DAYS, EVENT_TABLES, RANGE_TAGS, materialize_store


def table_contents(db_path, table: str) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM store.{table} ORDER BY ALL").fetchall()


def test_a_two_day_range_run_writes_all_seven_tables_and_passes_every_check(duckdb_resource, db_path, small_simulation):
    result = materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)

    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks), [c.check_name for c in checks if not c.passed]
    with duckdb.connect(str(db_path), read_only=True) as conn:
        days = conn.execute("SELECT count(DISTINCT CAST(timestamp AS DATE)) FROM store.user_activities").fetchone()[0]
        counts = {
            table: conn.execute(f"SELECT count(*) FROM store.{table}").fetchone()[0]
            for table in ("categories", "products", "customers", *EVENT_TABLES)
        }
    assert days == 2
    assert counts["categories"] == small_simulation["num_categories"]
    assert counts["customers"] == small_simulation["num_customers"]
    assert all(count > 0 for count in counts.values()), counts


def test_labels_metadata_counts_injected_rows_by_kind(duckdb_resource, small_simulation):
    result = materialize_store(duckdb_resource, small_simulation, partition_key=DAYS[0])

    labels = next(
        m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("simulation_labels")
    )
    metadata = labels.materialization.metadata
    assert metadata[f"labelled_rows/{ANOMALY_KIND_BURST}"].value > 0
    assert metadata["dagster/row_count"].value == sum(
        value.value for key, value in metadata.items() if key.startswith("labelled_rows/")
    )


def test_rebuilding_a_day_replaces_it_without_duplicates_and_identically(duckdb_resource, db_path, small_simulation):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    before = {table: table_contents(db_path, table) for table in EVENT_TABLES}

    materialize_store(duckdb_resource, small_simulation, partition_key=DAYS[1])

    after = {table: table_contents(db_path, table) for table in EVENT_TABLES}
    assert after == before


def test_rebuilding_a_simulated_day_keeps_rows_loaded_from_files(duckdb_resource, db_path, small_simulation):
    materialize_store(duckdb_resource, small_simulation, partition_key=DAYS[0])
    with duckdb.connect(str(db_path)) as conn:
        conn.execute(
            "INSERT INTO store.user_activities VALUES "
            "(1, NULL, 's', TIMESTAMP '2026-03-01 10:00:00', 'view_page', '{}', '198.51.100.1', 'ua', 'landing/a.jsonl')"
        )

    materialize_store(duckdb_resource, small_simulation, partition_key=DAYS[0])

    with duckdb.connect(str(db_path), read_only=True) as conn:
        landed = conn.execute("SELECT count(*) FROM store.user_activities WHERE source <> 'simulator'").fetchone()[0]
    assert landed == 1


def test_a_settings_change_between_rebuilds_changes_the_day(duckdb_resource, db_path, small_simulation):
    materialize_store(duckdb_resource, small_simulation, partition_key=DAYS[0])
    before = table_contents(db_path, "user_activities")

    materialize_store(duckdb_resource, {**small_simulation, "seed": 8}, partition_key=DAYS[0])

    assert table_contents(db_path, "user_activities") != before


@pytest.mark.parametrize("broken_table", ["orders", "user_activities", "simulation_labels"])
def test_a_range_write_that_fails_on_its_last_day_leaves_every_day_as_it_was(
    duckdb_resource, db_path, small_simulation, broken_table, monkeypatch
):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    before = {table: table_contents(db_path, table) for table in EVENT_TABLES}

    def one_batch_per_day_the_last_one_broken(settings, days, catalog):
        batches = list(simulator.simulate_days(settings, days, catalog, batch_activities=1))
        last = batches[-1]
        frame = getattr(last, broken_table)
        broken = frame.drop(columns=[frame.columns[-1]])  # its INSERT fails on the missing column
        return [*batches[:-1], replace(last, **{broken_table: broken})]

    monkeypatch.setattr("anomalens_dagster.assets.store.simulate_days", one_batch_per_day_the_last_one_broken)
    result = materialize_store(duckdb_resource, {**small_simulation, "seed": 99}, tags=RANGE_TAGS, raise_on_error=False)

    assert not result.success
    assert {table: table_contents(db_path, table) for table in EVENT_TABLES} == before
