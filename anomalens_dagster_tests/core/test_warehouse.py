"""DuckDB writes of the core: per-action details JSON, atomic window replacement."""

import datetime as dt
import json

import duckdb
import pandas as pd
import pytest

from anomalens_dagster.core.warehouse import details_json_sql, read_ahead, replace_window

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


def test_new_columns_rebuild_the_derived_table():
    conn = duckdb.connect()
    replace_window(conn, "features", "t", [frame([1])], "timestamp", DAY, DAY + dt.timedelta(days=1))

    replace_window(
        conn, "features", "t", [frame([2], extra_feature=[0.5])], "timestamp", DAY, DAY + dt.timedelta(days=1)
    )

    assert [
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't'"
        ).fetchall()
    ] == [
        "id",
        "timestamp",
        "extra_feature",
    ]
    assert rows(conn) == [(2, DAY, 0.5)]


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
