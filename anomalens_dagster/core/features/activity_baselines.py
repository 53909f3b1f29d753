"""As-of baselines of each activity: what is usual for its customer and its IP, from earlier data only.

Two sources, never the future: the summaries of the ``baseline_days`` UTC days before the action's
day (``day_summaries``), and the store rows of the action's own day (for the customer) or of the 24
hours (for the IP) up to and including it. Actions sharing a timestamp are ordered by id, as in the
window features; the IP's counts include the actions that share its timestamp.

Every feature has a defined neutral value for what real stores hold: anonymous actions (customer_id
NULL or negative), actions without IP or user agent, customers and IPs never seen before.
"""

from __future__ import annotations

from datetime import datetime, timedelta

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


# The activities of the range's first day up to its end, ordered by (timestamp, id): the day's
# earlier actions of each customer, and its first action of the day. Parameters: $day_start, $end.
_DAY_ROWS_SQL = f"""
SELECT
    id,
    epoch_us("timestamp") AS t_us,
    datediff('day', $day_start::TIMESTAMP, "timestamp") AS day_index,
    CASE WHEN customer_id >= 0 THEN customer_id END AS customer_id,
    ip_address,
    user_agent
FROM {_ACTIVITIES}
WHERE "timestamp" >= $day_start AND "timestamp" < $end
ORDER BY "timestamp", id
"""

# The customers' orders of the same days. Parameters: $day_start, $end.
_DAY_ORDERS_SQL = f"""
SELECT
    customer_id,
    epoch_us(created_at) AS t_us,
    datediff('day', $day_start::TIMESTAMP, created_at) AS day_index,
    {finite_or_zero("total_amount")} AS amount
FROM {STORE_SCHEMA}.{ORDERS}
WHERE created_at >= $day_start AND created_at < $end AND customer_id >= 0
"""

# The in-range rows (registered as _BASELINE_ROWS_VIEW, with what numpy found in the day so far)
# joined with the summaries of the window's earlier days. Parameters: $window_days, $shrinkage, $age_cap.
_BASELINE_ROWS_VIEW = "_anomalens_activity_baseline_rows"
_CUSTOMER_SQL = f"""
WITH rows AS (
    SELECT *, make_timestamp(t_us) AS event_at, CAST(make_timestamp(t_us) AS DATE) AS day
    FROM {_BASELINE_ROWS_VIEW}
),
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
        least(c.created_at, h.first_seen_at, make_timestamp(r.first_today_us)) AS first_known,
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
    id,
    {account_age_sql("event_at", "customer_id", "first_known")} AS customer_account_age_days,
    CASE WHEN customer_id IS NULL THEN 0
        ELSE coalesce(history_orders, 0) + orders_today END AS customer_orders_in_window,
    CASE WHEN customer_id IS NULL THEN 0.0
        ELSE coalesce(history_spend, 0.0) + spend_today END AS customer_spend_in_window,
    {hour_distance_sql("event_at", "events", "hour_cos_sum", "hour_sin_sum")} AS hour_distance_from_customer_usual,
    CASE WHEN customer_id IS NOT NULL AND ip_address IS NOT NULL AND earlier_actions > 0
              AND first_with_ip AND NOT ip_known THEN 1 ELSE 0 END AS ip_new_for_customer,
    CASE WHEN customer_id IS NOT NULL AND user_agent IS NOT NULL AND earlier_actions > 0
              AND first_with_agent AND NOT agent_known THEN 1 ELSE 0 END AS user_agent_new_for_customer,
    CASE WHEN ip_address IS NULL THEN $window_days ELSE coalesce(days_known, 0) END AS ip_days_since_first_seen
FROM featured
ORDER BY t_us, id
"""

# The activities of the 24 hours before [$start, $end) and in it, ordered by (timestamp, id), with
# what the IP windows count (ip_history_features). Parameters: $start, $end.
_IP_HISTORY_SQL = f"""
SELECT
    id,
    epoch_us("timestamp") AS t_us,
    "timestamp" >= $start AS in_range,
    ip_address,
    CASE WHEN customer_id >= 0 THEN customer_id END AS customer_id,
    CASE WHEN action_type IN ('login', 'failed_login')
        THEN coalesce(json_extract_string(details, '$.attempted_email'), json_extract_string(details, '$.email'))
    END AS email,
    coalesce(action_type = 'failed_login', false) AS is_failed_login,
    coalesce(action_type IN ('login', 'failed_login'), false) AS is_login_attempt
FROM {_ACTIVITIES}
WHERE "timestamp" >= $start::TIMESTAMP - INTERVAL {IP_HISTORY_SECONDS} SECOND AND "timestamp" < $end
ORDER BY "timestamp", id
"""


def activity_baseline_features(
    conn: duckdb.DuckDBPyConnection, start: datetime, end: datetime, baseline_days: int, shrinkage: int
) -> pa.Table:
    """The baseline columns of the activities in [start, end) (naive UTC), ordered by (timestamp, id), with ``id``."""
    day_start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    day_rows = conn.execute(_DAY_ROWS_SQL, {"day_start": day_start, "end": end}).fetch_arrow_table()
    day_orders = conn.execute(_DAY_ORDERS_SQL, {"day_start": day_start, "end": end}).fetch_arrow_table()
    so_far = _customer_day_so_far(day_rows, day_orders)
    in_range = to_numpy(day_rows, "t_us") >= (start - _EPOCH) // timedelta(microseconds=1)
    rows = pa.table(
        {
            **{name: day_rows[name] for name in ("id", "t_us", "customer_id", "ip_address", "user_agent")},
            **so_far,
        }
    ).filter(pa.array(in_range))
    conn.register(_BASELINE_ROWS_VIEW, rows)
    try:
        customer = conn.execute(
            _CUSTOMER_SQL,
            {"window_days": baseline_days, "shrinkage": shrinkage, "age_cap": float(ACCOUNT_AGE_CAP_DAYS)},
        ).fetch_arrow_table()
    finally:
        conn.unregister(_BASELINE_ROWS_VIEW)
    ip = ip_history_features(conn.execute(_IP_HISTORY_SQL, {"start": start, "end": end}).fetch_arrow_table())
    if not np.array_equal(to_numpy(customer, "id"), ip["id"]):
        raise RuntimeError(f"activity ids of [{start}, {end}) changed between two reads of one connection")
    columns = {"id": ip["id"]}
    for name in ACTIVITY_BASELINE_COLUMNS:
        columns[name] = ip[name] if name in ip else customer[name]
    return pa.table(columns)


_EPOCH = datetime(1970, 1, 1)
_DAY_US = 86_400 * US


def _customer_day_so_far(day_rows: pa.Table, day_orders: pa.Table) -> dict[str, np.ndarray]:
    """Per activity (rows in (timestamp, id) order): what its customer did earlier the same day.

    earlier_actions_today, first_today_us (their first action of the day), first_with_ip /
    first_with_agent (no earlier action of theirs that day with this IP / user agent), orders_today
    and spend_today (their orders placed strictly before it that day). Anonymous rows get zeros.
    """
    n = day_rows.num_rows
    customer = _codes_or_minus_one(day_rows["customer_id"])
    day = to_numpy(day_rows, "day_index").astype(np.int64)
    t_us = to_numpy(day_rows, "t_us")
    ip = _codes_or_minus_one(day_rows["ip_address"])
    agent = _codes_or_minus_one(day_rows["user_agent"])
    known = customer >= 0
    position = np.arange(n)

    # (customer, day) groups in time order: a stable sort keeps the (timestamp, id) order inside.
    group = customer * (day.max(initial=0) + 1) + day
    by_group = np.argsort(group, kind="stable")
    starts = group_starts(group[by_group])
    first_index = np.maximum.accumulate(np.where(starts, position, 0))
    earlier = unsort(position - first_index, by_group)
    first_today = unsort(t_us[by_group][first_index], by_group)

    def first_with(value: np.ndarray) -> np.ndarray:
        keyed = group * (value.max(initial=0) + 2) + value + 1
        order = np.argsort(keyed, kind="stable")
        return unsort(group_starts(keyed[order]), order)

    orders_today, spend_today = _orders_before(day_rows, day_orders, customer, day, t_us)
    return {
        "earlier_actions_today": np.where(known, earlier, 0),
        "first_today_us": np.where(known, first_today, t_us),
        "first_with_ip": known & first_with(ip),
        "first_with_agent": known & first_with(agent),
        "orders_today": np.where(known, orders_today, 0),
        "spend_today": np.where(known, spend_today, 0.0),
    }


def _orders_before(
    day_rows: pa.Table, day_orders: pa.Table, customer: np.ndarray, day: np.ndarray, t_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each activity, its customer's orders of the same day placed strictly before it: count and amount."""
    n_rows = day_rows.num_rows
    ids = day_rows["customer_id"].fill_null(-1).to_numpy()
    order_customer = day_orders["customer_id"].to_numpy()
    # Codes of the customers shared by both tables: orders of customers without activity never match.
    vocabulary, act_code = np.unique(ids, return_inverse=True)
    order_code = np.searchsorted(vocabulary, order_customer)
    order_code = (
        np.where(
            (order_code < len(vocabulary))
            & (vocabulary[np.minimum(order_code, len(vocabulary) - 1)] == order_customer),
            order_code,
            -1,
        )
        if len(vocabulary)
        else np.full(len(order_customer), -1)
    )
    days = int(max(day.max(initial=0), to_numpy(day_orders, "day_index").max(initial=0))) + 1
    order_day = to_numpy(day_orders, "day_index").astype(np.int64)
    keep = order_code >= 0
    # Dense codes of the (customer, day) pairs keep the keys far below the int64 limit.
    _, pair_code = np.unique(
        np.concatenate((act_code * days + day, order_code[keep] * days + order_day[keep])), return_inverse=True
    )
    act_pair, order_pair = pair_code[:n_rows], pair_code[n_rows:]
    order_key = order_pair * _DAY_US + to_numpy(day_orders, "t_us")[keep] % _DAY_US
    amounts = to_numpy(day_orders, "amount")[keep]
    by_key = np.argsort(order_key, kind="stable")
    order_key, amounts = order_key[by_key], amounts[by_key]
    cumulative = np.concatenate(([0.0], np.cumsum(amounts)))
    group_key = act_pair * _DAY_US
    before = np.searchsorted(order_key, group_key + t_us % _DAY_US, side="left")
    day_first = np.searchsorted(order_key, group_key, side="left")
    return before - day_first, cumulative[before] - cumulative[day_first]


def _codes_or_minus_one(column: pa.ChunkedArray) -> np.ndarray:
    """Dense int64 codes of a column's values (any type), -1 for NULL."""
    encoded = (
        column.combine_chunks().dictionary_encode()
        if column.num_chunks
        else pa.array([], column.type).dictionary_encode()
    )
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def ip_history_features(context: pa.Table) -> dict[str, np.ndarray]:
    """The IP columns of the 24-h context's in-range rows, in (timestamp, id) order."""
    t_us = to_numpy(context, "t_us")
    n = len(t_us)
    ip_code = _codes_or_minus_one(context["ip_address"])
    # Each action without IP is a group of its own, numbered after the IPs.
    missing = ip_code < 0
    ip_code[missing] = ip_code.max(initial=-1) + 1 + np.arange(missing.sum())
    position = np.arange(n, dtype=np.int64)
    by_ip = np.argsort(ip_code * n + position)
    t = t_us[by_ip]
    group = ip_code[by_ip]
    starts = group_starts(group)
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
    for values, name in ((context["customer_id"], "customers"), (context["email"], "emails")):
        code = _codes_or_minus_one(values)[by_ip]
        for window_us, suffix in ((_HOUR_US, "1h"), (IP_HISTORY_SECONDS * US, "24h")):
            by_ip_values[f"ip_distinct_{name}_{suffix}"] = _distinct_within(key, group, code, window_us)
    in_range = to_numpy(context, "in_range")
    result = {name: unsort(values, by_ip)[in_range] for name, values in by_ip_values.items()}
    result["id"] = to_numpy(context, "id")[in_range]
    return result


def _distinct_within(key: np.ndarray, group: np.ndarray, value: np.ndarray, window_us: int) -> np.ndarray:
    """Distinct non-negative ``value`` codes of each row's group in (t - window, t], ties included.

    Rows come sorted by (group, time, id) with their ``window_key`` (reach at least ``window_us``).
    The distinct values in a window are its valued rows less its repeats, a repeat being a row whose
    value's previous occurrence lies in the window too. A row j with previous occurrence p_j is a
    repeat in the window ending at t exactly when t_j <= t < p_j + window, so the repeats are the rows
    with t_j <= t less those with max(t_j, p_j + window) <= t: two binary searches per row.
    """
    valued = value >= 0
    valued_key = key[valued]
    in_window = count_within(key, valued_key, window_us - 1, 0)
    # Previous occurrence of the same (group, value), in key units (exact within a group's reach).
    order = np.flatnonzero(valued)[np.lexsort((np.flatnonzero(valued), value[valued], group[valued]))]
    same = np.zeros(len(order), dtype=bool)
    same[1:] = (group[order][1:] == group[order][:-1]) & (value[order][1:] == value[order][:-1])
    ends = key[order].copy()
    previous = np.empty(len(order), dtype=np.int64)
    previous[1:] = key[order][:-1]
    ends[same] = np.maximum(key[order][same], previous[same] + window_us)
    repeats = np.searchsorted(valued_key, key, side="right") - np.searchsorted(np.sort(ends), key, side="right")
    return in_window - repeats


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
