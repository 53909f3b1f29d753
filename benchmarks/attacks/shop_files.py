"""Attack rows written as a shop's own export files, and the settings that map them to the store.

The shop names its columns and values its own way (the way a WooCommerce-like backend and an
event tracker export them): event ids are UUIDs, new accounts have text ids, orders carry epoch
milliseconds, action types are the tracker's event names. `SHOP_LANDING_SETTINGS` is the
`landing` section of the settings file that maps all of it, so the files take the landing zone's
real path: mapping, text ids through `ops.id_map`, validation, one transaction per file.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd

from anomalens_dagster.constants import (
    CUSTOMERS,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    OPS_SCHEMA,
    ORDER_ITEMS,
    ORDERS,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.landing.rules import ID_MAP
from benchmarks.attacks.builder import AttackRows

# Ours -> the shop's: column names per file kind.
SHOP_COLUMNS = {
    CUSTOMERS: {"id": "customer_ref", "email": "email_address", "first_name": "given_name",
                "last_name": "family_name", "created_at": "signed_up_at"},
    ORDERS: {"id": "order_number", "customer_id": "buyer", "created_at": "placed_at_ms",
             "total_amount": "grand_total", "status": "state"},
    ORDER_ITEMS: {"id": "line_id", "order_id": "order_number", "product_id": "sku_id", "quantity": "qty",
                  "price": "unit_price"},
    USER_ACTIVITIES: {"id": "event_id", "customer_id": "user_id", "session_id": "session_token",
                      "timestamp": "occurred_at", "action_type": "event", "details": "payload",
                      "ip_address": "client_ip", "user_agent": "user_agent_string"},
}  # fmt: skip
SHOP_EVENTS = {
    "view_page": "page_view", "view_product": "product_view", "search": "site_search", "add_to_cart": "cart_add",
    "remove_from_cart": "cart_remove", "login": "sign_in", "failed_login": "sign_in_failed", "logout": "sign_out",
    "purchase": "checkout_complete", "update_profile": "account_update",
}  # fmt: skip
# A cancelled order is written "wc-refunded" half of the time, as refunds are cancellations in the store.
SHOP_STATUSES = {"pending": "wc-pending", "processing": "wc-processing", "shipped": "wc-shipped",
                 "delivered": "wc-completed", "cancelled": "wc-cancelled"}  # fmt: skip

SHOP_LANDING_SETTINGS: dict = {
    "landing": {
        kind: {"columns": {theirs: ours for ours, theirs in columns.items()}} for kind, columns in SHOP_COLUMNS.items()
    }
}
SHOP_LANDING_SETTINGS["landing"][USER_ACTIVITIES]["values"] = {
    "action_type": {theirs: ours for ours, theirs in SHOP_EVENTS.items()}
}
SHOP_LANDING_SETTINGS["landing"][ORDERS]["values"] = {
    "status": {**{theirs: ours for ours, theirs in SHOP_STATUSES.items()}, "wc-refunded": "cancelled"}
}


def write_shop_files(rows: AttackRows, directory: Path, name: str) -> list[Path]:
    """Write `rows` as the shop's export files named `<kind>-<name>.<ext>` into `directory`; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    if not rows.customers.empty:
        customers = rows.customers.assign(
            created_at=pd.to_datetime(rows.customers["created_at"]).dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        )
        paths.append(directory / f"{CUSTOMERS}-{name}.csv")
        customers.rename(columns=SHOP_COLUMNS[CUSTOMERS]).to_csv(paths[-1], index=False)
    if not rows.orders.empty:
        cancelled = rows.orders["status"] == "cancelled"
        refunded = cancelled & (rows.orders.index.to_series() % 2 == 0)
        orders = rows.orders.assign(
            created_at=(pd.to_datetime(rows.orders["created_at"]).astype("datetime64[ms]").astype("int64")),
            status=rows.orders["status"].map(SHOP_STATUSES).where(~refunded, "wc-refunded"),
        )
        paths.append(directory / f"{ORDERS}-{name}.csv")
        orders.rename(columns=SHOP_COLUMNS[ORDERS]).to_csv(paths[-1], index=False)
        paths.append(directory / f"{ORDER_ITEMS}-{name}.parquet")
        rows.order_items.rename(columns=SHOP_COLUMNS[ORDER_ITEMS]).to_parquet(paths[-1], index=False)
    if not rows.user_activities.empty:
        activities = rows.user_activities.assign(
            timestamp=pd.to_datetime(rows.user_activities["timestamp"]).dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            action_type=rows.user_activities["action_type"].map(SHOP_EVENTS),
        ).rename(columns=SHOP_COLUMNS[USER_ACTIVITIES])
        paths.append(directory / f"{USER_ACTIVITIES}-{name}.jsonl")
        with paths[-1].open("w") as out:
            for record in activities.to_dict(orient="records"):
                out.write(json.dumps({key: value for key, value in record.items() if value is not None}) + "\n")
    return paths


def episode_rows(conn: duckdb.DuckDBPyConnection, rows: AttackRows) -> pd.DataFrame:
    """Ground truth: one row per stored activity and order of every episode (entity_type, entity_id,
    kind, episode_id), the activities' text ids resolved through the landing's `ops.id_map`.

    Raises when a row of an episode is not in the store: every attack row must have loaded.
    """
    truth = [
        (ENTITY_ACTIVITY, source_id, episode.kind, episode.episode_id)
        for episode in rows.episodes
        for source_id in episode.activity_ids
    ]
    activities = pd.DataFrame(truth, columns=["entity_type", "source_id", "kind", "episode_id"])
    conn.register("attack_activity_ids", activities[["source_id"]])
    try:
        mapped = conn.execute(
            f"""SELECT m.source_id, m.id AS entity_id FROM {OPS_SCHEMA}.{ID_MAP} m
                JOIN attack_activity_ids USING (source_id)
                JOIN {STORE_SCHEMA}.{USER_ACTIVITIES} a ON a.id = m.id
                WHERE m.kind = $kind""",
            {"kind": USER_ACTIVITIES},
        ).df()
    finally:
        conn.unregister("attack_activity_ids")
    activities = activities.merge(mapped, on="source_id", how="left")
    orders = pd.DataFrame(
        [
            (ENTITY_ORDER, order_id, episode.kind, episode.episode_id)
            for episode in rows.episodes
            for order_id in episode.order_ids
        ],
        columns=["entity_type", "entity_id", "kind", "episode_id"],
    )
    conn.register("attack_order_ids", orders[["entity_id"]])
    try:
        stored = conn.execute(
            f"SELECT id FROM {STORE_SCHEMA}.{ORDERS} JOIN attack_order_ids ON id = entity_id"
        ).fetchall()
    finally:
        conn.unregister("attack_order_ids")
    missing_orders = set(orders["entity_id"]) - {order_id for (order_id,) in stored}
    missing_activities = activities.loc[activities["entity_id"].isna(), "source_id"]
    if missing_orders or len(missing_activities):
        raise ValueError(
            f"{len(missing_activities)} attack activities and {len(missing_orders)} attack orders are not in the "
            f"store (e.g. {list(missing_activities[:3]) + sorted(missing_orders)[:3]}): look at ops.ingest_rejections "
            "and ops.pending_rows"
        )
    activities = activities.drop(columns="source_id").astype({"entity_id": "int64"})
    return pd.concat([activities[orders.columns], orders.astype({"entity_id": "int64"})], ignore_index=True)
