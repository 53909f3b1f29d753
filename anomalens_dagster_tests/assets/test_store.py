"""Store assets against a DuckDB file in tmp_path, through real Dagster materialisations."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.assets.store import (
    check_normal_order_totals_match_items,
    simulated_store_days,
    store_catalog,
    store_checks,
)
from anomalens_dagster.constants import ANOMALY_KIND_BURST, ANOMALY_KIND_QUANTITY_HOARDING
from anomalens_dagster.core import simulator
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile
from anomalens_dagster_tests.assets.conftest import DAYS, EVENT_TABLES, RANGE_TAGS, materialize_store
from anomalens_dagster_tests.conftest import SMALL_SIMULATION


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


# The rows of one day in each event table (items by their order's day, labels by the day's id range).
DAY_ROWS_SQL = {
    "orders": "SELECT * FROM store.orders WHERE CAST(created_at AS DATE) = $day ORDER BY ALL",
    "order_items": """SELECT * FROM store.order_items WHERE order_id IN (
                          SELECT id FROM store.orders WHERE CAST(created_at AS DATE) = $day) ORDER BY ALL""",
    "user_activities": "SELECT * FROM store.user_activities WHERE CAST(timestamp AS DATE) = $day ORDER BY ALL",
    "simulation_labels": "SELECT * FROM store.simulation_labels WHERE entity_id BETWEEN $low AND $high ORDER BY ALL",
}


def day_contents(db_path, day: str) -> dict[str, list[tuple]]:
    date = dt.date.fromisoformat(day)
    params = {"day": date, "low": simulator.day_id_base(date) + 1, "high": simulator.day_id_base(date) + 10**8}
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return {
            table: conn.execute(sql, {name: params[name] for name in params if f"${name}" in sql}).fetchall()
            for table, sql in DAY_ROWS_SQL.items()
        }


@pytest.fixture(scope="module")
def first_day_with_seed_99(tmp_path_factory) -> dict[str, list[tuple]]:
    """The rows of the first day simulated alone with seed 99."""
    rebuilt = AnomaLensDuckDB(database=str(tmp_path_factory.mktemp("seed_99") / "anomalens.duckdb"))
    materialize_store(rebuilt, {**SMALL_SIMULATION, "seed": 99}, partition_key=DAYS[0])
    return day_contents(rebuilt.database, DAYS[0])


@pytest.mark.parametrize("broken_table", ["orders", "user_activities", "simulation_labels"])
def test_a_range_write_that_fails_in_its_last_group_of_days_leaves_it_as_it_was_and_earlier_days_whole(
    duckdb_resource, db_path, small_simulation, first_day_with_seed_99, broken_table, monkeypatch
):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    last_day_before = day_contents(db_path, DAYS[-1])

    def last_day_broken(settings, days, catalog):
        for batch in simulator.simulate_days(settings, days, catalog):
            if batch.orders["created_at"].max().date().isoformat() == DAYS[-1]:
                frame = getattr(batch, broken_table)
                batch = replace(batch, **{broken_table: frame.drop(columns=[frame.columns[-1]])})  # its INSERT fails
            yield batch

    monkeypatch.setattr("anomalens_dagster.assets.store.EVENTS_PER_WRITE", 1)  # one day per write
    monkeypatch.setattr("anomalens_dagster.assets.store.simulate_days", last_day_broken)
    result = materialize_store(duckdb_resource, {**small_simulation, "seed": 99}, tags=RANGE_TAGS, raise_on_error=False)

    assert not result.success
    assert day_contents(db_path, DAYS[-1]) == last_day_before
    assert day_contents(db_path, DAYS[0]) == first_day_with_seed_99


def test_the_simulation_settings_file_chooses_the_injected_kinds(duckdb_resource, db_path, small_simulation, tmp_path):
    settings_path = tmp_path / "settings.yaml"
    settings_path.write_text(
        "simulation:\n  anomaly_kinds: [activity_burst, quantity_hoarding]\n  quantity_hoarding_rate: 0.1\n"
    )

    result = dg.materialize(
        [store_catalog, simulated_store_days, *store_checks],
        resources={"duckdb": duckdb_resource, "settings": SettingsFile(path=str(settings_path))},
        run_config={"ops": {name: {"config": small_simulation} for name in ("store_catalog", "simulated_store_days")}},
        partition_key=DAYS[0],
    )

    assert result.success
    with duckdb.connect(str(db_path), read_only=True) as conn:
        kinds = {
            kind for (kind,) in conn.execute("SELECT DISTINCT anomaly_kind FROM store.simulation_labels").fetchall()
        }
    assert kinds == {ANOMALY_KIND_BURST, ANOMALY_KIND_QUANTITY_HOARDING}


def test_the_order_total_check_fails_on_a_normal_order_charged_outside_the_pricing_bounds(
    duckdb_resource, db_path, small_simulation
):
    materialize_store(duckdb_resource, small_simulation, partition_key=DAYS[0])
    assert check_normal_order_totals_match_items(duckdb=duckdb_resource).passed
    with duckdb.connect(str(db_path)) as conn:
        conn.execute(
            """UPDATE store.orders SET total_amount = total_amount * 1.5 + 10
               WHERE id = (SELECT min(id) FROM store.orders
                           WHERE id NOT IN (SELECT entity_id FROM store.simulation_labels WHERE entity_type = 'order'))"""
        )

    result = check_normal_order_totals_match_items(duckdb=duckdb_resource)

    assert not result.passed
    assert result.metadata["violations"].value == 1
