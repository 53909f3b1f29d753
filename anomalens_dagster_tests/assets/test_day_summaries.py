"""The entity day summaries asset against a DuckDB file in tmp_path, after a real store materialisation."""

import dagster as dg
import duckdb
import pandas as pd

from anomalens_dagster.assets.day_summaries import entity_day_summaries
from anomalens_dagster.core.features import DAY_SUMMARY_TABLES
from anomalens_dagster_tests.assets.conftest import RANGE_TAGS, materialize_store


def summaries_of(db_path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return {
            table: conn.execute(f"SELECT * FROM features.{table} ORDER BY ALL").df() for table in DAY_SUMMARY_TABLES
        }


def test_a_range_writes_all_five_summaries_of_each_day_with_their_row_counts_and_column_docs(
    duckdb_resource, db_path, small_simulation
):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)

    result = dg.materialize([entity_day_summaries], resources={"duckdb": duckdb_resource}, tags=RANGE_TAGS)

    assert result.success
    tables = summaries_of(db_path)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        orders_by_day = dict(
            conn.execute("SELECT CAST(created_at AS DATE), count(*) FROM store.orders GROUP BY 1").fetchall()
        )
        customers = conn.execute(
            "SELECT count(DISTINCT (CAST(created_at AS DATE), customer_id)) FROM store.orders WHERE customer_id >= 0"
        ).fetchone()[0]
    store = tables["store_day_summaries"]
    assert dict(zip(store["day"].dt.date, store["orders"], strict=True)) == orders_by_day
    assert tables["customer_day_summaries"]["orders"].sum() == sum(orders_by_day.values())
    assert len(tables["customer_day_summaries"]) >= customers
    events = result.get_asset_materialization_events()
    assert {event.asset_key.to_user_string() for event in events} == set(DAY_SUMMARY_TABLES)
    for event in events:
        metadata = event.materialization.metadata
        assert metadata["rows_in_range"].value == len(tables[event.asset_key.to_user_string()])
        assert all(column.description for column in metadata["dagster/column_schema"].schema.columns)


def test_a_day_summarised_alone_equals_the_same_day_from_a_range_run(duckdb_resource, db_path, small_simulation):
    materialize_store(duckdb_resource, small_simulation, tags=RANGE_TAGS)
    dg.materialize([entity_day_summaries], resources={"duckdb": duckdb_resource}, tags=RANGE_TAGS)
    from_range = summaries_of(db_path)

    for day in ("2026-03-02", "2026-03-01"):
        dg.materialize([entity_day_summaries], resources={"duckdb": duckdb_resource}, partition_key=day)

    for table, expected in summaries_of(db_path).items():
        pd.testing.assert_frame_equal(expected, from_range[table])
