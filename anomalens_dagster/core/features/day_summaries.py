"""Per-day, per-entity summaries of the store: the history the baseline features read.

Each summary row describes one entity (a customer, a customer's IP and user agent, an IP, a
product, the whole store) on one UTC day, from that day's store rows only. A baseline over a
trailing window of W days then reads at most W small summary days, whatever the store's age, and
there is no running state: rebuilding a day alone writes exactly what a range run writes for it.

Summaries hold sums, never averages, so that any set of days combines by adding them: counts, sums
of logs and of squared logs (a log-space mean and variance), sums of the cosine and sine of the
time of day (a circular mean hour), first-seen times. Anonymous events (customer_id NULL or
negative) count for the IP and the store but belong to no customer.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa

from anomalens_dagster.constants import (
    CUSTOMER_ACCESS_DAY_SUMMARIES,
    CUSTOMER_DAY_SUMMARIES,
    FEATURES_SCHEMA,
    IP_DAY_SUMMARIES,
    ORDER_ITEMS,
    ORDERS,
    PRODUCT_DAY_SUMMARIES,
    STORE_DAY_SUMMARIES,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.features.common import finite_or_zero, log_positive, naive_utc_range, require_tables
from anomalens_dagster.core.warehouse import fit_table_to_incoming, transaction

logger = logging.getLogger(__name__)

DAY_SUMMARY_TABLES: tuple[str, ...] = (
    CUSTOMER_DAY_SUMMARIES,
    CUSTOMER_ACCESS_DAY_SUMMARIES,
    IP_DAY_SUMMARIES,
    PRODUCT_DAY_SUMMARIES,
    STORE_DAY_SUMMARIES,
)

# What each summary column holds, shown as the column descriptions of the summary assets.
DAY_SUMMARY_COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    CUSTOMER_DAY_SUMMARIES: {
        "day": "UTC day summarised.",
        "customer_id": "The customer (anonymous events are not summarised per customer).",
        "actions": "Their user activities that day.",
        "orders": "Their orders that day.",
        "spend": "Sum of those orders' total_amount (missing or non-finite amounts count 0).",
        "priced_orders": "Orders with a positive total_amount (the ones with a logarithm).",
        "log_amount_sum": "Sum of ln(total_amount) over the priced orders.",
        "log_amount_sq_sum": "Sum of ln(total_amount)^2 over the priced orders.",
        "events": "Activities plus orders: the events behind the hour sums.",
        "hour_cos_sum": "Sum of cos(2 pi h / 24) over the events, h the fractional UTC hour.",
        "hour_sin_sum": "Sum of sin(2 pi h / 24) over the events.",
        "first_seen_at": "Their first event that day.",
    },
    CUSTOMER_ACCESS_DAY_SUMMARIES: {
        "day": "UTC day summarised.",
        "customer_id": "The customer.",
        "ip_address": "An IP they acted from that day (NULL: activities without IP).",
        "user_agent": "A user agent they acted with from that IP (NULL: none recorded).",
        "actions": "Their activities with that IP and user agent that day.",
        "first_seen_at": "The first of them.",
    },
    IP_DAY_SUMMARIES: {
        "day": "UTC day summarised.",
        "ip_address": "The IP (activities without IP are not summarised per IP).",
        "actions": "Its activities that day, anonymous ones included.",
        "login_attempts": "Its login and failed_login actions.",
        "failed_logins": "Its failed_login actions.",
        "first_seen_at": "Its first activity that day.",
    },
    PRODUCT_DAY_SUMMARIES: {
        "day": "UTC day of the orders the lines belong to.",
        "product_id": "The product.",
        "lines": "Order lines of the product.",
        "quantity": "Sum of their quantities.",
        "positive_lines": "Lines with a positive quantity (the ones with a logarithm).",
        "log_quantity_sum": "Sum of ln(quantity) over those lines.",
    },
    STORE_DAY_SUMMARIES: {
        "day": "UTC day summarised; every built day has a row, an empty day too.",
        "orders": "Orders placed that day.",
        "priced_orders": "Orders with a positive total_amount.",
        "log_amount_sum": "Sum of ln(total_amount) over the priced orders.",
        "log_amount_sq_sum": "Sum of ln(total_amount)^2 over the priced orders.",
        "log_lines_sum": "Sum of ln(1 + item rows) over all orders.",
        "positive_lines": "Order lines with a positive quantity.",
        "log_quantity_sum": "Sum of ln(quantity) over those lines.",
        "amount_to_items_log_ratio_median": (
            "Median of ln(total_amount / items total) over the orders where both are positive; NULL without any."
        ),
        "activities": "User activities that day.",
    },
}

_ACTIVITIES = f"{STORE_SCHEMA}.{USER_ACTIVITIES}"
_ORDERS = f"{STORE_SCHEMA}.{ORDERS}"
_ORDER_ITEMS = f"{STORE_SCHEMA}.{ORDER_ITEMS}"


def _fractional_hour(column: str) -> str:
    return f"(hour({column}) + minute({column}) / 60.0 + second({column}) / 3600.0)"


# Every query takes $start, $end: whole UTC days, naive TIMESTAMPs.
_CUSTOMER_SQL = f"""
WITH events AS (
    SELECT customer_id, "timestamp" AS event_at, NULL::DOUBLE AS amount
    FROM {_ACTIVITIES}
    WHERE "timestamp" >= $start AND "timestamp" < $end AND customer_id >= 0
    UNION ALL
    SELECT customer_id, created_at, {finite_or_zero("total_amount")}
    FROM {_ORDERS}
    WHERE created_at >= $start AND created_at < $end AND customer_id >= 0
)
SELECT
    CAST(event_at AS DATE) AS day,
    customer_id,
    count(*) FILTER (WHERE amount IS NULL) AS actions,
    count(amount) AS orders,
    coalesce(sum(amount), 0.0) AS spend,
    count(*) FILTER (WHERE amount > 0) AS priced_orders,
    coalesce(sum({log_positive("amount")}), 0.0) AS log_amount_sum,
    coalesce(sum({log_positive("amount")} ^ 2), 0.0) AS log_amount_sq_sum,
    count(*) AS events,
    sum(cos(2 * pi() * {_fractional_hour("event_at")} / 24)) AS hour_cos_sum,
    sum(sin(2 * pi() * {_fractional_hour("event_at")} / 24)) AS hour_sin_sum,
    min(event_at) AS first_seen_at
FROM events
GROUP BY ALL
ORDER BY day, customer_id
"""

_CUSTOMER_ACCESS_SQL = f"""
SELECT
    CAST("timestamp" AS DATE) AS day,
    customer_id,
    ip_address,
    user_agent,
    count(*) AS actions,
    min("timestamp") AS first_seen_at
FROM {_ACTIVITIES}
WHERE "timestamp" >= $start AND "timestamp" < $end AND customer_id >= 0
GROUP BY ALL
ORDER BY day, customer_id, ip_address, user_agent
"""

_IP_SQL = f"""
SELECT
    CAST("timestamp" AS DATE) AS day,
    ip_address,
    count(*) AS actions,
    count(*) FILTER (WHERE action_type IN ('login', 'failed_login')) AS login_attempts,
    count(*) FILTER (WHERE action_type = 'failed_login') AS failed_logins,
    min("timestamp") AS first_seen_at
FROM {_ACTIVITIES}
WHERE "timestamp" >= $start AND "timestamp" < $end AND ip_address IS NOT NULL
GROUP BY ALL
ORDER BY day, ip_address
"""

_PRODUCT_SQL = f"""
SELECT
    CAST(o.created_at AS DATE) AS day,
    i.product_id,
    count(*) AS lines,
    coalesce(sum(coalesce(i.quantity, 0)), 0)::BIGINT AS quantity,
    count(*) FILTER (WHERE i.quantity > 0) AS positive_lines,
    coalesce(sum({log_positive("i.quantity")}), 0.0) AS log_quantity_sum
FROM {_ORDER_ITEMS} AS i
JOIN {_ORDERS} AS o ON o.id = i.order_id
WHERE o.created_at >= $start AND o.created_at < $end
GROUP BY ALL
ORDER BY day, i.product_id
"""

# One row for every day of the range, days without orders too: the row says the day was built.
_STORE_SQL = f"""
WITH days AS (
    SELECT CAST(range AS DATE) AS day FROM range($start::TIMESTAMP, $end::TIMESTAMP, INTERVAL 1 DAY)
),
items AS (
    SELECT
        i.order_id,
        count(*) AS item_count,
        sum({finite_or_zero("i.price")} * coalesce(i.quantity, 0)) AS items_total,
        count(*) FILTER (WHERE i.quantity > 0) AS positive_lines,
        coalesce(sum({log_positive("i.quantity")}), 0.0) AS log_quantity_sum
    FROM {_ORDER_ITEMS} AS i
    JOIN {_ORDERS} AS o ON o.id = i.order_id
    WHERE o.created_at >= $start AND o.created_at < $end
    GROUP BY i.order_id
),
orders AS (
    SELECT
        CAST(o.created_at AS DATE) AS day,
        {finite_or_zero("o.total_amount")} AS amount,
        coalesce(i.item_count, 0) AS item_count,
        coalesce(i.items_total, 0.0) AS items_total,
        coalesce(i.positive_lines, 0) AS positive_lines,
        coalesce(i.log_quantity_sum, 0.0) AS log_quantity_sum
    FROM {_ORDERS} AS o
    LEFT JOIN items AS i ON i.order_id = o.id
    WHERE o.created_at >= $start AND o.created_at < $end
),
order_days AS (
    SELECT
        day,
        count(*) AS orders,
        count(*) FILTER (WHERE amount > 0) AS priced_orders,
        coalesce(sum({log_positive("amount")}), 0.0) AS log_amount_sum,
        coalesce(sum({log_positive("amount")} ^ 2), 0.0) AS log_amount_sq_sum,
        sum(ln(1 + item_count)) AS log_lines_sum,
        sum(positive_lines)::BIGINT AS positive_lines,
        sum(log_quantity_sum) AS log_quantity_sum,
        median(ln(CASE WHEN amount > 0 AND items_total > 0 THEN amount / items_total END))
            AS amount_to_items_log_ratio_median
    FROM orders
    GROUP BY day
),
activity_days AS (
    SELECT CAST("timestamp" AS DATE) AS day, count(*) AS activities
    FROM {_ACTIVITIES}
    WHERE "timestamp" >= $start AND "timestamp" < $end
    GROUP BY day
)
SELECT
    d.day,
    coalesce(o.orders, 0) AS orders,
    coalesce(o.priced_orders, 0) AS priced_orders,
    coalesce(o.log_amount_sum, 0.0) AS log_amount_sum,
    coalesce(o.log_amount_sq_sum, 0.0) AS log_amount_sq_sum,
    coalesce(o.log_lines_sum, 0.0) AS log_lines_sum,
    coalesce(o.positive_lines, 0) AS positive_lines,
    coalesce(o.log_quantity_sum, 0.0) AS log_quantity_sum,
    o.amount_to_items_log_ratio_median,
    coalesce(a.activities, 0) AS activities
FROM days AS d
LEFT JOIN order_days AS o ON o.day = d.day
LEFT JOIN activity_days AS a ON a.day = d.day
ORDER BY d.day
"""

_SUMMARY_SQL: dict[str, str] = {
    CUSTOMER_DAY_SUMMARIES: _CUSTOMER_SQL,
    CUSTOMER_ACCESS_DAY_SUMMARIES: _CUSTOMER_ACCESS_SQL,
    IP_DAY_SUMMARIES: _IP_SQL,
    PRODUCT_DAY_SUMMARIES: _PRODUCT_SQL,
    STORE_DAY_SUMMARIES: _STORE_SQL,
}


def compute_day_summaries(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dict[str, pa.Table]:
    """The five summary tables of the whole UTC days in [start, end), from the store tables of those days only."""
    start, end = naive_utc_range(start, end)
    if start.time() != datetime.min.time() or end.time() != datetime.min.time():
        raise ValueError(f"Day summaries cover whole UTC days: got [{start}, {end})")
    summaries = {
        table: conn.execute(sql, {"start": start, "end": end}).fetch_arrow_table()
        for table, sql in _SUMMARY_SQL.items()
    }
    logger.info("Summarised [%s, %s): %s", start, end, ", ".join(f"{t} {s.num_rows}" for t, s in summaries.items()))
    return summaries


def replace_day_summaries(
    conn: duckdb.DuckDBPyConnection, summaries: dict[str, pa.Table], start: datetime, end: datetime
) -> dict[str, int]:
    """Replace the summary rows of the days in [start, end) with ``summaries``, all tables in one transaction."""
    start, end = naive_utc_range(start, end)
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {FEATURES_SCHEMA}")
    written = {}
    with transaction(conn):
        for table in DAY_SUMMARY_TABLES:
            conn.register("incoming", summaries[table])
            try:
                fit_table_to_incoming(conn, FEATURES_SCHEMA, table)
                conn.execute(
                    f"DELETE FROM {FEATURES_SCHEMA}.{table} WHERE day >= $start AND day < $end",
                    {"start": start.date(), "end": end.date()},
                )
                conn.execute(f"INSERT INTO {FEATURES_SCHEMA}.{table} BY NAME SELECT * FROM incoming")
            finally:
                conn.unregister("incoming")
            written[table] = summaries[table].num_rows
    return written


def write_day_summaries(conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Compute and replace the summaries of [start, end) through one connection (tests, benchmarks, scripts)."""
    return replace_day_summaries(conn, compute_day_summaries(conn, start, end), start, end)


# Days of [$first, $last] with store events but no row in the store summary. Parameters: $first, $last (DATE).
_UNSUMMARISED_DAYS_SQL = f"""
WITH event_days AS (
    SELECT DISTINCT CAST("timestamp" AS DATE) AS day FROM {_ACTIVITIES}
    WHERE "timestamp" >= $first::TIMESTAMP AND "timestamp" < $last::TIMESTAMP + INTERVAL 1 DAY
    UNION
    SELECT DISTINCT CAST(created_at AS DATE) FROM {_ORDERS}
    WHERE created_at >= $first::TIMESTAMP AND created_at < $last::TIMESTAMP + INTERVAL 1 DAY
)
SELECT day FROM event_days
WHERE day NOT IN (SELECT day FROM {FEATURES_SCHEMA}.{STORE_DAY_SUMMARIES} WHERE day BETWEEN $first AND $last)
ORDER BY day
"""


def unsummarised_days(
    conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime, baseline_days: int
) -> list[date]:
    """Days whose summaries the features of [start, end) read but that were never built, though the store has events.

    Features computed without them would take those days for empty; the assets name them in the run log.
    """
    start, end = naive_utc_range(start, end)
    require_tables(conn, (STORE_DAY_SUMMARIES,), "the feature baselines")
    first = start.date() - timedelta(days=baseline_days)
    last = (end - timedelta(microseconds=1)).date() - timedelta(days=1)
    if last < first:
        return []
    return [day for (day,) in conn.execute(_UNSUMMARISED_DAYS_SQL, {"first": first, "last": last}).fetchall()]
