"""Landing-zone ingestion: tiny files in tmp_path, a DuckDB store in tmp_path, every row accounted for."""

from __future__ import annotations

import csv
import datetime as dt
import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anomalens_dagster.constants import CATEGORIES, CUSTOMERS, ORDER_ITEMS, ORDERS, PRODUCTS, USER_ACTIVITIES
from anomalens_dagster.core import landing
from anomalens_dagster.core.landing import (
    LANDING_SAMPLE_ID_OFFSET,
    STATUS_DUPLICATE,
    STATUS_LOADED,
    STATUS_PARTIAL,
    STATUS_QUARANTINED,
    UnreadableFileError,
    ingest_delivery,
    landing_file_kind,
    move_to_quarantine,
    prepare_delivery,
    quarantine_path,
    read_landing_file,
    validate_rows,
    write_file_ingest,
    write_landing_sample,
)
from anomalens_dagster.core.simulator import (
    DETAIL_KEYS_BY_ACTION,
    SimulationSettings,
    day_id_base,
    simulate_catalog,
    simulate_day,
)
from anomalens_dagster.core.warehouse import ensure_store_tables, replace_catalog, replace_simulated_days

NOW = dt.datetime(2026, 3, 10, 12, 0)
DAY = dt.date(2026, 3, 1)

ORDER = {"id": 1, "customer_id": 1, "created_at": "2026-03-01T10:00:00Z", "total_amount": 20.0, "status": "shipped"}
ITEM = {"id": 1, "order_id": 1, "product_id": 2, "quantity": 2, "price": 10.0}
ACTIVITY = {
    "id": 1,
    "customer_id": None,
    "session_id": "s-1",
    "timestamp": "2026-03-01T09:59:00Z",
    "action_type": "view_product",
    "details": {"product_id": 2, "url": "/products/2"},
    "ip_address": "203.0.113.9",
    "user_agent": "test-agent",
}
VALID_ROW = {ORDERS: ORDER, ORDER_ITEMS: ITEM, USER_ACTIVITIES: ACTIVITY}


@pytest.fixture
def store(tmp_path):
    """A store whose catalog has customers 1-3 and products 1-3."""
    conn = duckdb.connect(str(tmp_path / "anomalens.duckdb"))
    ensure_store_tables(conn)
    replace_catalog(
        conn,
        {
            CATEGORIES: pd.DataFrame({"id": [1], "name": ["Books"], "description": ["Things to read"]}),
            PRODUCTS: pd.DataFrame(
                {
                    "id": [1, 2, 3],
                    "name": ["Atlas", "Novel", "Poetry"],
                    "description": ["", "", ""],
                    "price": [30.0, 10.0, 15.0],
                    "category_id": [1, 1, 1],
                }
            ),
            CUSTOMERS: pd.DataFrame(
                {
                    "id": [1, 2, 3],
                    "email": ["a@example.com", "b@example.com", "c@example.com"],
                    "first_name": ["Ann", "Bob", "Cy"],
                    "last_name": ["A", "B", "C"],
                    "created_at": [dt.datetime(2025, 1, 1)] * 3,
                }
            ),
        },
    )
    yield conn
    conn.close()


def row(kind: str, **changes) -> dict:
    return {**VALID_ROW[kind], **changes}


def write_csv(path, rows: list[dict], columns=None):
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for values in rows:
            writer.writerow(["" if values.get(c) is None else _csv_text(values.get(c)) for c in columns])
    return path


def _csv_text(value) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def write_jsonl(path, rows: list[dict | str]):
    lines = [line if isinstance(line, str) else json.dumps(line) for line in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_parquet(path, rows: list[dict]):
    frame = pd.DataFrame(rows)
    if "details" in frame:
        frame["details"] = [None if d is None else json.dumps(d) for d in frame["details"]]
    frame.to_parquet(path, index=False)
    return path


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}


def stored(conn, table: str) -> pd.DataFrame:
    return conn.execute(f"SELECT * FROM store.{table} ORDER BY id").df()


def ops(conn, table: str) -> pd.DataFrame:
    return conn.execute(f"SELECT * FROM ops.{table} ORDER BY ALL").df()


def only(results, file):
    (result,) = [r for r in results if r.file == file]
    return result


# --- File names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("orders.csv", ORDERS),
        ("orders-2026-03-01.jsonl", ORDERS),
        ("order_items-x.csv", ORDER_ITEMS),
        ("ORDER_ITEMS_batch.parquet", ORDER_ITEMS),
        ("user_activities.jsonl", USER_ACTIVITIES),
    ],
)
def test_a_file_kind_is_the_table_its_name_starts_with(name, kind):
    assert landing_file_kind(name) == kind


@pytest.mark.parametrize(("name", "problem"), [("refunds.csv", "unknown kind"), ("orders.xlsx", "unknown extension")])
def test_a_file_of_unknown_kind_or_extension_is_an_error_naming_the_file(name, problem):
    with pytest.raises(UnreadableFileError, match=rf"{name}: {problem}"):
        landing_file_kind(name)


def test_the_sha256_of_a_file_is_that_of_its_bytes(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(b"abc")

    assert landing.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- Valid files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["csv", "jsonl", "parquet"])
def test_valid_files_of_every_kind_load_every_row(store, landing_dir, file_format):
    write = WRITERS[file_format]
    paths = [
        write(landing_dir / f"orders.{file_format}", [row(ORDERS), row(ORDERS, id=2, customer_id=2)]),
        write(landing_dir / f"order_items.{file_format}", [row(ORDER_ITEMS), row(ORDER_ITEMS, id=2, order_id=2)]),
        write(landing_dir / f"user_activities.{file_format}", [row(USER_ACTIVITIES), row(USER_ACTIVITIES, id=2)]),
    ]

    results = ingest_delivery(store, paths, NOW)

    assert [(r.status, r.rows_in, r.rows_loaded, r.rows_rejected) for r in results] == [(STATUS_LOADED, 2, 2, 0)] * 3
    orders = stored(store, ORDERS)
    assert orders.to_dict("records")[0] == {
        "id": 1,
        "customer_id": 1,
        "created_at": pd.Timestamp("2026-03-01 10:00:00"),
        "total_amount": 20.0,
        "status": "shipped",
        "source": f"orders.{file_format}",
    }
    assert list(stored(store, ORDER_ITEMS)["quantity"]) == [2, 2]
    activity = stored(store, USER_ACTIVITIES).iloc[0]
    assert pd.isna(activity["customer_id"]) and json.loads(activity["details"]) == ACTIVITY["details"]


def test_a_parquet_file_with_typed_columns_loads_its_zoned_timestamps_and_nested_details(store, landing_dir):
    paris = dt.timezone(dt.timedelta(hours=1))
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "customer_id": pa.array([None, 2], pa.int64()),
            "timestamp": pa.array(
                [dt.datetime(2026, 3, 1, 10, tzinfo=paris), dt.datetime(2026, 3, 1, 12, tzinfo=paris)],
                pa.timestamp("us", tz="Europe/Paris"),
            ),
            "action_type": ["login", "search"],
            "details": pa.array([{"success": True, "query": None}, {"success": None, "query": "shoes"}]),
        }
    )
    pq.write_table(table, landing_dir / "user_activities.parquet")

    (result,) = ingest_delivery(store, [landing_dir / "user_activities.parquet"], NOW)

    activities = stored(store, USER_ACTIVITIES)
    assert result.rows_rejected == 0
    assert activities["timestamp"].tolist() == [pd.Timestamp("2026-03-01 09:00"), pd.Timestamp("2026-03-01 11:00")]
    assert json.loads(activities["details"].iloc[1]) == {"success": None, "query": "shoes"}


def test_timestamps_with_an_offset_are_stored_as_naive_utc(store, landing_dir):
    path = write_csv(
        landing_dir / "orders.csv",
        [
            row(ORDERS, created_at="2026-03-01T10:00:00+02:00"),
            row(ORDERS, id=2, created_at="2026-03-01 23:30:00-05:00"),
        ],
    )

    ingest_delivery(store, [path], NOW)

    assert list(stored(store, ORDERS)["created_at"]) == [
        pd.Timestamp("2026-03-01 08:00"),
        pd.Timestamp("2026-03-02 04:30"),
    ]


def test_a_byte_order_mark_at_the_start_of_a_text_file_is_read_as_text(store, landing_dir):
    csv_path = write_csv(landing_dir / "orders.csv", [row(ORDERS)])
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    jsonl_path = write_jsonl(landing_dir / "user_activities.jsonl", [row(USER_ACTIVITIES)])
    jsonl_path.write_bytes(b"\xef\xbb\xbf" + jsonl_path.read_bytes())

    results = ingest_delivery(store, [csv_path, jsonl_path], NOW)

    assert [(r.status, r.rows_loaded, r.rows_rejected) for r in results] == [(STATUS_LOADED, 1, 0)] * 2


def test_nullable_columns_may_be_left_out_of_an_activities_file(store, landing_dir):
    path = write_jsonl(
        landing_dir / "user_activities.jsonl",
        [{"id": 1, "timestamp": "2026-03-01T10:00:00", "action_type": "logout"}],
    )

    (result,) = ingest_delivery(store, [path], NOW)

    assert result.rows_loaded == 1
    assert stored(store, USER_ACTIVITIES)[["customer_id", "session_id", "details"]].isna().all(axis=None)


# --- Bad rows --------------------------------------------------------------------------------------

BAD_ROWS = [
    (ORDERS, {"id": None}, "id", "missing id"),
    (ORDER_ITEMS, {"quantity": "two"}, "quantity", "quantity is not an integer"),
    (ORDERS, {"created_at": "yesterday"}, "created_at", "created_at is not a timestamp"),
    (ORDERS, {"created_at": "2026-03-12T00:00:00Z"}, "created_at", "created_at is in the future"),
    (ORDERS, {"created_at": "2025-12-31T23:00:00Z"}, "created_at", "created_at is before 2026-01-01, the first day"),
    (ORDERS, {"total_amount": "lots"}, "total_amount", "total_amount is not a number"),
    (ORDERS, {"total_amount": -5}, "total_amount", "total_amount is negative"),
    (ORDERS, {"status": None}, "status", "missing status"),
    (ORDER_ITEMS, {"quantity": -1}, "quantity", "quantity is negative"),
    (ORDER_ITEMS, {"quantity": 1.5}, "quantity", "quantity is not an integer"),
    (ORDER_ITEMS, {"price": "ten"}, "price", "price is not a number"),
    (USER_ACTIVITIES, {"action_type": " "}, "action_type", "missing action_type"),
    (USER_ACTIVITIES, {"timestamp": None}, "timestamp", "missing timestamp"),
    (USER_ACTIVITIES, {"details": "{not json"}, "details", "details: malformed JSON"),
    (USER_ACTIVITIES, {"details": [1, 2]}, "details", "details: not a JSON object but array"),
]


@pytest.mark.parametrize(("kind", "changes", "column", "reason"), BAD_ROWS)
def test_a_bad_row_is_rejected_with_its_problem_and_the_good_rows_of_its_file_load(
    store, landing_dir, kind, changes, column, reason
):
    order = write_csv(landing_dir / "orders-0.csv", [row(ORDERS)])  # the order that good items name
    path = write_csv(
        landing_dir / f"{kind}-1.csv", [row(kind, id=10), row(kind, **{"id": 11, **changes}), row(kind, id=12)]
    )

    result = only(ingest_delivery(store, [order, path], NOW), path.name)

    assert (result.rows_in, result.rows_loaded, result.rows_rejected) == (3, 2, 1)
    assert list(result.loaded["id"]) == [10, 12]
    rejection = result.rejections.iloc[0]
    assert (rejection["file"], rejection["line"], rejection["column"]) == (path.name, 3, column)
    assert rejection["reason"].startswith(reason)
    assert list(stored(store, kind).query("source == @path.name")["id"]) == [10, 12]
    assert ops(store, "ingest_rejections")[["line", "column"]].values.tolist() == [[3, column]]


def test_a_row_with_several_problems_is_rejected_once_for_its_first(store, landing_dir):
    path = write_csv(landing_dir / "orders.csv", [row(ORDERS, customer_id="x", total_amount=-1, status="lost")])

    (result,) = ingest_delivery(store, [path], NOW)

    # A text customer id is a reference (ids may be text); the total is the row's first fault.
    assert result.rejections[["column", "reason"]].values.tolist() == [["total_amount", "total_amount is negative"]]


def test_a_malformed_json_line_is_rejected_and_the_other_lines_load(store, landing_dir):
    path = write_jsonl(
        landing_dir / "orders.jsonl", [row(ORDERS), '{"id": 2, "customer_id": ', "[1, 2]", row(ORDERS, id=3)]
    )

    (result,) = ingest_delivery(store, [path], NOW)

    assert list(result.loaded["id"]) == [1, 3]
    assert result.rejections["line"].tolist() == [2, 3]
    assert result.rejections["column"].isna().all()
    assert result.rejections["reason"].iloc[0].startswith("malformed JSON: ")
    assert result.rejections["reason"].iloc[1] == "not a JSON object but array"
    assert result.rejections["value"].iloc[0] == '{"id": 2, "customer_id": '


def test_a_csv_record_with_the_wrong_number_of_fields_is_rejected_with_its_line(store, landing_dir):
    path = write_csv(landing_dir / "orders.csv", [row(ORDERS), row(ORDERS, id=2)])
    path.write_text(path.read_text() + "3,1,2026-03-01T10:00:00Z,5.0,shipped,extra\n")

    (result,) = ingest_delivery(store, [path], NOW)

    assert result.rows_loaded == 2
    assert result.rejections[["line", "reason"]].values.tolist() == [[4, "expected 5 fields, found 6"]]


def test_csv_line_numbers_count_the_lines_a_quoted_field_spans(store, landing_dir):
    path = write_csv(
        landing_dir / "user_activities.csv",
        [row(USER_ACTIVITIES, user_agent="two\nlines"), row(USER_ACTIVITIES, id=2, timestamp="never")],
    )

    (result,) = ingest_delivery(store, [path], NOW)

    assert result.rejections["line"].tolist() == [4]


# --- Duplicates and references ---------------------------------------------------------------------


def test_a_duplicate_id_in_a_file_loads_the_first_row_and_names_its_line(store, landing_dir):
    path = write_csv(landing_dir / "orders.csv", [row(ORDERS), row(ORDERS, id=2), row(ORDERS, total_amount=99.0)])

    (result,) = ingest_delivery(store, [path], NOW)

    assert stored(store, ORDERS)["total_amount"].tolist() == [20.0, 20.0]
    assert result.rejections[["line", "reason"]].values.tolist() == [[4, "duplicate id 1: first seen on line 2"]]


def test_a_duplicate_of_a_rejected_row_loads(store, landing_dir):
    path = write_csv(landing_dir / "orders.csv", [row(ORDERS, total_amount=-1), row(ORDERS)])

    (result,) = ingest_delivery(store, [path], NOW)

    assert result.rows_loaded == 1 and result.rejections["line"].tolist() == [2]


def test_an_id_repeated_in_another_file_of_the_delivery_names_the_first_file(store, landing_dir):
    first = write_csv(landing_dir / "orders-a.csv", [row(ORDERS)])
    second = write_jsonl(landing_dir / "orders-b.jsonl", [row(ORDERS, id=2), row(ORDERS)])

    results = ingest_delivery(store, [first, second], NOW)

    assert only(results, second.name).rejections["reason"].tolist() == [
        "duplicate id 1: first seen on line 2 of orders-a.csv"
    ]
    assert stored(store, ORDERS)["id"].tolist() == [1, 2]


def test_a_fact_already_in_the_store_is_already_loaded_if_identical_and_rejected_if_changed(store, landing_dir):
    ingest_delivery(store, [write_csv(landing_dir / "orders-1.csv", [row(ORDERS), row(ORDERS, id=3)])], NOW)

    (result,) = ingest_delivery(
        store,
        [
            write_csv(
                landing_dir / "orders-2.csv", [row(ORDERS, total_amount=1.0), row(ORDERS, id=2), row(ORDERS, id=3)]
            )
        ],
        NOW,
    )

    assert (result.rows_loaded, result.rows_already_loaded, result.rows_rejected) == (1, 1, 1)
    assert result.rejections[["line", "column", "reason"]].values.tolist() == [
        [
            2,
            "total_amount",
            "id 1 is already in the store with different content (total_amount differs): facts are immutable",
        ]
    ]
    assert stored(store, ORDERS)["total_amount"].tolist() == [20.0, 20.0, 20.0]


def test_an_order_item_may_name_an_order_delivered_with_it_and_waits_for_a_rejected_one(store, landing_dir):
    orders = write_csv(landing_dir / "orders.csv", [row(ORDERS), row(ORDERS, id=2, total_amount=-1)])
    items = write_csv(landing_dir / "order_items.csv", [row(ORDER_ITEMS), row(ORDER_ITEMS, id=2, order_id=2)])

    results = ingest_delivery(store, [items, orders], NOW)

    assert [r.file for r in results] == ["orders.csv", "order_items.csv"]  # orders are written first
    assert only(results, items.name).pending["reason"].tolist() == [
        "unknown order_id 2: not in the store nor this delivery"
    ]
    assert stored(store, ORDER_ITEMS)["order_id"].tolist() == [1]


def test_validation_needs_no_database_when_the_store_keys_are_given():
    rows = pd.DataFrame(
        {"file": "order_items.csv", "line": [2, 3, 4], "id": ["1", "2", "3"], "order_id": ["7", "8", "9"]}
        | {"product_id": ["1", "1", "1"], "quantity": ["1", "1", "1"], "price": ["1.5", "1.5", "1.5"]}
    ).astype({"id": "str", "order_id": "str", "product_id": "str", "quantity": "str", "price": "str"})
    store_keys = {ORDERS: {7}, PRODUCTS: {1}, ORDER_ITEMS: {3}}

    def in_store(table, ids):
        return np.array([i for i in ids if i in store_keys.get(table, set())], dtype="int64")

    validated = validate_rows(ORDER_ITEMS, rows, now=NOW, in_store=in_store, delivered={ORDERS: np.array([8])})

    assert validated.good["id"].tolist() == [1, 2]
    assert list(validated.good.columns) == [
        "id",
        "order_id",
        "product_id",
        "quantity",
        "price",
        "source",
        "file",
        "line",
    ]
    assert validated.rejections.empty
    assert validated.pending["reason"].tolist() == ["unknown order_id 9: not in the store nor this delivery"]


# --- Unreadable files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("orders.csv", b"", "empty file"),
        ("orders.jsonl", b"\n  \n", "empty file"),
        ("orders.parquet", b"", "empty file"),
        ("orders.csv", bytes(range(256)) * 4, "binary content"),
        ("orders.jsonl", b"\xff\xfe\xfa not utf-8", "not UTF-8 text"),
        ("orders.parquet", b"id,customer_id\n1,2\n", "not a readable Parquet file"),
        ("orders.jsonl", b"id,customer_id\n1,2\n", "no line is a JSON object"),
        ("orders.csv", b'{"id": 1, "customer_id": 1}\n', "missing required column(s)"),
        ("refunds.csv", b"id\n1\n", "unknown kind"),
    ],
)
def test_an_unreadable_file_is_quarantined_with_its_reason(store, landing_dir, name, content, reason):
    path = landing_dir / name
    path.write_bytes(content)

    (result,) = ingest_delivery(store, [path], NOW)

    assert result.status == STATUS_QUARANTINED and reason in result.reason
    assert (result.rows_in, result.rows_loaded, result.rows_rejected) == (0, 0, 0)
    recorded = ops(store, "ingested_files")
    assert recorded[["file", "status", "rows_in"]].values.tolist() == [[name, STATUS_QUARANTINED, 0]]
    assert reason in recorded["reason"].iloc[0]


def test_a_csv_missing_a_required_column_is_quarantined_naming_the_column(store, landing_dir):
    path = write_csv(landing_dir / "orders.csv", [row(ORDERS)], columns=["id", "customer_id", "created_at", "status"])

    (result,) = prepare_delivery(store, [path], NOW)

    assert result.status == STATUS_QUARANTINED
    assert result.reason.startswith("missing required column(s) total_amount")


def test_a_header_only_csv_loads_nothing_and_rejects_nothing(store, landing_dir):
    path = landing_dir / "orders.csv"
    path.write_text("id,customer_id,created_at,total_amount,status\n")

    (result,) = ingest_delivery(store, [path], NOW)

    assert (result.status, result.rows_in, result.days) == (STATUS_LOADED, 0, ())


def test_a_quarantined_file_moves_beside_its_reason_without_overwriting_an_earlier_one(landing_dir):
    for attempt in range(2):
        path = landing_dir / "orders.csv"
        path.write_bytes(b"")

        moved = move_to_quarantine(landing_dir, path, f"empty file ({attempt})")

    assert quarantine_path(landing_dir, "orders.csv") == landing_dir / "quarantine" / "orders.csv"
    assert moved == landing_dir / "quarantine" / "orders.csv.1" and not path.exists()
    assert (landing_dir / "quarantine" / "orders.csv.1.reason.txt").read_text() == "empty file (1)\n"
    assert (landing_dir / "quarantine" / "orders.csv.reason.txt").read_text() == "empty file (0)\n"


# --- Writes ----------------------------------------------------------------------------------------


def test_redelivering_identical_content_changes_nothing_and_is_its_own_delivery(store, landing_dir):
    path = write_csv(landing_dir / "orders.csv", [row(ORDERS), row(ORDERS, id=2)])
    (first,) = ingest_delivery(store, [path], NOW)
    before = stored(store, ORDERS)
    copy = landing_dir / "orders-again.csv"
    copy.write_bytes(path.read_bytes())

    results = [
        *ingest_delivery(store, [path], NOW + dt.timedelta(hours=1)),
        *ingest_delivery(store, [copy], NOW + dt.timedelta(hours=2)),
    ]

    assert [(r.status, r.rows_in, r.rows_already_loaded) for r in results] == [(STATUS_DUPLICATE, 2, 2)] * 2
    pd.testing.assert_frame_equal(before, stored(store, ORDERS))
    files = ops(store, "ingested_files")
    assert sorted(files["file"]) == ["orders-again.csv", "orders.csv", "orders.csv"]
    assert files["delivery_id"].nunique() == 3 and first.delivery_id in set(files["delivery_id"])


def test_a_failure_in_the_middle_of_a_write_leaves_nothing_and_a_rerun_completes_it(store, landing_dir, monkeypatch):
    path = write_csv(landing_dir / "orders.csv", [row(ORDERS), row(ORDERS, id=2, total_amount=-1)])
    (result,) = prepare_delivery(store, [path], NOW)

    def die(*args):
        raise RuntimeError("disk full while writing rejections")

    with monkeypatch.context() as patch:
        patch.setattr(landing.delivery, "insert_rejections", die)
        with pytest.raises(RuntimeError, match="disk full"):
            write_file_ingest(store, result, NOW)

    assert stored(store, ORDERS).empty
    assert ops(store, "ingested_files").empty and ops(store, "ingest_rejections").empty

    (rerun,) = ingest_delivery(store, [path], NOW)

    assert (rerun.status, rerun.rows_loaded, rerun.rows_rejected) == (STATUS_PARTIAL, 1, 1)
    assert stored(store, ORDERS)["id"].tolist() == [1]
    assert ops(store, "ingest_rejections")["line"].tolist() == [3]


def test_writing_a_result_twice_loads_its_rows_once(store, landing_dir):
    (result,) = prepare_delivery(store, [write_csv(landing_dir / "orders.csv", [row(ORDERS)])], NOW)

    first = write_file_ingest(store, result, NOW)
    second = write_file_ingest(store, result, NOW)

    assert first is second
    assert len(stored(store, ORDERS)) == 1 and len(ops(store, "ingested_files")) == 1


def test_every_row_of_a_messy_delivery_is_accounted_for_once(store, landing_dir):
    paths = [
        write_jsonl(landing_dir / "orders.jsonl", [row(ORDERS), "{oops", row(ORDERS, id=2, created_at="3026-01-01")]),
        write_csv(landing_dir / "order_items.csv", [row(ORDER_ITEMS), row(ORDER_ITEMS, id=2, order_id=2)]),
        write_parquet(landing_dir / "user_activities.parquet", [row(USER_ACTIVITIES), row(USER_ACTIVITIES)]),
    ]

    ingest_delivery(store, paths, NOW)

    files = ops(store, "ingested_files")
    outcomes = files[["rows_loaded", "rows_updated", "rows_already_loaded", "rows_pending", "rows_rejected"]]
    assert (files["rows_in"] == outcomes.sum(axis=1)).all()
    assert files.set_index("file")["rows_pending"].to_dict() == {
        "orders.jsonl": 0,
        "order_items.csv": 1,  # its order was rejected: it waits for the order to arrive
        "user_activities.parquet": 0,
    }
    assert files.set_index("file")["rows_in"].to_dict() == {
        "orders.jsonl": 3,
        "order_items.csv": 2,
        "user_activities.parquet": 2,
    }
    rejected = ops(store, "ingest_rejections").groupby("file").size()
    assert rejected.to_dict() == files.set_index("file")["rows_rejected"].loc[rejected.index].to_dict()
    assert sum(len(stored(store, table)) for table in (ORDERS, ORDER_ITEMS, USER_ACTIVITIES)) == 3


def test_the_days_of_the_loaded_rows_are_reported_an_items_day_being_its_orders(store, landing_dir):
    ingest_delivery(store, [write_csv(landing_dir / "orders-1.csv", [row(ORDERS)])], NOW)
    paths = [
        write_csv(landing_dir / "orders-2.csv", [row(ORDERS, id=2, created_at="2026-03-03T23:00:00-02:00")]),
        write_csv(landing_dir / "order_items.csv", [row(ORDER_ITEMS), row(ORDER_ITEMS, id=2, order_id=2)]),
    ]

    results = ingest_delivery(store, paths, NOW)

    assert [r.days for r in results] == [(dt.date(2026, 3, 4),), (dt.date(2026, 3, 1), dt.date(2026, 3, 4))]


def test_read_rows_are_text_with_their_line_numbers(landing_dir):
    path = write_parquet(landing_dir / "orders.parquet", [row(ORDERS), row(ORDERS, id=2)])

    raw = read_landing_file(path)

    assert raw.rows["line"].tolist() == [1, 2]
    assert raw.rows["total_amount"].tolist() == ["20", "20"]


# --- Sample ----------------------------------------------------------------------------------------


def test_the_landing_sample_loads_without_rejection_beside_the_simulated_days(tmp_path):
    settings = SimulationSettings()
    catalog = simulate_catalog(settings)
    conn = duckdb.connect(str(tmp_path / "anomalens.duckdb"))
    replace_catalog(conn, {CATEGORIES: catalog.categories, PRODUCTS: catalog.products, CUSTOMERS: catalog.customers})
    start = dt.datetime.combine(DAY, dt.time())
    base = day_id_base(DAY)
    replace_simulated_days(
        conn,
        start,
        start + dt.timedelta(days=1),
        (base + 1, base + 10**8 - 1),
        [simulate_day(settings, DAY, catalog)],
        DETAIL_KEYS_BY_ACTION,
    )

    paths = write_landing_sample(tmp_path / "landing", [DAY, DAY + dt.timedelta(days=1)], seed=settings.seed)
    results = ingest_delivery(conn, paths, NOW)

    assert sorted(path.suffix for path in paths) == [".csv", ".jsonl", ".parquet"]
    assert [(r.status, r.rows_rejected) for r in results] == [(STATUS_LOADED, 0)] * 3
    assert all(r.rows_loaded > 0 and r.days == (DAY, DAY + dt.timedelta(days=1)) for r in results)
    landed = conn.execute("SELECT min(id) FROM store.orders WHERE source <> 'simulator'").fetchall()[0][0]
    assert landed == base + LANDING_SAMPLE_ID_OFFSET + 1
