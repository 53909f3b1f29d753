"""What an anomaly record says: the rule that describes a flagged row and its sentence.

Description rules (the first that applies wins; ``details.rule`` names it)
    The description comes from the entity's facts, so every detector that flags an entity tells
    the same story when one of the known patterns is present; otherwise it names the strongest
    feature of that detector's explanation (for the ensemble: of its strongest component, the
    detector with the highest score / threshold).

    Activities:
    1. ``failed_login_run`` -- ``failed_logins_within_15min_ip >= FAILED_LOGIN_RUN_MIN_ATTEMPTS``:
       "7 failed logins from 198.51.100.4 within 15 min of this one, for jo***@example.com"; any
       other action: "login from 198.51.100.4 within 15 min of 7 failed logins from the same IP".
    2. ``identical_actions`` -- ``identical_actions_within_60s_ip >= BURST_MIN_IDENTICAL_ACTIONS``:
       '12 add_to_cart actions for product #17 (Blue Mug) from 203.0.113.7 within a minute of this
       one; nearest other action 0.4 s away' (target from details: product, search query -- '14
       searches for "kettle"' -- or url; "identical" actions without one).
    3. ``purchase_total_mismatch`` -- a purchase whose ``purchase_amount_to_items_log_ratio`` lies
       beyond ln(``ORDER_TOTAL_HIGH_RATIO``) either way: "purchase of 0.25 for items costing 84.50
       (0.003x their price) from 198.51.100.4 at 20:00".
    4. ``unusual_activity`` -- "view_page at 03:00 from 198.51.100.4 unlike the training data
       (session of 1 action); strongest signal: session_action_count = 1"; a purchase names its
       amount ("purchase of 2,065.24 at ..."). Durations read as "2.3 s", "13 min", "22.4 h".

    Orders:
    1. ``order_without_items`` -- ``items_total <= 0``: "Order total 52.00 but the order has no
       items" / "Order total 52.00 for 3 items that cost nothing".
    2. ``total_above_items`` -- ``amount_to_items_ratio >= ORDER_TOTAL_HIGH_RATIO``:
       "Order total 4,512.00 is 38x what its 3 items cost (118.70)".
    3. ``total_below_items`` -- ``amount_to_items_ratio <= ORDER_TOTAL_LOW_RATIO``:
       "Order total 0.40 for 3 items costing 112.30".
    4. ``total_vs_customer_median`` -- ``amount_to_customer_median_ratio`` at least
       ``CUSTOMER_MEDIAN_RATIO`` or at most its inverse: "Order total 900.00 is 12x customer 42's
       median order (75.00)" / "Order total 5.00 against customer 42's median order of 75.00".
    5. ``unusual_order`` -- "Order of 3 items totalling 45.00 at 03:00 unlike the training data;
       strongest signal: hour_of_day = 3".

    Emails are masked (:func:`mask_email`) in descriptions, details and session histories.

Sentences are formatted per flagged row (a few percent of the rows); selecting, joining and
classifying the rows is vectorised.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# --- Description rules ---------------------------------------------------------------------------

# Normal traffic has at most one mistyped password before a login; three in 15 minutes is a run.
FAILED_LOGIN_RUN_MIN_ATTEMPTS = 3
# Normal traffic never repeats an action on one target within a minute from one IP.
BURST_MIN_IDENTICAL_ACTIONS = 3
# A normal total equals its items' cost (shipping and discounts move it by far less than half).
ORDER_TOTAL_HIGH_RATIO = 1.5
ORDER_TOTAL_LOW_RATIO = 1 / ORDER_TOTAL_HIGH_RATIO
CUSTOMER_MEDIAN_RATIO = 3.0

RULE_FAILED_LOGIN_RUN = "failed_login_run"
RULE_IDENTICAL_ACTIONS = "identical_actions"
RULE_PURCHASE_TOTAL_MISMATCH = "purchase_total_mismatch"
RULE_UNUSUAL_ACTIVITY = "unusual_activity"
RULE_ORDER_WITHOUT_ITEMS = "order_without_items"
RULE_TOTAL_ABOVE_ITEMS = "total_above_items"
RULE_TOTAL_BELOW_ITEMS = "total_below_items"
RULE_TOTAL_VS_CUSTOMER_MEDIAN = "total_vs_customer_median"
RULE_UNUSUAL_ORDER = "unusual_order"

# An email's local part, from its first character: the first min(2, length - 1) characters are kept
# (the greedy first group backs off so that the second keeps at least one), the rest is masked.
EMAIL_PATTERN = re.compile(r"(?<![\w.%+\-])([\w.%+\-]{0,2})[\w.%+\-]+@(?=[\w\-]+(?:\.[\w\-]+)+)")
# What EMAIL_PATTERN's matches are replaced with: the kept characters and the mask.
EMAIL_MASK = r"\1***@"


def mask_email(email: str) -> str:
    """``john.doe@example.com`` -> ``jo***@example.com``: the local part keeps min(2, length - 1)
    characters. Text without ``@`` is masked the same way as a whole (``admin`` -> ``ad***``)."""
    local, at, domain = email.rpartition("@")
    if not at:
        local, domain = email, ""
    kept = local[: max(0, min(2, len(local) - 1))]
    return f"{kept}***{at}{domain}"


def mask_emails_in_text(text: str) -> str:
    """Every email address in ``text`` masked like :func:`mask_email` (already masked ones stay)."""
    return EMAIL_PATTERN.sub(EMAIL_MASK, text)


# --- Activity descriptions -----------------------------------------------------------------------


def activity_rules(facts: pd.DataFrame) -> np.ndarray:
    failed = facts["failed_logins_within_15min_ip"].to_numpy(np.float64) >= FAILED_LOGIN_RUN_MIN_ATTEMPTS
    burst = facts["identical_actions_within_60s_ip"].to_numpy(np.float64) >= BURST_MIN_IDENTICAL_ACTIONS
    mismatch = np.abs(facts["purchase_amount_to_items_log_ratio"].to_numpy(np.float64)) >= np.log(
        ORDER_TOTAL_HIGH_RATIO
    )
    return np.select(
        [failed, burst, mismatch],
        [RULE_FAILED_LOGIN_RUN, RULE_IDENTICAL_ACTIONS, RULE_PURCHASE_TOTAL_MISMATCH],
        RULE_UNUSUAL_ACTIVITY,
    )


def activity_sentence(
    rule: str, fact: Mapping[str, Any], at: pd.Timestamp, top: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    action = str(fact["action_type"])
    ip = text_or_none(fact["ip_address"])
    source = ip or "an unknown IP"
    details = parse_details(fact["details"])
    used: dict[str, Any] = {
        "action_type": action,
        "timestamp": at.isoformat(),
        "ip_address": ip,
        "session_id": text_or_none(fact["session_id"]),
        "customer_id": customer_or_none(fact["customer_id"]),
    }
    if rule == RULE_FAILED_LOGIN_RUN:
        attempts = int(fact["failed_logins_within_15min_ip"])
        used["failed_logins_within_15min_ip"] = attempts
        if action == "failed_login":
            email = text_or_none(details.get("attempted_email"))
            masked = mask_email(email) if email else None
            used["attempted_email"] = masked
            target = f", for {masked}" if masked else ""
            return f"{attempts} failed logins from {source} within 15 min of this one{target}", used
        return f"{action} from {source} within 15 min of {attempts} failed logins from the same IP", used
    if rule == RULE_IDENTICAL_ACTIONS:
        count = int(fact["identical_actions_within_60s_ip"])
        nearest = float(fact["seconds_to_nearest_activity_ip"])
        target, target_facts = _action_target(details)
        used |= {"identical_actions_within_60s_ip": count, "seconds_to_nearest_activity_ip": nearest, **target_facts}
        if action == "search" and "query" in target_facts:
            what = f'searches for "{target_facts["query"]}"'
        elif target:
            what = f"{action} actions for {target}"
        else:
            what = f"identical {action} actions"
        return (
            f"{count} {what} from {source} within a minute of this one; nearest other action {duration_text(nearest)} away",
            used,
        )
    if rule == RULE_PURCHASE_TOTAL_MISMATCH:
        log_ratio = float(fact["purchase_amount_to_items_log_ratio"])
        charged = float(details.get("order_total") or 0.0)
        items_cost = charged / np.exp(log_ratio)
        used |= {"order_total": charged, "items_total": items_cost, "purchase_amount_to_items_log_ratio": log_ratio}
        return (
            f"purchase of {money(charged)} for items costing {money(items_cost)} "
            f"({np.exp(log_ratio):.3g}x their price) from {source} at {at:%H:%M}",
            used,
        )
    actions = int(fact["session_action_count"])
    duration = float(fact["session_duration_seconds"])
    used |= {"session_action_count": actions, "session_duration_seconds": duration}
    what = action
    order_total = details.get("order_total")
    if action == "purchase" and isinstance(order_total, int | float) and not isinstance(order_total, bool):
        used["order_total"] = order_total
        what = f"purchase of {money(order_total)}"
    return (
        f"{what} at {at:%H:%M} from {source} unlike the training data "
        f"(session of {_session(actions, duration)}){_strongest(top)}",
        used,
    )


def _action_target(details: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """What an action was done to, in words, and the facts behind it."""
    product_id = details.get("product_id")
    if product_id is not None:
        name = text_or_none(details.get("product_name"))
        return f"product #{product_id}" + (f" ({name})" if name else ""), {"product_id": product_id}
    query = text_or_none(details.get("query"))
    if query:
        return f'the search "{query}"', {"query": query}
    url = text_or_none(details.get("url"))
    if url:
        return url, {"url": url}
    return None, {}


# --- Order descriptions --------------------------------------------------------------------------


def order_rules(facts: pd.DataFrame) -> np.ndarray:
    items_total = facts["items_total"].to_numpy(np.float64)
    ratio = facts["amount_to_items_ratio"].to_numpy(np.float64)
    customer = facts["amount_to_customer_median_ratio"].to_numpy(np.float64)
    return np.select(
        [
            ~(items_total > 0),
            ratio >= ORDER_TOTAL_HIGH_RATIO,
            ratio <= ORDER_TOTAL_LOW_RATIO,
            (customer >= CUSTOMER_MEDIAN_RATIO) | (customer <= 1 / CUSTOMER_MEDIAN_RATIO),
        ],
        [RULE_ORDER_WITHOUT_ITEMS, RULE_TOTAL_ABOVE_ITEMS, RULE_TOTAL_BELOW_ITEMS, RULE_TOTAL_VS_CUSTOMER_MEDIAN],
        RULE_UNUSUAL_ORDER,
    )


def order_sentence(
    rule: str, fact: Mapping[str, Any], at: pd.Timestamp, top: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    total = float(fact["total_amount"])
    items_total = float(fact["items_total"])
    quantity = int(fact["total_quantity"])
    items = count_of(quantity, "item")
    used: dict[str, Any] = {
        "created_at": at.isoformat(),
        "customer_id": customer_or_none(fact["customer_id"]),
        "total_amount": total,
        "items_total": items_total,
        "item_count": int(fact["item_count"]),
        "total_quantity": quantity,
    }
    if rule == RULE_ORDER_WITHOUT_ITEMS:
        if int(fact["item_count"]) == 0:
            return f"Order total {money(total)} but the order has no items", used
        return f"Order total {money(total)} for {items} that cost nothing", used
    if rule in (RULE_TOTAL_ABOVE_ITEMS, RULE_TOTAL_BELOW_ITEMS):
        ratio = float(fact["amount_to_items_ratio"])
        used["amount_to_items_ratio"] = ratio
        if rule == RULE_TOTAL_ABOVE_ITEMS:
            cost = "costs" if quantity == 1 else "cost"
            return (
                f"Order total {money(total)} is {times(ratio)} what its {items} {cost} ({money(items_total)})",
                used,
            )
        return f"Order total {money(total)} for {items} costing {money(items_total)}", used
    if rule == RULE_TOTAL_VS_CUSTOMER_MEDIAN:
        ratio = float(fact["amount_to_customer_median_ratio"])
        median = total / ratio
        used |= {"amount_to_customer_median_ratio": ratio, "customer_median_total": median}
        customer = used["customer_id"]
        whose = f"customer {customer}'s" if customer is not None else "the customer's"
        if ratio >= 1:
            return f"Order total {money(total)} is {times(ratio)} {whose} median order ({money(median)})", used
        return f"Order total {money(total)} against {whose} median order of {money(median)}", used
    return f"Order of {items} totalling {money(total)} at {at:%H:%M} unlike the training data{_strongest(top)}", used


# --- Formatting ----------------------------------------------------------------------------------


def _strongest(top: list[dict[str, Any]]) -> str:
    if not top:
        return ""
    first = top[0]
    value = f" = {_format_value(first['feature'], first['value'])}" if first.get("value") is not None else ""
    return f"; strongest signal: {first['feature']}{value}"


def _session(actions: int, seconds: float) -> str:
    return count_of(actions, "action") + (f" over {duration_text(seconds)}" if actions > 1 else "")


def _format_value(feature: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if "seconds" in feature or feature.startswith("time_since"):
        return duration_text(float(value))
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def money(amount: float) -> str:
    return f"{amount:,.2f}"


def times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def count_of(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def duration_text(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def text_or_none(value: Any) -> str | None:
    """A non-empty string, or None for NA / empty."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    return text or None


def customer_or_none(value: Any) -> int | None:
    if value is None or pd.isna(value) or int(value) < 0:
        return None
    return int(value)


def parse_details(value: Any) -> dict[str, Any]:
    text = text_or_none(value)
    if text is None:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        logger.warning("activity details are not JSON: %.80s", text)
        return {}
    return parsed if isinstance(parsed, dict) else {}


def json_ready(value: Any) -> Any:
    """A JSON-ready scalar: numpy scalars unwrapped, NA and non-finite floats as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return value
