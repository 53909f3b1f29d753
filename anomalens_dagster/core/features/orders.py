"""Order features: one row per order, from the order, its items, its customer and the entity baselines.

``compute_order_features`` returns one row per ``store.orders`` row with ``start <= created_at <
end``, keyed by ``id``. The seed system's features keep their names and meanings exactly; every extra
column is documented where its name is declared below. Every value reads only the order, its items
and earlier data (earlier orders, earlier days' summaries), so it never changes when later days are
loaded, and a day computed alone equals the same day within a range.
"""

from __future__ import annotations

import logging
from datetime import datetime

import duckdb
import pandas as pd

from anomalens_dagster.constants import (
    CUSTOMER_DAY_SUMMARIES,
    CUSTOMERS,
    DEFAULT_BASELINE_DAYS,
    DEFAULT_BASELINE_SHRINKAGE,
    FEATURES_SCHEMA,
    ORDER_ITEMS,
    ORDERS,
    PRODUCT_DAY_SUMMARIES,
    STORE_DAY_SUMMARIES,
    STORE_SCHEMA,
)
from anomalens_dagster.core.features.activity_baselines import (
    ACCOUNT_AGE_CAP_DAYS,
    CUSTOMER_BASELINE_COLUMNS,
    account_age_sql,
    hour_distance_sql,
)
from anomalens_dagster.core.features.common import finite_or_zero, log_positive, naive_utc_range, require_tables

logger = logging.getLogger(__name__)

# The summary tables the order baselines read.
ORDER_SUMMARY_TABLES = (CUSTOMER_DAY_SUMMARIES, PRODUCT_DAY_SUMMARIES, STORE_DAY_SUMMARIES)

# --- Order columns -------------------------------------------------------------------------------

ORDER_REQUIRED_FEATURE_COLUMNS: tuple[str, ...] = (
    "total_amount",  # 0 when missing or not finite
    "item_count",  # number of order_items rows
    "total_quantity",  # sum of their quantities
    "hour_of_day",  # 0-23, UTC
    "day_of_week",  # Monday = 0
)
ORDER_EXTRA_FEATURE_COLUMNS: tuple[str, ...] = (
    # Sum of price * quantity over the order's item rows; 0 without items.
    "items_total",
    # total_amount / items_total, about 1 for a normal order. When the items cost nothing (no item
    # rows, or all priced 0) there is nothing to compare with and the ratio is 0: as far from the
    # normal 1 as an order charged nothing for its items, and both deserve a look.
    "amount_to_items_ratio",
    # total_amount / median total_amount of the same customer's earlier orders (by created_at, then
    # id, on any day); 1 without an earlier order or when that median is not positive. Only the
    # past counts, so the value never changes when later days are loaded or run.
    "amount_to_customer_median_ratio",
    # ln(total_amount / items_total): 0 when the charge matches the items, -2.3 for ten times less,
    # +2.3 for ten times more; 0 when either is not positive. Symmetric where the ratio is not: an
    # order charged a tenth of its items lies as far out as one charged ten times their price.
    "amount_to_items_log_ratio",
)
# As-of baselines: what is usual for the order's customer, its products and the store, from the
# summaries of the baseline window's earlier days and the same day's earlier orders. The customer
# columns (account age, orders and spend in the window, hour distance) are activity_baselines'.
ORDER_BASELINE_COLUMNS: tuple[str, ...] = CUSTOMER_BASELINE_COLUMNS + (
    # ln(total_amount) minus the customer's usual log amount shrunk toward the store's: the usual is
    # (S + k m) / (n + k), with n and S the count and sum of ln(total_amount) of the customer's earlier
    # priced orders in the window (earlier days and earlier today), m the store's mean log amount over
    # the window's earlier days and k = shrinkage. One earlier order weighs 1/6 against the store, so
    # a single small order never makes the next one look huge; a first-time (or anonymous) customer is
    # compared with the store's typical order. 0 when the order is not priced or the store has no
    # earlier day. Raised by a big purchase (gifts, a business buying for an office, a new customer
    # buying much) as much as by a stolen card; lowered by unusually small ones.
    "amount_to_customer_usual_log_ratio",
    # The largest, over the order's lines with a positive quantity, of ln(quantity) minus the
    # product's usual log quantity shrunk the same way toward the store's mean log quantity per line
    # (earlier days of the window only). 0 without such lines or without an earlier day. Raised by
    # bulk and business buying, stocking up before a price change, and by resellers or scripted orders.
    "quantity_to_product_usual_log_ratio",
    # ln(1 + item rows) minus the store's mean of it over the window's earlier days: lines relative
    # to the store's usual basket. 0 without an earlier day. Raised by big baskets (a household's
    # monthly shop, an office order) and by automated cart-filling.
    "item_count_to_store_usual_log_ratio",
    # amount_to_items_log_ratio minus the median, over the window's earlier days, of each day's median
    # of it: 0 for an order charged what the store usually charges over its items' prices (shipping,
    # tax and discounts included), + for more, - for less. 0 when either amount is not positive or
    # the store has no earlier priced day. Raised by unusual shipping (express, abroad), large
    # discounts or coupons, manual price corrections, and by tampered totals.
    "amount_to_items_log_ratio_vs_store",
)
ORDER_FEATURE_COLUMNS: tuple[str, ...] = (
    ORDER_REQUIRED_FEATURE_COLUMNS + ORDER_EXTRA_FEATURE_COLUMNS + ORDER_BASELINE_COLUMNS
)
# `created_at` is no feature: it lets a writer replace the rows of a time range.
ORDER_KEY_COLUMNS: tuple[str, ...] = ("id", "created_at")
ORDER_COLUMNS: tuple[str, ...] = ORDER_KEY_COLUMNS + ORDER_FEATURE_COLUMNS
ORDER_DTYPES: dict[str, str] = {
    "id": "int64",
    "created_at": "datetime64[us]",
    "total_amount": "float64",
    "item_count": "int64",
    "total_quantity": "int64",
    "hour_of_day": "int64",
    "day_of_week": "int64",
    "items_total": "float64",
    "amount_to_items_ratio": "float64",
    "amount_to_customer_median_ratio": "float64",
    "amount_to_items_log_ratio": "float64",
    "customer_account_age_days": "float64",
    "customer_orders_in_window": "int64",
    "customer_spend_in_window": "float64",
    "hour_distance_from_customer_usual": "float64",
    "amount_to_customer_usual_log_ratio": "float64",
    "quantity_to_product_usual_log_ratio": "float64",
    "item_count_to_store_usual_log_ratio": "float64",
    "amount_to_items_log_ratio_vs_store": "float64",
}

_ORDER_FEATURES_SQL = f"""
WITH in_range AS (
    SELECT id, customer_id, created_at, {finite_or_zero("total_amount")} AS total_amount
    FROM {STORE_SCHEMA}.{ORDERS}
    WHERE created_at >= $start::TIMESTAMP AND created_at < $end::TIMESTAMP
),
items AS (
    SELECT
        order_id,
        count(*) AS item_count,
        sum(coalesce(quantity, 0)) AS total_quantity,
        sum({finite_or_zero("price")} * coalesce(quantity, 0)) AS items_total
    FROM {STORE_SCHEMA}.{ORDER_ITEMS}
    WHERE order_id IN (SELECT id FROM in_range)
    GROUP BY order_id
),
customer_history AS (
    SELECT
        id,
        count(*) OVER earlier AS earlier_orders,
        median(total_amount) OVER earlier AS earlier_median
    FROM (
        SELECT id, customer_id, created_at, {finite_or_zero("total_amount")} AS total_amount
        FROM {STORE_SCHEMA}.{ORDERS}
        WHERE created_at < $end::TIMESTAMP
          AND customer_id IN (SELECT customer_id FROM in_range)
    )
    WINDOW earlier AS (
        PARTITION BY customer_id ORDER BY created_at, id
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    )
),
-- Baselines: the day's orders up to the range's end, each with its customer's earlier orders today.
day_orders AS (
    SELECT
        id,
        CASE WHEN customer_id >= 0 THEN customer_id END AS customer_id,
        created_at,
        CAST(created_at AS DATE) AS day,
        {finite_or_zero("total_amount")} AS amount
    FROM {STORE_SCHEMA}.{ORDERS}
    WHERE created_at >= $day_start::TIMESTAMP AND created_at < $end::TIMESTAMP
),
today_so_far AS (
    SELECT
        id,
        customer_id,
        day,
        count(*) OVER earlier_today AS orders_today,
        coalesce(sum(amount) OVER earlier_today, 0.0) AS spend_today,
        count({log_positive("amount")}) OVER earlier_today AS priced_today,
        coalesce(sum({log_positive("amount")}) OVER earlier_today, 0.0) AS log_amount_today,
        min(created_at) OVER (PARTITION BY customer_id, day) AS first_today
    FROM day_orders
    WINDOW earlier_today AS (
        PARTITION BY customer_id, day ORDER BY created_at, id
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    )
),
customer_days AS (
    SELECT DISTINCT t.customer_id, t.day
    FROM today_so_far AS t JOIN in_range AS o ON o.id = t.id
    WHERE t.customer_id IS NOT NULL
),
customer_window AS (
    SELECT
        cd.customer_id,
        cd.day,
        sum(s.orders) AS orders,
        sum(s.spend) AS spend,
        sum(s.priced_orders) AS priced_orders,
        sum(s.log_amount_sum) AS log_amount_sum,
        sum(s.events) AS events,
        sum(s.hour_cos_sum) AS hour_cos_sum,
        sum(s.hour_sin_sum) AS hour_sin_sum,
        min(s.first_seen_at) AS first_seen_at
    FROM customer_days AS cd
    JOIN {FEATURES_SCHEMA}.{CUSTOMER_DAY_SUMMARIES} AS s
        ON s.customer_id = cd.customer_id AND s.day >= cd.day - $window_days AND s.day < cd.day
    GROUP BY cd.customer_id, cd.day
),
store_window AS (
    SELECT
        d.day,
        sum(s.orders) AS orders,
        sum(s.priced_orders) AS priced_orders,
        sum(s.log_amount_sum) AS log_amount_sum,
        sum(s.log_lines_sum) AS log_lines_sum,
        sum(s.positive_lines) AS positive_lines,
        sum(s.log_quantity_sum) AS log_quantity_sum,
        median(s.amount_to_items_log_ratio_median) AS typical_log_ratio
    FROM (SELECT DISTINCT CAST(created_at AS DATE) AS day FROM in_range) AS d
    JOIN {FEATURES_SCHEMA}.{STORE_DAY_SUMMARIES} AS s ON s.day >= d.day - $window_days AND s.day < d.day
    GROUP BY d.day
),
lines AS (
    SELECT i.order_id, CAST(o.created_at AS DATE) AS day, i.product_id, ln(i.quantity) AS log_quantity
    FROM {STORE_SCHEMA}.{ORDER_ITEMS} AS i
    JOIN in_range AS o ON o.id = i.order_id
    WHERE i.quantity > 0
),
product_window AS (
    SELECT l.product_id, l.day, sum(s.positive_lines) AS positive_lines, sum(s.log_quantity_sum) AS log_quantity_sum
    FROM (SELECT DISTINCT product_id, day FROM lines) AS l
    JOIN {FEATURES_SCHEMA}.{PRODUCT_DAY_SUMMARIES} AS s
        ON s.product_id = l.product_id AND s.day >= l.day - $window_days AND s.day < l.day
    GROUP BY l.product_id, l.day
),
quantity_ratios AS (
    SELECT
        l.order_id,
        max(
            l.log_quantity
            - (coalesce(p.log_quantity_sum, 0.0) + $shrinkage * sw.log_quantity_sum / sw.positive_lines)
              / (coalesce(p.positive_lines, 0) + $shrinkage)
        ) AS quantity_log_ratio
    FROM lines AS l
    JOIN store_window AS sw ON sw.day = l.day AND sw.positive_lines > 0
    LEFT JOIN product_window AS p ON p.product_id = l.product_id AND p.day = l.day
    GROUP BY l.order_id
),
baselines AS (
    SELECT
        o.id,
        t.customer_id,
        CASE WHEN t.customer_id IS NULL THEN 0 ELSE coalesce(h.priced_orders, 0) + t.priced_today END AS n_priced,
        CASE WHEN t.customer_id IS NULL THEN 0.0
            ELSE coalesce(h.log_amount_sum, 0.0) + t.log_amount_today END AS log_amount_sum,
        CASE WHEN t.customer_id IS NULL THEN 0 ELSE coalesce(h.orders, 0) + t.orders_today END AS orders_in_window,
        CASE WHEN t.customer_id IS NULL THEN 0.0 ELSE coalesce(h.spend, 0.0) + t.spend_today END AS spend_in_window,
        h.events,
        h.hour_cos_sum,
        h.hour_sin_sum,
        least(c.created_at, h.first_seen_at, t.first_today) AS first_known
    FROM in_range AS o
    JOIN today_so_far AS t ON t.id = o.id
    LEFT JOIN customer_window AS h ON h.customer_id = t.customer_id AND h.day = t.day
    LEFT JOIN {STORE_SCHEMA}.{CUSTOMERS} AS c ON c.id = t.customer_id
)
SELECT
    o.id,
    o.created_at,
    o.total_amount,
    coalesce(i.item_count, 0) AS item_count,
    coalesce(i.total_quantity, 0)::BIGINT AS total_quantity,
    hour(o.created_at) AS hour_of_day,
    isodow(o.created_at) - 1 AS day_of_week,
    {finite_or_zero("i.items_total")} AS items_total,
    CASE
        WHEN i.items_total > 0 THEN {finite_or_zero("o.total_amount / i.items_total")}
        ELSE 0.0
    END AS amount_to_items_ratio,
    CASE
        WHEN h.earlier_orders > 0 AND h.earlier_median > 0
            THEN {finite_or_zero("o.total_amount / h.earlier_median")}
        ELSE 1.0
    END AS amount_to_customer_median_ratio,
    CASE
        WHEN o.total_amount > 0 AND i.items_total > 0
            THEN {finite_or_zero("ln(o.total_amount / i.items_total)")}
        ELSE 0.0
    END AS amount_to_items_log_ratio,
    {account_age_sql("o.created_at", "b.customer_id", "b.first_known")} AS customer_account_age_days,
    b.orders_in_window AS customer_orders_in_window,
    b.spend_in_window AS customer_spend_in_window,
    {hour_distance_sql("o.created_at", "b.events", "b.hour_cos_sum", "b.hour_sin_sum")}
        AS hour_distance_from_customer_usual,
    CASE
        WHEN o.total_amount > 0 AND sw.priced_orders > 0
            THEN ln(o.total_amount)
                - (b.log_amount_sum + $shrinkage * sw.log_amount_sum / sw.priced_orders) / (b.n_priced + $shrinkage)
        ELSE 0.0
    END AS amount_to_customer_usual_log_ratio,
    coalesce(q.quantity_log_ratio, 0.0) AS quantity_to_product_usual_log_ratio,
    CASE
        WHEN sw.orders > 0 THEN ln(1 + coalesce(i.item_count, 0)) - sw.log_lines_sum / sw.orders
        ELSE 0.0
    END AS item_count_to_store_usual_log_ratio,
    CASE
        WHEN o.total_amount > 0 AND i.items_total > 0 AND sw.typical_log_ratio IS NOT NULL
            THEN {finite_or_zero("ln(o.total_amount / i.items_total)")} - sw.typical_log_ratio
        ELSE 0.0
    END AS amount_to_items_log_ratio_vs_store
FROM in_range AS o
LEFT JOIN items AS i ON i.order_id = o.id
LEFT JOIN customer_history AS h ON h.id = o.id
JOIN baselines AS b ON b.id = o.id
LEFT JOIN store_window AS sw ON sw.day = CAST(o.created_at AS DATE)
LEFT JOIN quantity_ratios AS q ON q.order_id = o.id
ORDER BY o.created_at, o.id
"""


def compute_order_features(
    conn: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    baseline_days: int = DEFAULT_BASELINE_DAYS,
    shrinkage: int = DEFAULT_BASELINE_SHRINKAGE,
) -> pd.DataFrame:
    """Feature rows of the orders with ``start <= created_at < end``, ordered by (created_at, id).

    ``start``/``end`` are UTC (naive, or aware and converted). Columns and dtypes are
    ``ORDER_DTYPES`` (``ORDER_COLUMNS`` in order); numeric features are never NaN or inf. The
    baselines read the day summaries of the ``baseline_days`` days before each order's day, which
    must have been written (``day_summaries``); ``shrinkage`` is their k.
    """
    start, end = naive_utc_range(start, end)
    require_tables(conn, ORDER_SUMMARY_TABLES, "order features")
    parameters = {
        "start": start,
        "end": end,
        "day_start": start.replace(hour=0, minute=0, second=0, microsecond=0),
        "window_days": baseline_days,
        "shrinkage": shrinkage,
        "age_cap": float(ACCOUNT_AGE_CAP_DAYS),
    }
    frame = conn.execute(_ORDER_FEATURES_SQL, parameters).df()
    frame = frame.astype(ORDER_DTYPES)
    logger.info("Computed %d order feature rows for [%s, %s)", len(frame), start, end)
    return frame
