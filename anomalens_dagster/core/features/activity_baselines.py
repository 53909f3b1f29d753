"""As-of baselines of each activity: what is usual for its customer and its IP, from earlier data only.

Two sources, never the future: the summaries of the ``baseline_days`` UTC days before the action's
day (``day_summaries``), and the store rows of the action's own day (for the customer) or of the 24
hours (for the IP) up to and including it. Actions sharing a timestamp are ordered by id, as in the
window features; the IP's counts include the actions that share its timestamp.

Every feature has a defined neutral value for what real stores hold: anonymous actions (customer_id
NULL or negative), actions without IP or user agent, customers and IPs never seen before.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from anomalens_dagster.constants import (
    CUSTOMER_ACCESS_DAY_SUMMARIES,
    CUSTOMER_DAY_SUMMARIES,
    CUSTOMERS,
    FEATURES_SCHEMA,
    IP_DAY_SUMMARIES,
    ORDERS,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.features.common import (
    US,
    codes_with_nulls_apart,
    count_within,
    finite_or_zero,
    group_starts,
    to_numpy,
    unsort,
    window_key,
)

# --- Columns -------------------------------------------------------------------------------------

# Customer baselines, shared with the order features (same names, same meaning at the order's time).
CUSTOMER_BASELINE_COLUMNS: tuple[str, ...] = (
    # Days since the customer's account was created (store.customers.created_at), or since their
    # first event within the baseline window when earlier than that (a store without the customer
    # row), capped at ACCOUNT_AGE_CAP_DAYS. 0 for an anonymous action. Low for new accounts:
    # first-time buyers and sign-ups (benign, common) as well as freshly made fake accounts.
    "customer_account_age_days",
    # The customer's orders within the baseline window before this event (earlier days, and the
    # same day's orders placed strictly before it). 0 when anonymous or new. High for loyal and
    # business customers as much as for accounts being drained.
    "customer_orders_in_window",
    # The total_amount of those orders. Same caveats.
    "customer_spend_in_window",
    # How many hours (0-12, around the clock) the event lies from the customer's usual time of day
    # in the window's earlier days (circular mean of their events' times), times the concentration
    # of their habits (mean resultant length) and shrunk by n / (n + k) with n their earlier events:
    # near 0 for customers without history or without a habitual hour. Raised by travel, a shift
    # change, a sleepless night, and by someone else acting with the account from another time zone.
    "hour_distance_from_customer_usual",
)
ACTIVITY_CUSTOMER_COLUMNS: tuple[str, ...] = (
    # 1 when a customer with earlier actions (in the window or earlier today) acts from an IP none of
    # those used; 0 otherwise, and 0 for anonymous actions, actions without IP and a customer's very
    # first action (nothing to compare with). Raised by a new phone or network, travel, a mobile
    # carrier rotating addresses, and by someone else logging into the account.
    "ip_new_for_customer",
    # The same for the user agent (browser or app): raised by a browser update, a new device, and by
    # an automated client using the account. 0 when the user agent is missing.
    "user_agent_new_for_customer",
)
ACTIVITY_IP_COLUMNS: tuple[str, ...] = (
    # Distinct known customers acting from the IP in (t - 1 h, t] and (t - 24 h, t] (0 or 1 for an
    # action without IP: its own customer, if known). High for offices, schools, mobile carriers and
    # public Wi-Fi, and for one client cycling through accounts.
    "ip_distinct_customers_1h",
    "ip_distinct_customers_24h",
    # Distinct emails named by login attempts (details.attempted_email, else details.email) from the
    # IP in the same windows. A person mistyping their address gives 2; shared IPs give more;
    # credential stuffing gives many.
    "ip_distinct_emails_1h",
    "ip_distinct_emails_24h",
    # The IP's actions in (t - 10 min, t] and (t - 1 h, t], this one and ties included. High for
    # shared IPs, fast power shoppers, crawlers and scripted clients.
    "ip_actions_last_10min",
    "ip_actions_last_1h",
    # Coefficient of variation (std / mean) of the gaps between the IP's last IP_GAP_ACTIONS actions
    # up to this one within 24 h (gaps over an hour count as an hour). People act irregularly (about
    # 1 and above); a timer-driven client is regular (near 0), as are some accessibility tools and
    # auto-refreshing pages. 1.0, the value of random arrivals, with fewer than IP_GAP_MIN_GAPS gaps;
    # 0 when all of them are 0 (actions sharing one timestamp).
    "ip_gap_cv_last_20",
    # failed_login actions of the IP in (t - 24 h, t] over its login attempts (login or
    # failed_login) plus FAILED_LOGIN_PSEUDO_ATTEMPTS, so that one mistyped password reads 0.25,
    # not 1. 0 without attempts. Raised by forgotten passwords and shared IPs, and by password guessing.
    "ip_failed_login_share_24h",
    # Days from the IP's first day within the baseline window to this action's day (0: new to the
    # store today, at most baseline_days); actions without IP get baseline_days (nothing new to see).
    # Low for new customers, new mobile addresses and VPN exits as much as for attackers' fresh IPs.
    "ip_days_since_first_seen",
)
ACTIVITY_BASELINE_COLUMNS: tuple[str, ...] = CUSTOMER_BASELINE_COLUMNS + ACTIVITY_CUSTOMER_COLUMNS + ACTIVITY_IP_COLUMNS
ACTIVITY_BASELINE_FLOAT_COLUMNS = frozenset(
    {
        "customer_account_age_days",
        "customer_spend_in_window",
        "hour_distance_from_customer_usual",
        "ip_gap_cv_last_20",
        "ip_failed_login_share_24h",
    }
)

ACCOUNT_AGE_CAP_DAYS = 365
IP_GAP_ACTIONS = 20  # the CV reads the gaps between the last 20 actions: 19 gaps
IP_GAP_MIN_GAPS = 3
IP_GAP_CAP_SECONDS = 3600
FAILED_LOGIN_PSEUDO_ATTEMPTS = 3
IP_HISTORY_SECONDS = 24 * 3600

_ACTIVITIES = f"{STORE_SCHEMA}.{USER_ACTIVITIES}"
_HOUR_US = 3600 * US
_LAST_10MIN_US = 10 * 60 * US - 1
_LAST_HOUR_US = _HOUR_US - 1
_LAST_DAY_US = IP_HISTORY_SECONDS * US - 1
_GAP_CAP_CS = IP_GAP_CAP_SECONDS * 100  # gaps in integer centiseconds: sums of squares stay exact in int64


def hour_distance_sql(event_at: str, events: str, cos_sum: str, sin_sum: str) -> str:
    """SQL of ``hour_distance_from_customer_usual``: hours off the circular mean, times sqrt(C^2 + S^2) / (n + k).

    sqrt(C^2 + S^2) / n is the concentration of the habits (1: always the same time, 0: no habit) and
    n / (n + k) the shrinkage; their product simplifies to the expression used. $shrinkage is k.
    """
    angle = f"(2 * pi() * (hour({event_at}) + minute({event_at}) / 60.0 + second({event_at}) / 3600.0) / 24)"
    off = f"acos(greatest(-1.0, least(1.0, cos({angle} - atan2({sin_sum}, {cos_sum})))))"
    return (
        f"CASE WHEN coalesce({events}, 0) > 0 THEN {off} * 24 / (2 * pi()) "
        f"* sqrt({cos_sum} ^ 2 + {sin_sum} ^ 2) / ({events} + $shrinkage) ELSE 0.0 END"
    )


def account_age_sql(event_at: str, customer_id: str, first_known: str) -> str:
    """SQL of ``customer_account_age_days`` from the earliest known time of the customer ($age_cap caps it)."""
    return (
        f"CASE WHEN {customer_id} IS NULL OR {first_known} IS NULL THEN 0.0 "
        f"ELSE least($age_cap, greatest(0.0, epoch({event_at} - {first_known}) / 86400.0)) END"
    )


# Customer baselines of the activities in [$start, $end); $day_start is the UTC midnight of $start,
# $window_days the baseline window, $shrinkage its k, $age_cap the account-age cap.
_CUSTOMER_SQL = f"""
WITH day_rows AS (
    SELECT
        id,
        "timestamp" AS event_at,
        CAST("timestamp" AS DATE) AS day,
        CASE WHEN customer_id >= 0 THEN customer_id END AS customer_id,
        ip_address,
        user_agent
    FROM {_ACTIVITIES}
    WHERE "timestamp" >= $day_start AND "timestamp" < $end
),
ranked AS (
    SELECT
        *,
        event_at >= $start AS in_range,
        row_number() OVER (PARTITION BY customer_id, day ORDER BY event_at, id) - 1 AS earlier_actions_today,
        min(event_at) OVER (PARTITION BY customer_id, day) AS first_today,
        row_number() OVER (PARTITION BY customer_id, ip_address, day ORDER BY event_at, id) = 1 AS first_with_ip,
        row_number() OVER (PARTITION BY customer_id, user_agent, day ORDER BY event_at, id) = 1 AS first_with_agent
    FROM day_rows
),
rows AS (SELECT * FROM ranked WHERE in_range),
customer_days AS (SELECT DISTINCT customer_id, day FROM rows WHERE customer_id IS NOT NULL),
history AS (
    SELECT
        cd.customer_id,
        cd.day,
        sum(s.actions) AS actions,
        sum(s.orders) AS orders,
        sum(s.spend) AS spend,
        sum(s.events) AS events,
        sum(s.hour_cos_sum) AS hour_cos_sum,
        sum(s.hour_sin_sum) AS hour_sin_sum,
        min(s.first_seen_at) AS first_seen_at
    FROM customer_days AS cd
    JOIN {FEATURES_SCHEMA}.{CUSTOMER_DAY_SUMMARIES} AS s
        ON s.customer_id = cd.customer_id AND s.day >= cd.day - $window_days AND s.day < cd.day
    GROUP BY cd.customer_id, cd.day
),
known_ips AS (
    SELECT DISTINCT r.customer_id, r.day, r.ip_address
    FROM (SELECT DISTINCT customer_id, day, ip_address FROM rows WHERE first_with_ip) AS r
    JOIN {FEATURES_SCHEMA}.{CUSTOMER_ACCESS_DAY_SUMMARIES} AS a
        ON a.customer_id = r.customer_id AND a.ip_address = r.ip_address
        AND a.day >= r.day - $window_days AND a.day < r.day
),
known_agents AS (
    SELECT DISTINCT r.customer_id, r.day, r.user_agent
    FROM (SELECT DISTINCT customer_id, day, user_agent FROM rows WHERE first_with_agent) AS r
    JOIN {FEATURES_SCHEMA}.{CUSTOMER_ACCESS_DAY_SUMMARIES} AS a
        ON a.customer_id = r.customer_id AND a.user_agent = r.user_agent
        AND a.day >= r.day - $window_days AND a.day < r.day
),
-- The customers' orders of the day so far, one row per distinct order time (ties counted together).
orders_today AS (
    SELECT
        customer_id,
        day,
        placed_at,
        sum(count(*)) OVER so_far AS orders_so_far,
        sum(sum(amount)) OVER so_far AS spend_so_far
    FROM (
        SELECT customer_id, CAST(created_at AS DATE) AS day, created_at AS placed_at,
               {finite_or_zero("total_amount")} AS amount
        FROM {STORE_SCHEMA}.{ORDERS}
        WHERE created_at >= $day_start AND created_at < $end
          AND customer_id IN (SELECT customer_id FROM customer_days)
    )
    GROUP BY customer_id, day, placed_at
    WINDOW so_far AS (PARTITION BY customer_id, day ORDER BY placed_at)
),
ip_days AS (
    SELECT r.ip_address, r.day, r.day - min(s.day) AS days_known
    FROM (SELECT DISTINCT ip_address, day FROM rows WHERE ip_address IS NOT NULL) AS r
    JOIN {FEATURES_SCHEMA}.{IP_DAY_SUMMARIES} AS s
        ON s.ip_address = r.ip_address AND s.day >= r.day - $window_days AND s.day < r.day
    GROUP BY r.ip_address, r.day
),
featured AS (
    SELECT
        r.*,
        coalesce(h.actions, 0) + r.earlier_actions_today AS earlier_actions,
        h.orders AS history_orders,
        h.spend AS history_spend,
        h.events,
        h.hour_cos_sum,
        h.hour_sin_sum,
        least(c.created_at, h.first_seen_at, r.first_today) AS first_known,
        ki.customer_id IS NOT NULL AS ip_known,
        ka.customer_id IS NOT NULL AS agent_known,
        d.days_known
    FROM rows AS r
    LEFT JOIN history AS h ON h.customer_id = r.customer_id AND h.day = r.day
    LEFT JOIN {STORE_SCHEMA}.{CUSTOMERS} AS c ON c.id = r.customer_id
    LEFT JOIN known_ips AS ki ON ki.customer_id = r.customer_id AND ki.day = r.day AND ki.ip_address = r.ip_address
    LEFT JOIN known_agents AS ka
        ON ka.customer_id = r.customer_id AND ka.day = r.day AND ka.user_agent = r.user_agent
    LEFT JOIN ip_days AS d ON d.ip_address = r.ip_address AND d.day = r.day
)
SELECT
    f.id,
    {account_age_sql("f.event_at", "f.customer_id", "f.first_known")} AS customer_account_age_days,
    CASE WHEN f.customer_id IS NULL THEN 0
        ELSE coalesce(f.history_orders, 0) + coalesce(o.orders_so_far, 0) END AS customer_orders_in_window,
    CASE WHEN f.customer_id IS NULL THEN 0.0
        ELSE coalesce(f.history_spend, 0.0) + coalesce(o.spend_so_far, 0.0) END AS customer_spend_in_window,
    {hour_distance_sql("f.event_at", "f.events", "f.hour_cos_sum", "f.hour_sin_sum")}
        AS hour_distance_from_customer_usual,
    CASE WHEN f.customer_id IS NOT NULL AND f.ip_address IS NOT NULL AND f.earlier_actions > 0
              AND f.first_with_ip AND NOT f.ip_known THEN 1 ELSE 0 END AS ip_new_for_customer,
    CASE WHEN f.customer_id IS NOT NULL AND f.user_agent IS NOT NULL AND f.earlier_actions > 0
              AND f.first_with_agent AND NOT f.agent_known THEN 1 ELSE 0 END AS user_agent_new_for_customer,
    CASE WHEN f.ip_address IS NULL THEN $window_days ELSE coalesce(f.days_known, 0) END AS ip_days_since_first_seen
FROM featured AS f
ASOF LEFT JOIN orders_today AS o
    ON o.customer_id = f.customer_id AND o.day = f.day AND f.event_at > o.placed_at
ORDER BY f.event_at, f.id
"""

# The IP's actions of the 24 hours before [$start, $end) and in it, ordered by (timestamp, id), with
# the distinct counts DuckDB's windows answer (numpy answers the others, see ip_history_features).
_IP_HISTORY_SQL = f"""
WITH context AS (
    SELECT
        id,
        "timestamp" AS event_at,
        ip_address,
        CASE WHEN customer_id >= 0 THEN customer_id END AS customer_id,
        CASE WHEN action_type IN ('login', 'failed_login')
            THEN coalesce(json_extract_string(details, '$.attempted_email'), json_extract_string(details, '$.email'))
        END AS email,
        coalesce(action_type = 'failed_login', false) AS is_failed_login,
        coalesce(action_type IN ('login', 'failed_login'), false) AS is_login_attempt
    FROM {_ACTIVITIES}
    WHERE "timestamp" >= $start::TIMESTAMP - INTERVAL {IP_HISTORY_SECONDS} SECOND AND "timestamp" < $end
),
ips AS (
    SELECT ip_address, row_number() OVER () AS ip_code
    FROM (SELECT DISTINCT ip_address FROM context WHERE ip_address IS NOT NULL)
),
windowed AS (
    SELECT
        c.*,
        i.ip_code,
        count(DISTINCT c.customer_id) OVER last_hour AS customers_1h,
        count(DISTINCT c.customer_id) OVER last_day AS customers_24h,
        count(DISTINCT c.email) OVER last_hour AS emails_1h,
        count(DISTINCT c.email) OVER last_day AS emails_24h
    FROM context AS c
    LEFT JOIN ips AS i ON i.ip_address = c.ip_address
    WINDOW
        last_hour AS (PARTITION BY c.ip_address ORDER BY c.event_at
            RANGE BETWEEN INTERVAL '{_LAST_HOUR_US} microseconds' PRECEDING AND CURRENT ROW),
        last_day AS (PARTITION BY c.ip_address ORDER BY c.event_at
            RANGE BETWEEN INTERVAL '{_LAST_DAY_US} microseconds' PRECEDING AND CURRENT ROW)
)
SELECT
    id,
    epoch_us(event_at) AS t_us,
    event_at >= $start AS in_range,
    ip_code,
    is_failed_login,
    is_login_attempt,
    CASE WHEN ip_code IS NULL THEN (customer_id IS NOT NULL)::BIGINT ELSE customers_1h END AS ip_distinct_customers_1h,
    CASE WHEN ip_code IS NULL THEN (customer_id IS NOT NULL)::BIGINT ELSE customers_24h END AS ip_distinct_customers_24h,
    CASE WHEN ip_code IS NULL THEN (email IS NOT NULL)::BIGINT ELSE emails_1h END AS ip_distinct_emails_1h,
    CASE WHEN ip_code IS NULL THEN (email IS NOT NULL)::BIGINT ELSE emails_24h END AS ip_distinct_emails_24h
FROM windowed
ORDER BY t_us, id
"""


def activity_baseline_features(
    conn: duckdb.DuckDBPyConnection, start, end, baseline_days: int, shrinkage: int
) -> pa.Table:
    """The baseline columns of the activities in [start, end) (naive UTC), ordered by (timestamp, id), with ``id``."""
    day_start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    customer = conn.execute(
        _CUSTOMER_SQL,
        {
            "start": start,
            "end": end,
            "day_start": day_start,
            "window_days": baseline_days,
            "shrinkage": shrinkage,
            "age_cap": float(ACCOUNT_AGE_CAP_DAYS),
        },
    ).fetch_arrow_table()
    ip = ip_history_features(conn.execute(_IP_HISTORY_SQL, {"start": start, "end": end}).fetch_arrow_table())
    if not np.array_equal(to_numpy(customer, "id"), ip["id"]):
        raise RuntimeError(f"activity ids of [{start}, {end}) changed between two reads of one connection")
    columns = {"id": ip["id"]}
    for name in ACTIVITY_BASELINE_COLUMNS:
        columns[name] = ip[name] if name in ip else customer[name]
    return pa.table(columns)


def ip_history_features(context: pa.Table) -> dict[str, np.ndarray]:
    """The IP columns numpy computes from the 24-h context, for its in-range rows, in (timestamp, id) order."""
    t_us = to_numpy(context, "t_us")
    n = len(t_us)
    ip_code = codes_with_nulls_apart(context["ip_code"])
    position = np.arange(n, dtype=np.int64)
    by_ip = np.argsort(ip_code * n + position)
    t = t_us[by_ip]
    starts = group_starts(ip_code[by_ip])
    key = window_key(t, starts, _LAST_DAY_US)
    failed_key = key[to_numpy(context, "is_failed_login")[by_ip]]
    attempt_key = key[to_numpy(context, "is_login_attempt")[by_ip]]
    failed = count_within(key, failed_key, _LAST_DAY_US, 0)
    attempts = count_within(key, attempt_key, _LAST_DAY_US, 0)
    by_ip_values = {
        "ip_actions_last_10min": count_within(key, key, _LAST_10MIN_US, 0),
        "ip_actions_last_1h": count_within(key, key, _LAST_HOUR_US, 0),
        "ip_failed_login_share_24h": failed / (attempts + FAILED_LOGIN_PSEUDO_ATTEMPTS),
        "ip_gap_cv_last_20": _gap_cv(t, starts, key),
    }
    in_range = to_numpy(context, "in_range")
    result = {name: unsort(values, by_ip)[in_range] for name, values in by_ip_values.items()}
    for name in (
        "ip_distinct_customers_1h",
        "ip_distinct_customers_24h",
        "ip_distinct_emails_1h",
        "ip_distinct_emails_24h",
    ):
        result[name] = to_numpy(context, name)[in_range]
    result["id"] = to_numpy(context, "id")[in_range]
    return result


def _gap_cv(t_us: np.ndarray, starts: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Coefficient of variation of each row's last IP_GAP_ACTIONS - 1 gaps within 24 h in its group.

    Rows come sorted by (group, time, id) with their ``window_key`` of reach 24 h; only the gaps
    between the rows in (t - 24 h, t] count, so the value never depends on how far back the read went.
    """
    n = len(t_us)
    gaps = np.zeros(n, dtype=np.int64)
    if n:
        gaps[1:] = np.minimum((t_us[1:] - t_us[:-1]) // 10_000, _GAP_CAP_CS)
        gaps[starts] = 0
    first_in_day = np.searchsorted(key, key - _LAST_DAY_US, side="left")
    gaps_so_far = np.arange(n) - first_in_day  # gaps between the rows of the last 24 h up to this one
    k = np.minimum(gaps_so_far, IP_GAP_ACTIONS - 1)
    sums = np.concatenate(([0], np.cumsum(gaps)))
    squares = np.concatenate(([0], np.cumsum(gaps * gaps)))
    upto = np.arange(1, n + 1)
    total = sums[upto] - sums[upto - k]
    total_sq = squares[upto] - squares[upto - k]
    # Exact integers up to here: k * sum(g^2) - (sum g)^2 is k^2 times the variance.
    spread = (k * total_sq - total * total).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.sqrt(np.maximum(spread, 0.0)) / total
    cv = np.where(total > 0, cv, 0.0)
    return np.where(k >= IP_GAP_MIN_GAPS, cv, 1.0)
