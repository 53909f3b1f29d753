"""What an attacker (and the shop's own logs) would know of a store before an attack: its catalogue,
its accounts and their habits, the pages of the site, and the sessions running during the attack.

Read once from the store's DuckDB file (store tables only: nothing the detectors compute), so the
generator picks victims and products the way a real attacker meets them in a real shop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pandas as pd

from anomalens_dagster.constants import CUSTOMERS, OPS_SCHEMA, PRODUCTS, STORE_SCHEMA, USER_ACTIVITIES
from anomalens_dagster.core.landing.rules import ID_MAP

COMMON_USER_AGENTS = 30  # how many of the store's most used user agents impostors copy from


@dataclass(frozen=True)
class StoreView:
    """The store as seen before and during an attack window [first_day, last_day] (whole UTC days)."""

    first_day: dt.date
    last_day: dt.date
    products: pd.DataFrame  # id, name, price
    customers: pd.DataFrame  # id, email, created_at, last_seen (NaT: never active before the window)
    # The shop's own id of each customer whose file gave a text id (ops.id_map): files refer to them so.
    shop_ids: dict[int, str]
    # Each customer's most used IP address and user agent before the window (customers never active: absent).
    habits: pd.DataFrame  # customer_id, ip_address, user_agent
    # Sessions of registered customers inside the window: what a stolen session cookie continues.
    sessions: pd.DataFrame  # session_id, customer_id, started, ended, actions, ip_address, user_agent
    user_agents: tuple[str, ...]  # the most common user agents before the window (what impostors copy)
    page_urls: tuple[str, ...]  # pages `view_page` showed before the window
    search_queries: tuple[str, ...]  # what visitors searched for before the window

    @property
    def window_start(self) -> dt.datetime:
        return dt.datetime.combine(self.first_day, dt.time())

    @property
    def window_end(self) -> dt.datetime:
        """End of the window, exclusive (midnight after `last_day`)."""
        return dt.datetime.combine(self.last_day + dt.timedelta(days=1), dt.time())


def load_store_view(conn: duckdb.DuckDBPyConnection, first_day: dt.date, last_day: dt.date) -> StoreView:
    """The store's catalogue, accounts and habits before `first_day`, and its customers' sessions in the window."""
    if last_day < first_day:
        raise ValueError(f"attack window ends ({last_day}) before it starts ({first_day})")
    start = dt.datetime.combine(first_day, dt.time())
    end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time())
    window = {"start": start, "end": end}
    activities = f"{STORE_SCHEMA}.{USER_ACTIVITIES}"
    products = conn.execute(f"SELECT id, name, price FROM {STORE_SCHEMA}.{PRODUCTS} ORDER BY id").df()
    customers = conn.execute(
        f"""SELECT c.id, c.email, c.created_at, seen.last_seen
            FROM {STORE_SCHEMA}.{CUSTOMERS} c
            LEFT JOIN (SELECT customer_id, max(timestamp) AS last_seen FROM {activities}
                       WHERE timestamp < $start AND customer_id IS NOT NULL GROUP BY customer_id) seen
              ON seen.customer_id = c.id
            ORDER BY c.id""",
        {"start": start},
    ).df()
    habits = conn.execute(
        f"""SELECT customer_id, mode(ip_address) AS ip_address, mode(user_agent) AS user_agent
            FROM {activities} WHERE timestamp < $start AND customer_id IS NOT NULL
            GROUP BY customer_id ORDER BY customer_id""",
        {"start": start},
    ).df()
    sessions = conn.execute(
        f"""SELECT session_id, any_value(customer_id) AS customer_id, min(timestamp) AS started,
                   max(timestamp) AS ended, count(*) AS actions, any_value(ip_address) AS ip_address,
                   any_value(user_agent) AS user_agent
            FROM {activities}
            WHERE timestamp >= $start AND timestamp < $end AND customer_id IS NOT NULL AND session_id IS NOT NULL
            GROUP BY session_id ORDER BY session_id""",
        window,
    ).df()
    agents = conn.execute(
        f"""SELECT user_agent FROM {activities} WHERE timestamp < $start AND user_agent IS NOT NULL
            GROUP BY user_agent ORDER BY count(*) DESC, user_agent LIMIT $top""",
        {"start": start, "top": COMMON_USER_AGENTS},
    ).fetchall()
    pages = conn.execute(
        f"""SELECT DISTINCT json_extract_string(details, '$.url') AS url FROM {activities}
            WHERE timestamp < $start AND action_type = 'view_page' AND url IS NOT NULL ORDER BY url""",
        {"start": start},
    ).fetchall()
    queries = conn.execute(
        f"""SELECT DISTINCT json_extract_string(details, '$.query') AS query FROM {activities}
            WHERE timestamp < $start AND action_type = 'search' AND query IS NOT NULL ORDER BY query""",
        {"start": start},
    ).fetchall()
    mapped = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = $schema AND table_name = $table",
        {"schema": OPS_SCHEMA, "table": ID_MAP},
    ).fetchone()[0]
    shop_ids = (
        dict(
            conn.execute(
                f"SELECT id, source_id FROM {OPS_SCHEMA}.{ID_MAP} WHERE kind = $kind", {"kind": CUSTOMERS}
            ).fetchall()
        )
        if mapped
        else {}
    )
    if products.empty or customers.empty:
        raise ValueError("the store holds no products or no customers: build it before generating attacks")
    if not pages or not queries or not agents:
        raise ValueError(f"the store holds no browsing before {first_day}: attacks need earlier days to imitate")
    return StoreView(
        first_day=first_day,
        last_day=last_day,
        products=products,
        customers=customers,
        shop_ids=shop_ids,
        habits=habits,
        sessions=sessions,
        user_agents=tuple(agent for (agent,) in agents),
        page_urls=tuple(url for (url,) in pages),
        search_queries=tuple(query for (query,) in queries),
    )
