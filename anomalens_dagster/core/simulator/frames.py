"""The day's DataFrames: orders, items and activities numbered by time, and the labels of injected rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomalens_dagster import constants
from anomalens_dagster.core.simulator.catalogue import TrafficPools
from anomalens_dagster.core.simulator.draws import rank
from anomalens_dagster.core.simulator.rows import MAX_ORDER_LINES, Orders, Rows
from anomalens_dagster.core.simulator.vocabulary import (
    ADD_TO_CART,
    FAILED_LOGIN,
    LOGIN,
    PURCHASE,
    REMOVE_FROM_CART,
    SEARCH,
    UPDATE_PROFILE,
    VIEW_PAGE,
    VIEW_PRODUCT,
)

_ID_EPOCH = dt.date(2000, 1, 1)
_IDS_PER_DAY = 10**8


@dataclass(frozen=True, eq=False)
class SimulatedDay:
    """One day of store events and the ground truth of its injected anomalies."""

    orders: pd.DataFrame
    order_items: pd.DataFrame
    user_activities: pd.DataFrame
    simulation_labels: pd.DataFrame


def day_id_base(day: dt.date) -> int:
    """Id offset of a day's rows: rows of ``day`` are numbered ``base + 1, base + 2, ...``.

    Ten to the eighth ids per day since 2000-01-01, so ids are unique across days and a rebuilt day
    gets the same ids.
    """
    days = (day - _ID_EPOCH).days
    if days < 0:
        raise ValueError(f"days before {_ID_EPOCH.isoformat()} have no id range, got {day}")
    return days * _IDS_PER_DAY


def _frame(columns: dict[str, object]) -> pd.DataFrame:
    """A DataFrame over freshly built arrays, without copying them (nothing else holds them)."""
    return pd.DataFrame(columns, copy=False)


def assemble(
    day: dt.date,
    base: int,
    rows: Rows,
    t_us: np.ndarray,
    session_number: np.ndarray,
    orders: Orders,
    pools: TrafficPools,
) -> SimulatedDay:
    """The day's frames from its rows in time order; ``session_number`` numbers each row's site
    session (0-based, in order of the sessions' first actions)."""
    midnight_us = int(np.datetime64(day, "us").astype(np.int64))
    n_rows, n_orders = len(rows), len(orders.customer)
    code = rows.code

    # Orders are numbered by time; their created_at is their purchase's timestamp.
    is_purchase = code == PURCHASE
    purchase_row = np.empty(n_orders, dtype=np.int64)
    purchase_row[rows.subject[is_purchase]] = np.flatnonzero(is_purchase)
    order_time = t_us[purchase_row]
    order_rank = rank(order_time)
    order_id = base + 1 + order_rank
    by_time = np.argsort(order_rank)
    orders_frame = _frame(
        {
            "id": order_id[by_time],
            "customer_id": orders.customer[by_time] + 1,
            "created_at": (midnight_us + order_time[by_time]).astype("datetime64[us]"),
            "total_amount": orders.total[by_time],
            "status": pd.array(constants.ORDER_STATUSES, dtype="str").take(orders.status[by_time]),
        }
    )
    line_no = np.arange(len(orders.line_order)) - orders.line_start[orders.line_order]
    line_sort = np.argsort(order_rank[orders.line_order] * MAX_ORDER_LINES + line_no)
    items_frame = _frame(
        {
            "id": base + 1 + np.arange(len(line_sort), dtype=np.int64),
            "order_id": order_id[orders.line_order[line_sort]],
            "product_id": orders.line_product[line_sort] + 1,
            "quantity": orders.line_quantity[line_sort].astype(np.int64),
            "price": orders.line_price_cents[line_sort] / 100.0,
        }
    )

    subject = rows.subject
    is_login, is_failed = code == LOGIN, code == FAILED_LOGIN
    is_view_product, is_search = code == VIEW_PRODUCT, code == SEARCH
    is_product = is_view_product | (code == ADD_TO_CART) | (code == REMOVE_FROM_CART)
    product = np.where(is_product, subject, -1)
    query = np.where(is_search, subject, -1)
    url = np.where((code == VIEW_PAGE) | (code == UPDATE_PROFILE), subject, -1)
    url[is_view_product] = pools.product_urls[subject[is_view_product]]
    url[is_search] = pools.search_urls[subject[is_search]]
    purchases = np.flatnonzero(is_purchase)
    purchase_total = np.zeros(n_rows)
    purchase_total[purchases] = orders.total[subject[purchases]]
    purchase_order_id = np.zeros(n_rows, dtype=np.int64)
    purchase_order_id[purchases] = order_id[subject[purchases]]
    session_ids = _session_ids(day, int(session_number.max()) + 1 if n_rows else 0)
    activity_id = base + 1 + np.arange(n_rows, dtype=np.int64)
    activities_frame = _frame(
        {
            "id": activity_id,
            "customer_id": pd.arrays.IntegerArray(np.maximum(rows.customer, 0) + 1, rows.customer < 0),
            "session_id": session_ids.take(session_number),
            "timestamp": (midnight_us + t_us).astype("datetime64[us]"),
            "action_type": pd.array(constants.ACTION_TYPES, dtype="str").take(code),
            "ip_address": pools.ip_addresses.take(rows.ip),
            "user_agent": pools.user_agents.take(rows.user_agent),
            "details_product_id": pd.arrays.IntegerArray(product + 1, ~is_product),
            "details_product_name": pools.product_names.take(product, allow_fill=True),
            "details_quantity": pd.arrays.IntegerArray(rows.quantity, rows.quantity == 0),
            "details_query": pools.search_queries.take(query, allow_fill=True),
            "details_url": pools.urls.take(url, allow_fill=True),
            "details_success": pd.arrays.BooleanArray(is_login, ~(is_login | is_failed)),
            "details_order_total": pd.arrays.FloatingArray(purchase_total, ~is_purchase),
            "details_attempted_email": pools.login_emails.take(np.where(is_failed, subject, -1), allow_fill=True),
            "details_order_id": pd.arrays.IntegerArray(purchase_order_id, ~is_purchase),
        }
    )

    labels_frame = _labels(day, rows, t_us, activity_id, orders, order_id, order_time)
    return SimulatedDay(
        orders=orders_frame,
        order_items=items_frame,
        user_activities=activities_frame,
        simulation_labels=labels_frame,
    )


def _session_ids(day: dt.date, n_sessions: int) -> pd.api.extensions.ExtensionArray:
    """``"YYYYMMDD-000001"``... in chronological order: unique within and across days."""
    numbers = pd.Series(np.arange(1, n_sessions + 1)).astype("str").str.zfill(6)
    return (day.strftime("%Y%m%d") + "-" + numbers).array


def _labels(
    day: dt.date,
    rows: Rows,
    t_us: np.ndarray,
    activity_id: np.ndarray,
    orders: Orders,
    order_id: np.ndarray,
    order_time: np.ndarray,
) -> pd.DataFrame:
    """One label per injected order and activity; episodes numbered per kind in order of their first row."""
    labelled_orders = np.flatnonzero(orders.anomaly_kind >= 0)
    labelled_rows = np.flatnonzero(rows.kind >= 0)
    kind = np.concatenate([orders.anomaly_kind[labelled_orders], rows.kind[labelled_rows]])
    drawn_episode = np.concatenate([orders.episode[labelled_orders], rows.episode[labelled_rows]])
    when = np.concatenate([order_time[labelled_orders], t_us[labelled_rows]])
    is_activity = np.arange(len(kind)) >= len(labelled_orders)
    entity_id = np.concatenate([order_id[labelled_orders], activity_id[labelled_rows]])

    # Each draw numbers its own episodes; renumber them per kind, chronologically, from 1.
    stride = int(drawn_episode.max()) + 1 if len(kind) else 1
    episodes, episode_of_label = np.unique(kind * stride + drawn_episode, return_inverse=True)
    first_seen = np.full(len(episodes), np.iinfo(np.int64).max)
    np.minimum.at(first_seen, episode_of_label, when)
    episode_kind = episodes // stride
    by_kind_then_time = np.lexsort((first_seen, episode_kind))
    position = np.empty(len(episodes), dtype=np.int64)
    position[by_kind_then_time] = np.arange(len(episodes))
    kind_start = np.searchsorted(episode_kind[by_kind_then_time], episode_kind)
    number = position - kind_start + 1
    episode_ids = pd.array(
        np.strings.add(
            np.strings.add(f"{day.isoformat()}:", np.array(constants.ANOMALY_KINDS)[episode_kind]),
            np.strings.add(":", number.astype(np.str_)),
        ),
        dtype="str",
    )

    ordered = np.lexsort((entity_id, is_activity))  # orders first, then activities, each by id
    entity_type = pd.array([constants.ENTITY_ORDER, constants.ENTITY_ACTIVITY], dtype="str")
    return _frame(
        {
            "entity_type": entity_type.take(is_activity[ordered].astype(np.int64)),
            "entity_id": entity_id[ordered].astype(np.int64),
            "anomaly_kind": pd.array(constants.ANOMALY_KINDS, dtype="str").take(kind[ordered]),
            "episode_id": episode_ids.take(episode_of_label[ordered]),
        }
    )
