"""Deliveries of every kind: catalogue upserts, immutable facts, rows pending a reference, their ageing."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from anomalens_dagster.constants import CATEGORIES, CUSTOMERS, ORDER_ITEMS, ORDERS, PRODUCTS
from anomalens_dagster.core.landing import (
    STATUS_LOADED,
    STATUS_REJECTED,
    LandingSettings,
    ingest_delivery,
    retry_pending_rows,
)

NOW = dt.datetime(2026, 3, 10, 12, 0)
OUTCOMES = ["rows_loaded", "rows_updated", "rows_already_loaded", "rows_pending", "rows_rejected"]


@pytest.fixture
def store(tmp_path):
    conn = duckdb.connect(str(tmp_path / "shop.duckdb"))
    yield conn
    conn.close()


def write(path, text: str):
    path.write_text(text.strip() + "\n")
    return path


def stored(conn, table: str) -> pd.DataFrame:
    return conn.execute(f"SELECT * FROM store.{table} ORDER BY id").df()


def log(conn) -> pd.DataFrame:
    return conn.execute("SELECT * FROM ops.ingested_files ORDER BY ingested_at, file").df()


def outcomes(result) -> tuple[int, ...]:
    return tuple(getattr(result, name) for name in OUTCOMES)


def test_one_delivery_of_every_catalogue_kind_and_facts_loads_in_dependency_order(store, landing_dir):
    paths = [  # given in the reverse order: items and orders name what the catalogue files bring
        write(landing_dir / "order_items.csv", "id,order_id,product_id,quantity,price\n1,1,1,2,10"),
        write(
            landing_dir / "orders.csv", "id,customer_id,created_at,total_amount,status\n1,5,2026-03-01T10:00Z,20,paid"
        ),
        write(landing_dir / "customers.csv", "id,email\n5,new@example.com"),
        write(landing_dir / "products.csv", "id,name,price,category_id\n1,Atlas,10,3"),
        write(landing_dir / "categories.csv", "id,name\n3,Books"),
    ]

    results = ingest_delivery(store, paths, NOW)

    assert [r.kind for r in results] == [CATEGORIES, PRODUCTS, CUSTOMERS, ORDERS, ORDER_ITEMS]
    assert [outcomes(r) for r in results] == [(1, 0, 0, 0, 0)] * 5
    # A first-time customer without a sign-up time signed up when their first order was placed.
    assert stored(store, CUSTOMERS)["created_at"].tolist() == [pd.Timestamp("2026-03-01 10:00")]
    assert "source" not in stored(store, PRODUCTS)


def test_catalogue_rows_are_upserted_by_id(store, landing_dir):
    ingest_delivery(store, [write(landing_dir / "categories.csv", "id,name\n3,Books")], NOW)
    ingest_delivery(
        store, [write(landing_dir / "products-1.csv", "id,name,price,category_id\n1,Atlas,10,3\n2,Map,5,3")], NOW
    )

    (result,) = ingest_delivery(
        store,
        [write(landing_dir / "products-2.csv", "id,name,price,category_id\n1,Atlas,12.5,3\n2,Map,5,3\n3,Globe,40,3")],
        NOW,
    )

    assert outcomes(result) == (1, 1, 1, 0, 0)
    assert stored(store, PRODUCTS)[["id", "price"]].values.tolist() == [[1, 12.5], [2, 5.0], [3, 40.0]]


def test_an_empty_optional_catalogue_value_keeps_the_stored_one(store, landing_dir):
    write(landing_dir / "customers-1.csv", "id,email,first_name,created_at\n5,a@example.com,Ann,2025-05-01")
    ingest_delivery(store, [landing_dir / "customers-1.csv"], NOW)

    (result,) = ingest_delivery(store, [write(landing_dir / "customers-2.csv", "id,email\n5,ann@example.com")], NOW)

    assert outcomes(result) == (0, 1, 0, 0, 0)
    customer = stored(store, CUSTOMERS).iloc[0]
    assert (customer["email"], customer["first_name"], customer["created_at"]) == (
        "ann@example.com",
        "Ann",
        pd.Timestamp("2025-05-01"),
    )


def test_orders_before_their_customer_wait_and_load_once_when_the_customer_arrives(store, landing_dir):
    orders = write(
        landing_dir / "orders.csv",
        "id,customer_id,created_at,total_amount,status\n1,5,2026-03-01T10:00Z,20,shipped\n2,5,2026-03-02T10:00Z,30,shipped",
    )
    items = write(landing_dir / "order_items.csv", "id,order_id,product_id,quantity,price\n1,1,1,2,10")
    write(landing_dir / "products.csv", "id,name,price,category_id\n1,Atlas,10,3")
    write(landing_dir / "categories.csv", "id,name\n3,Books")
    ingest_delivery(store, [landing_dir / "categories.csv", landing_dir / "products.csv"], NOW)

    first = ingest_delivery(store, [orders, items], NOW)
    retry_pending_rows(store, NOW)

    assert [outcomes(r) for r in first] == [(0, 0, 0, 2, 0), (0, 0, 0, 1, 0)]
    assert stored(store, ORDERS).empty and stored(store, ORDER_ITEMS).empty
    assert first[0].pending["reason"].tolist() == ["unknown customer_id 5: not in the store nor this delivery"] * 2

    customers = write(landing_dir / "customers.csv", "id,email\n5,late@example.com")
    ingest_delivery(store, [customers], NOW + dt.timedelta(hours=1))
    retry = retry_pending_rows(store, NOW + dt.timedelta(hours=1))
    again = retry_pending_rows(store, NOW + dt.timedelta(hours=2))

    assert (retry.loaded, retry.still_pending, again.loaded) == (3, 0, 0)
    assert stored(store, ORDERS)["id"].tolist() == [1, 2] and stored(store, ORDER_ITEMS)["id"].tolist() == [1]
    assert retry.days_by_kind == {
        ORDERS: {dt.date(2026, 3, 1), dt.date(2026, 3, 2)},
        ORDER_ITEMS: {dt.date(2026, 3, 1)},
    }
    # The deliveries that brought them now say where their rows went.
    files = log(store).set_index("file")
    assert files.loc["orders.csv", OUTCOMES].tolist() == [2, 0, 0, 0, 0]
    assert files.loc["order_items.csv", OUTCOMES].tolist() == [1, 0, 0, 0, 0]
    assert store.execute("SELECT count(*) FROM ops.pending_rows").fetchone()[0] == 0


def test_rows_pending_longer_than_the_age_limit_are_rejected_with_the_reason(store, landing_dir):
    orders = write(
        landing_dir / "orders.csv", "id,customer_id,created_at,total_amount,status\n1,5,2026-03-01T10:00Z,20,shipped"
    )
    (result,) = ingest_delivery(store, [orders], NOW)
    settings = LandingSettings(pending_max_age_days=2)

    early = retry_pending_rows(store, NOW + dt.timedelta(days=1), settings)
    late = retry_pending_rows(store, NOW + dt.timedelta(days=3), settings)

    assert (early.still_pending, early.rejected, late.rejected) == (1, 0, 1)
    (line,) = log(store).to_dict("records")
    assert ([line[name] for name in OUTCOMES], line["status"]) == ([0, 0, 0, 0, 1], STATUS_REJECTED)
    (rejection,) = store.execute("SELECT delivery_id, line, reason FROM ops.ingest_rejections").fetchall()
    assert rejection == (
        result.delivery_id,
        2,
        "pending longer than 2 days: unknown customer_id 5: not in the store nor this delivery",
    )


def test_every_delivery_conserves_its_rows_across_every_outcome(store, landing_dir):
    write(landing_dir / "customers.csv", "id,email\n1,a@example.com")
    write(
        landing_dir / "orders.csv",
        "id,customer_id,created_at,total_amount,status\n"
        "1,1,2026-03-01T10:00Z,20,shipped\n"  # loaded, then already loaded
        "2,9,2026-03-01T10:00Z,20,shipped\n"  # pending: customer 9 unknown
        "3,1,yesterday,20,shipped\n",  # rejected
    )
    paths = [landing_dir / "customers.csv", landing_dir / "orders.csv"]
    ingest_delivery(store, paths, NOW)
    write(landing_dir / "customers.csv", "id,email\n1,changed@example.com")
    ingest_delivery(store, paths, NOW + dt.timedelta(hours=1))

    files = log(store)
    assert (files["rows_in"] == files[OUTCOMES].sum(axis=1)).all()
    assert files["delivery_id"].nunique() == len(files) == 4
    assert files[["file", *OUTCOMES]].values.tolist() == [
        ["customers.csv", 1, 0, 0, 0, 0],
        ["orders.csv", 1, 0, 0, 1, 1],
        ["customers.csv", 0, 1, 0, 0, 0],
        ["orders.csv", 0, 0, 1, 1, 1],
    ]
    assert files["status"].tolist() == [STATUS_LOADED, "partial", STATUS_LOADED, "partial"]
    rejections = store.execute("SELECT delivery_id, count(*) FROM ops.ingest_rejections GROUP BY ALL").fetchall()
    assert dict(rejections) == {d: n for d, n in zip(files["delivery_id"], files["rows_rejected"], strict=True) if n}
    pending = store.execute("SELECT delivery_id, count(*) FROM ops.pending_rows GROUP BY ALL").fetchall()
    assert dict(pending) == {d: n for d, n in zip(files["delivery_id"], files["rows_pending"], strict=True) if n}


def test_text_ids_keep_their_source_id_and_get_a_stable_integer_id(store, landing_dir):
    from anomalens_dagster.core.landing.ids import TEXT_ID_BASE

    write(landing_dir / "customers.csv", "id,email\nCUST-a1b2,a@example.com\n17,b@example.com")
    write(
        landing_dir / "orders.csv",
        "id,customer_id,created_at,total_amount,status\n"
        "WC-1001,CUST-a1b2,2026-03-01T10:00Z,20,completed\n"
        "WC-1002,17,2026-03-01T11:00Z,20,completed\n"
        "WC-1003,CUST-zzzz,2026-03-01T12:00Z,20,completed\n",  # a customer still to come
    )
    first = ingest_delivery(store, [landing_dir / "customers.csv", landing_dir / "orders.csv"], NOW)
    again = ingest_delivery(store, [landing_dir / "customers.csv", landing_dir / "orders.csv"], NOW)

    assert [outcomes(r) for r in first] == [(2, 0, 0, 0, 0), (2, 0, 0, 1, 0)]
    assert [outcomes(r) for r in again] == [(0, 0, 2, 0, 0), (0, 0, 2, 1, 0)]  # the same ids, not new ones
    id_map = store.execute("SELECT kind, source_id, id FROM ops.id_map ORDER BY kind, id").fetchall()
    assert id_map == [
        (CUSTOMERS, "CUST-a1b2", TEXT_ID_BASE),
        (ORDERS, "WC-1001", TEXT_ID_BASE),
        (ORDERS, "WC-1002", TEXT_ID_BASE + 1),
    ]
    assert stored(store, ORDERS)[["id", "customer_id"]].values.tolist() == [
        [TEXT_ID_BASE, TEXT_ID_BASE],
        [TEXT_ID_BASE + 1, 17],
    ]

    write(landing_dir / "customers-late.csv", "id,email\nCUST-zzzz,z@example.com")
    ingest_delivery(store, [landing_dir / "customers-late.csv"], NOW)
    retry = retry_pending_rows(store, NOW)

    # The two pending copies of WC-1003 (both deliveries of orders.csv): one loads, the other is that row.
    assert (retry.loaded, retry.already_loaded) == (1, 1)
    late = store.execute(
        """SELECT o.customer_id = c.id FROM store.orders AS o
           JOIN ops.id_map AS m ON m.kind = 'orders' AND m.source_id = 'WC-1003' AND o.id = m.id
           JOIN ops.id_map AS c ON c.kind = 'customers' AND c.source_id = 'CUST-zzzz'"""
    ).fetchall()
    assert late == [(True,)]


def test_text_customer_references_keep_their_exact_ids_when_another_in_the_file_is_not_known_yet():
    # Int64 with NA once went through float64, which rounds ids near 4e18 onto their neighbours.
    from anomalens_dagster.core.landing.delivery import _customer_ids
    from anomalens_dagster.core.landing.ids import TEXT_ID_BASE, IdMap

    id_map = IdMap(stored=lambda kind, wanted: {text: TEXT_ID_BASE + 1 for text in wanted if text == "C-1"})

    ids = _customer_ids(pd.Series(["C-1", "C-2", "7"]), id_map)

    assert ids.iloc[0] == TEXT_ID_BASE + 1
    assert ids.isna().tolist() == [False, True, False] and ids.iloc[2] == 7
