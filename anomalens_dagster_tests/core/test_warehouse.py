"""DuckDB writes of the core: per-action details JSON, atomic window replacement, schema migration."""

import datetime as dt
import json

import duckdb
import pandas as pd
import pytest

from anomalens_dagster.core.warehouse import (
    SchemaMigrationError,
    details_json_sql,
    read_ahead,
    replace_window,
    table_shape_version,
)

DAY = dt.datetime(2026, 3, 1)


def rows(conn, table="features.t"):
    return conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def frame(ids, day=DAY, **extra):
    return pd.DataFrame({"id": ids, "timestamp": [day + dt.timedelta(hours=i) for i in range(len(ids))], **extra})


def test_details_json_has_exactly_the_keys_of_each_action_type():
    conn = duckdb.connect()
    conn.register(
        "incoming",
        pd.DataFrame(
            {
                "action_type": ["search", "logout"],
                "details_query": ["red shoes", None],
                "details_url": ["/search", None],
            }
        ),
    )
    sql = details_json_sql({"search": ("query", "url"), "logout": ()})

    details = [json.loads(d) for (d,) in conn.execute(f"SELECT {sql} FROM incoming").fetchall()]

    assert details == [{"query": "red shoes", "url": "/search"}, {}]


def test_replacing_a_window_keeps_rows_outside_it_and_replaces_rows_inside():
    conn = duckdb.connect()
    replace_window(
        conn,
        "features",
        "t",
        [frame([1, 2]), frame([3], day=DAY + dt.timedelta(days=1))],
        "timestamp",
        DAY,
        DAY + dt.timedelta(days=2),
    )

    written, preview = replace_window(
        conn, "features", "t", [frame([10])], "timestamp", DAY, DAY + dt.timedelta(days=1)
    )

    assert written == 1 and list(preview["id"]) == [10]
    assert [row[0] for row in rows(conn)] == [3, 10]


def test_a_failing_chunk_rolls_back_the_whole_window():
    conn = duckdb.connect()
    replace_window(conn, "features", "t", [frame([1, 2])], "timestamp", DAY, DAY + dt.timedelta(days=1))
    before = rows(conn)

    def chunks():
        yield frame([5])
        raise RuntimeError("computation died after the first chunk")

    with pytest.raises(RuntimeError, match="died"):
        replace_window(conn, "features", "t", chunks(), "timestamp", DAY, DAY + dt.timedelta(days=1))

    assert rows(conn) == before


NEXT_DAY = DAY + dt.timedelta(days=1)


def write_day(conn, ids, day=DAY, **extra):
    """Replace the day's rows of features.t with rows `ids` (at hours 0, 1, ...) and `extra` columns."""
    return replace_window(
        conn, "features", "t", [frame(ids, day=day, **extra)], "timestamp", day, day + dt.timedelta(days=1)
    )


def columns(conn, table="t"):
    return [
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $table ORDER BY ordinal_position",
            {"table": table},
        ).fetchall()
    ]


def test_a_new_column_is_added_and_the_other_days_keep_their_rows_with_null_there():
    conn = duckdb.connect()
    write_day(conn, [1])
    write_day(conn, [2], day=NEXT_DAY)

    write_day(conn, [3], day=NEXT_DAY, extra_feature=[0.5])

    assert columns(conn) == ["id", "timestamp", "extra_feature"]
    assert rows(conn) == [(1, DAY, None), (3, NEXT_DAY, 0.5)]


def test_a_column_the_new_rows_no_longer_have_stays_and_is_null_in_them():
    conn = duckdb.connect()
    write_day(conn, [1], old_feature=[7])

    write_day(conn, [2], day=NEXT_DAY)

    assert columns(conn) == ["id", "timestamp", "old_feature"]
    assert rows(conn) == [(1, DAY, 7), (2, NEXT_DAY, None)]


def test_columns_are_matched_by_name_whatever_their_order():
    conn = duckdb.connect()
    write_day(conn, [1], a=[1.0], b=[2.0])

    write_day(conn, [2], day=NEXT_DAY, b=[20.0], a=[10.0])

    assert rows(conn) == [(1, DAY, 1.0, 2.0), (2, NEXT_DAY, 10.0, 20.0)]


def test_a_column_whose_new_values_do_not_fit_its_stored_type_is_an_error_and_nothing_changes():
    conn = duckdb.connect()
    write_day(conn, [1], count=[3])

    retyped = r"features\.t: count is BIGINT, the new rows have DOUBLE.*give the new values a new column name"
    with pytest.raises(SchemaMigrationError, match=retyped):
        write_day(conn, [2], day=NEXT_DAY, count=[2.5], extra_feature=[1.0])

    assert columns(conn) == ["id", "timestamp", "count"]
    assert rows(conn) == [(1, DAY, 3)]


def test_new_values_that_cast_implicitly_to_the_stored_type_are_stored_in_it():
    conn = duckdb.connect()
    write_day(conn, [1], amount=[2.5])

    write_day(conn, [2], day=NEXT_DAY, amount=[3])

    assert rows(conn) == [(1, DAY, 2.5), (2, NEXT_DAY, 3.0)]


def test_leaving_out_a_not_null_column_is_an_error_that_says_how_to_allow_null():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA features")
    conn.execute("CREATE TABLE features.t (id BIGINT, timestamp TIMESTAMP, kept DOUBLE NOT NULL)")

    with pytest.raises(SchemaMigrationError, match="no kept, which is NOT NULL.*DROP NOT NULL"):
        write_day(conn, [1])

    assert rows(conn) == []


def test_the_shape_version_changes_with_a_column_its_order_or_its_type_and_only_then():
    base = {"id": "int64", "score": "float64"}

    assert table_shape_version(base) == table_shape_version(dict(base))
    versions = {
        table_shape_version(base),
        table_shape_version({**base, "extra": "float64"}),
        table_shape_version({"score": "float64", "id": "int64"}),
        table_shape_version({"id": "int64", "score": "int64"}),
    }
    assert len(versions) == 4


def test_read_ahead_yields_every_item_in_order():
    assert list(read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]


def test_read_ahead_raises_the_producers_error_at_the_item_it_concerns():
    def produce():
        yield 1
        raise ValueError("day 2 could not be simulated")

    items = read_ahead(produce())
    assert next(items) == 1
    with pytest.raises(ValueError, match="day 2"):
        next(items)
