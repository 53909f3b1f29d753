"""A store's own files, in its own words, from nothing to anomalies: `anomalens ingest --detect`.

The delivery is the exported sample rewritten the way a shop system writes it: its column names,
statuses and action names (mapped in the settings file's `landing` section), epoch timestamps, text
order ids, an action type AnomaLens does not know, and a few planted anomalies with known customers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from anomalens_dagster.core.landing import write_landing_sample

DAYS = [dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)]
PLANTED_ORDER = "WC-PLANTED-1"
EPOCH = pd.Timestamp(0, tz="UTC")
BURST_IP = "203.0.113.77"
SETTINGS = """
landing:
  orders:
    columns: {order_number: id, buyer_id: customer_id, placed_at: created_at, grand_total: total_amount, state: status}
    values: {status: {wc-completed: delivered}}
  order_items:
    columns: {order_number: order_id}
  user_activities:
    values: {action_type: {page_view: view_page, checkout_complete: purchase}}
"""


def their_orders(orders: pd.DataFrame, customer: int, planted_items_total: float) -> pd.DataFrame:
    """Orders as the shop writes them, plus one charged a hundred times its items for `customer`."""
    statuses = ["wc-completed", "completed", "SHIPPED", "refunded"]
    planted = pd.DataFrame(
        {
            "order_number": [PLANTED_ORDER],
            "buyer_id": [customer],
            "placed_at": [int(dt.datetime(2026, 3, 3, 14, 0, tzinfo=dt.UTC).timestamp())],
            "grand_total": [round(planted_items_total * 100, 2)],
            "state": ["completed"],
        }
    )
    theirs = pd.DataFrame(
        {
            "order_number": "WC-" + orders["id"].astype(str),
            "buyer_id": orders["customer_id"],
            "placed_at": (pd.to_datetime(orders["created_at"], utc=True) - EPOCH) // pd.Timedelta(seconds=1),
            "grand_total": orders["total_amount"],
            "state": [statuses[n % len(statuses)] for n in range(len(orders))],
        }
    )
    return pd.concat([theirs, planted], ignore_index=True)


def their_activities(activities: list[dict], customer: int) -> list[dict]:
    """Activities in their action names, one unknown action type, and a burst of identical searches."""
    renamed = {"view_page": "page_view", "purchase": "checkout_complete"}
    rows = [{**row, "action_type": renamed.get(row["action_type"], row["action_type"])} for row in activities]
    rows[0] = {**rows[0], "action_type": "wishlist_add"}
    start = dt.datetime(2026, 3, 2, 3, 0, tzinfo=dt.UTC)
    burst = [
        {
            "id": 7_000_000_000 + n,
            "customer_id": customer,
            "session_id": "burst-session",
            "timestamp": (start + dt.timedelta(milliseconds=600 * n)).isoformat(),
            "action_type": "search",
            "details": {"query": "gift card", "url": "/search?q=gift+card"},
            "ip_address": BURST_IP,
            "user_agent": "curl/8.0",
        }
        for n in range(15)
    ]
    return rows + burst


@pytest.fixture
def own_delivery(tmp_path) -> tuple[Path, Path, int, int]:
    """A landing folder of the shop's files and its settings file; the planted customers."""
    sample = tmp_path / "sample"
    write_landing_sample(sample, DAYS, catalog=True)
    landing = tmp_path / "landing"
    landing.mkdir()
    for kind in ("categories", "products", "customers"):
        (path,) = sample.glob(f"{kind}-*.csv")
        path.rename(landing / path.name)
    (orders_path,) = sample.glob("orders-*.csv")
    orders = pd.read_csv(orders_path)
    (items_path,) = sample.glob("order_items-*.parquet")
    items = pd.read_parquet(items_path)
    (activities_path,) = sample.glob("user_activities-*.jsonl")
    activities = [json.loads(line) for line in activities_path.read_text().splitlines()]
    order_customer, burst_customer = int(orders["customer_id"].iloc[0]), int(orders["customer_id"].iloc[1])

    planted_items = items[items["order_id"] == orders["id"].iloc[0]].assign(order_id=PLANTED_ORDER)
    planted_items["id"] = planted_items["id"] + 5_000_000_000
    planted_total = float((planted_items["price"] * planted_items["quantity"]).sum())
    their_orders(orders, order_customer, planted_total).to_csv(landing / "orders-shop.csv", index=False)
    items = items.assign(order_id="WC-" + items["order_id"].astype(str))
    pd.concat([items, planted_items], ignore_index=True).rename(columns={"order_id": "order_number"}).to_parquet(
        landing / "order_items-shop.parquet", index=False
    )
    rows = their_activities(activities, burst_customer)
    (landing / "user_activities-shop.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = tmp_path / "settings.yaml"
    settings.write_text(SETTINGS)
    return landing, settings, order_customer, burst_customer


@pytest.mark.slow
def test_a_shops_own_files_in_its_own_words_become_anomalies_that_name_their_customers(own_delivery, tmp_path):
    landing, settings, order_customer, burst_customer = own_delivery
    db = tmp_path / "shop.duckdb"
    anomalens = str(Path(sys.executable).with_name("anomalens"))
    # Only what the command line gives: no ANOMALENS_* variable of the test session.
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANOMALENS_")}

    done = subprocess.run(
        [anomalens, "ingest", "--landing", str(landing), "--db", str(db), "--settings", str(settings), "--detect"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "DAGSTER_HOME": str(tmp_path / "dagster_home")},
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with duckdb.connect(str(db), read_only=True) as conn:
        logged = conn.execute(
            "SELECT file, rows_in, rows_loaded + rows_updated + rows_already_loaded + rows_pending + rows_rejected, "
            "rows_rejected FROM ops.ingested_files"
        ).fetchall()
        statuses = dict(conn.execute("SELECT status, count(*) FROM store.orders GROUP BY status").fetchall())
        unknown_action = conn.execute(
            "SELECT count(*) FROM store.user_activities WHERE action_type = 'wishlist_add'"
        ).fetchone()[0]
        (planted_id,) = conn.execute(
            "SELECT id FROM ops.id_map WHERE kind = 'orders' AND source_id = $source", {"source": PLANTED_ORDER}
        ).fetchone()
        order_records = conn.execute(
            "SELECT DISTINCT customer_id FROM detections.anomalies WHERE entity_type = 'order' AND entity_id = $id",
            {"id": planted_id},
        ).fetchall()
        burst_records = conn.execute(
            """SELECT count(DISTINCT a.entity_id), min(a.customer_id), max(a.customer_id)
               FROM detections.anomalies AS a JOIN store.user_activities AS u ON u.id = a.entity_id
               WHERE a.entity_type = 'activity' AND a.detector_name = 'ensemble' AND u.ip_address = $ip""",
            {"ip": BURST_IP},
        ).fetchone()

    assert len(logged) == 6 and all(rows_in == accounted > 0 for _, rows_in, accounted, _ in logged), logged
    assert all(rejected == 0 for *_, rejected in logged), logged
    assert set(statuses) == {"delivered", "completed", "shipped", "refunded"}
    assert unknown_action == 1
    assert order_records == [(order_customer,)]
    flagged, lowest, highest = burst_records
    assert flagged >= 5 and lowest == highest == burst_customer
