"""A store's own files, every kind, in its own words: ingested into an empty store through the asset."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from anomalens_dagster.assets.landing import check_ingest_conserves_rows, ingested_files
from anomalens_dagster.constants import CATEGORIES, CUSTOMERS, ORDER_ITEMS, ORDERS, PRODUCTS, USER_ACTIVITIES
from anomalens_dagster.core.landing.ids import TEXT_ID_BASE
from anomalens_dagster.resources import LandingZone
from anomalens_dagster.settings import SettingsFile

DAY = dt.date(2026, 3, 1)
AT_TEN = int(dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC).timestamp())  # epoch seconds
LANDING_SETTINGS = {
    "landing": {
        "timezone": "Europe/Paris",
        "products": {"columns": {"sku": "id", "title": "name", "category": "category_id"}},
        "orders": {
            "columns": {
                "order_number": "id",
                "buyer_id": "customer_id",
                "placed_at": "created_at",
                "grand_total": "total_amount",
                "state": "status",
            },
            "values": {"status": {"wc-completed": "delivered"}},
        },
        "user_activities": {"values": {"action_type": {"page_view": "view_page", "checkout_complete": "purchase"}}},
    }
}


@pytest.fixture
def settings(tmp_path) -> SettingsFile:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(LANDING_SETTINGS))
    return SettingsFile(path=str(path))


def write_delivery(directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "categories.jsonl").write_text(json.dumps({"id": 1, "name": "Books"}) + "\n")
    pd.DataFrame({"sku": [10, 11], "title": ["Atlas", "Novel"], "price": [30.0, 12.5], "category": [1, 1]}).to_parquet(
        directory / "products-catalogue.parquet", index=False
    )
    # Customer C-7 signs up with this delivery; customer C-8's file comes later.
    (directory / "customers.csv").write_text("id,email\nC-7,first@example.com\n")  # text ids
    (directory / "orders-shop.csv").write_text(
        "order_number,buyer_id,placed_at,grand_total,state\n"
        f"100,C-7,{AT_TEN * 1000},30.0,completed\n"  # epoch milliseconds
        f"101,C-7,{AT_TEN + 60},12.5,SHIPPED\n"  # epoch seconds
        "102,C-7,2026-03-01 12:00:00,12.5,refunded\n"  # naive: Paris time
        "103,C-7,2026-03-01T12:00:00Z,42.5,wc-completed\n"
        "104,C-8,2026-03-01T12:30:00Z,30.0,processing\n"  # customer C-8 not yet in the store
    )
    items = [
        {"id": 1000 + n, "order_id": order, "product_id": 10, "quantity": 1, "price": 30.0}
        for n, order in enumerate([100, 104])
    ]
    (directory / "order_items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    activities = [
        {"id": 1, "customer_id": "C-7", "timestamp": AT_TEN, "action_type": "page_view", "ip_address": "203.0.113.9"},
        {"id": 2, "customer_id": "C-7", "timestamp": AT_TEN + 5, "action_type": "View_Product"},
        {"id": 3, "customer_id": "C-7", "timestamp": AT_TEN + 9, "action_type": "wishlist_add"},
        {"id": 4, "customer_id": "C-8", "timestamp": AT_TEN + 30, "action_type": "checkout_complete"},
    ]
    (directory / "user_activities.jsonl").write_text("".join(json.dumps(row) + "\n" for row in activities))


def ingest(duckdb_resource, landing_dir: Path, settings: SettingsFile) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ingested_files, check_ingest_conserves_rows],
        resources={"duckdb": duckdb_resource, "landing": LandingZone(directory=str(landing_dir)), "settings": settings},
    )


def metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [
        e for e in result.asset_materializations_for_node(ingested_files.op.name) if e.asset_key == ingested_files.key
    ]
    return {key: value.value for key, value in event.metadata.items()}


def store_changes(result: dg.ExecuteInProcessResult) -> set[tuple[str, str | None]]:
    return {
        (event.asset_key.to_user_string(), event.partition)
        for event in result.asset_materializations_for_node(ingested_files.op.name)
        if event.asset_key != ingested_files.key
    }


def query(db_path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_a_store_of_its_own_files_in_its_own_words_lands_every_kind(duckdb_resource, db_path, tmp_path, settings):
    landing_dir = tmp_path / "landing"
    write_delivery(landing_dir)

    first = ingest(duckdb_resource, landing_dir, settings)

    assert first.success
    metadata = metadata_of(first)
    files = {row["kind"]: row for row in metadata["files"]}
    assert list(files) == [CATEGORIES, PRODUCTS, CUSTOMERS, ORDERS, ORDER_ITEMS, USER_ACTIVITIES]
    counts = {
        kind: (row["rows_in"], row["rows_loaded"], row["rows_pending"], row["rows_rejected"])
        for kind, row in files.items()
    }
    assert counts == {
        CATEGORIES: (1, 1, 0, 0),
        PRODUCTS: (2, 2, 0, 0),
        CUSTOMERS: (1, 1, 0, 0),
        ORDERS: (5, 4, 1, 0),  # order 104 waits for customer C-8
        ORDER_ITEMS: (2, 1, 1, 0),  # and so does its item
        USER_ACTIVITIES: (4, 3, 1, 0),
    }
    assert {row["status"] for row in metadata["files"]} == {"loaded"}
    assert metadata["unknown_values"] == {
        ORDERS: {"status": {"completed": 1, "refunded": 1}},
        USER_ACTIVITIES: {"action_type": {"wishlist_add": 1}},
    }
    assert query(db_path, "SELECT id, created_at, status FROM store.orders ORDER BY id") == [
        (100, dt.datetime(2026, 3, 1, 10, 0), "completed"),
        (101, dt.datetime(2026, 3, 1, 10, 1), "shipped"),
        (102, dt.datetime(2026, 3, 1, 11, 0), "refunded"),
        (103, dt.datetime(2026, 3, 1, 12, 0), "delivered"),
    ]
    assert query(db_path, "SELECT action_type FROM store.user_activities ORDER BY id") == [
        ("view_page",),
        ("view_product",),
        ("wishlist_add",),
    ]
    # The first-time customer signed up when first seen: their first order.
    assert query(db_path, "SELECT id, created_at FROM store.customers") == [(TEXT_ID_BASE, dt.datetime(2026, 3, 1, 10))]
    assert query(db_path, "SELECT kind, source_id, id FROM ops.id_map") == [(CUSTOMERS, "C-7", TEXT_ID_BASE)]
    # The catalogue tables are unpartitioned; the store days are named.
    assert store_changes(first) == {
        (CATEGORIES, None),
        (PRODUCTS, None),
        (CUSTOMERS, None),
        (ORDERS, DAY.isoformat()),
        (ORDER_ITEMS, DAY.isoformat()),
        (USER_ACTIVITIES, DAY.isoformat()),
    }
    assert first.get_asset_check_evaluations()[0].passed

    # Customer C-8 arrives: what waited for them loads, once, without being delivered again.
    for path in landing_dir.iterdir():
        path.unlink()
    (landing_dir / "customers-late.csv").write_text("id,email,created_at\nC-8,late@example.com,2025-11-02T08:00:00Z\n")
    second = ingest(duckdb_resource, landing_dir, settings)
    third = ingest(duckdb_resource, landing_dir, settings)

    assert metadata_of(second)["pending_rows_loaded"] == 3
    assert metadata_of(third)["pending_rows_loaded"] == 0
    assert query(db_path, f"SELECT count(*) FROM store.orders WHERE customer_id = {TEXT_ID_BASE + 1}") == [(1,)]
    assert query(db_path, "SELECT count(*) FROM store.order_items WHERE order_id = 104") == [(1,)]
    assert (ORDERS, DAY.isoformat()) in store_changes(second)
    log = query(
        db_path,
        "SELECT file, rows_in, rows_loaded, rows_pending FROM ops.ingested_files WHERE file = 'orders-shop.csv'",
    )
    assert log == [("orders-shop.csv", 5, 5, 0)]
    assert second.get_asset_check_evaluations()[0].passed and third.get_asset_check_evaluations()[0].passed


def test_the_conservation_check_fails_when_a_delivery_loses_a_pending_row(duckdb_resource, db_path, tmp_path, settings):
    landing_dir = tmp_path / "landing"
    write_delivery(landing_dir)
    assert ingest(duckdb_resource, landing_dir, settings).success
    with duckdb.connect(str(db_path)) as conn:
        conn.execute("DELETE FROM ops.pending_rows WHERE kind = 'orders'")  # its log line still counts it

    result = check_ingest_conserves_rows(duckdb=duckdb_resource)

    assert not result.passed
    assert [row["file"] for row in result.metadata["not_conserved"].value] == ["orders-shop.csv"]
