"""The one sentence that says what an incident was, written from its rows' facts.

An incident's rows are the ensemble's anomaly records of its entities; each carries, in
``details``, the description rule that applied to it and the facts that rule read
(:mod:`anomalens_dagster.core.descriptions`). The sentence follows the rule most of the rows share
(ties go to the rule listed first in ``RULE_PRIORITY``) and counts, sums and spans over the rows:

- ``failed_login_run``: "9 failed logins against 7 accounts from 203.0.113.9 over 12 min" (one
  account: "for jo***@example.com"), then any other action of the incident ("and 1 login").
- ``identical_actions``: '14 identical searches for "kettle" from 203.0.113.7 within 40 s'.
- ``purchase_total_mismatch``: "2 purchases totalling 4,512.00 for items costing 118.70 (38x their
  price) from 198.51.100.4 within 3 min".
- ``unusual_activity``: "5 unusual actions (3 view_page, 2 search) from 198.51.100.4 over 12 min;
  strongest signal: session_action_count" ("1 unusual purchase ..." when all rows share an action).
- orders: "3 orders totalling 4,512.00 from customer 42 within 20 min, 38x what their items cost";
  "... for items costing 224.60"; "..., 12x the customer's median order (75.00)"; "... with no
  items"; "... unlike the training data; strongest signal: hour_of_day".

Rows the main rule does not describe are counted at the end ("; 2 other flagged activities").
A span under two minutes reads "within 40 s", longer ones "over 12 min"; a single row "at 14:03".
Nothing here reads the simulator's labels, and any email address left in the text is masked.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from anomalens_dagster.constants import ENTITY_ACTIVITY
from anomalens_dagster.core.descriptions import (
    RULE_FAILED_LOGIN_RUN,
    RULE_IDENTICAL_ACTIONS,
    RULE_ORDER_WITHOUT_ITEMS,
    RULE_PURCHASE_TOTAL_MISMATCH,
    RULE_TOTAL_ABOVE_ITEMS,
    RULE_TOTAL_BELOW_ITEMS,
    RULE_TOTAL_VS_CUSTOMER_MEDIAN,
    RULE_UNUSUAL_ACTIVITY,
    RULE_UNUSUAL_ORDER,
    count_of,
    duration_text,
    mask_emails_in_text,
    money,
    times,
)

# The specific rules before the fallbacks, so that a tie names what is known to have happened.
RULE_PRIORITY: tuple[str, ...] = (
    RULE_FAILED_LOGIN_RUN,
    RULE_IDENTICAL_ACTIONS,
    RULE_PURCHASE_TOTAL_MISMATCH,
    RULE_ORDER_WITHOUT_ITEMS,
    RULE_TOTAL_ABOVE_ITEMS,
    RULE_TOTAL_BELOW_ITEMS,
    RULE_TOTAL_VS_CUSTOMER_MEDIAN,
    RULE_UNUSUAL_ACTIVITY,
    RULE_UNUSUAL_ORDER,
)
# Spans shorter than this read "within 40 s", longer ones "over 12 min".
WITHIN_SECONDS = 120

_PLURALS = {"search": "searches"}


def summarise_incident(entity_type: str, rows: Sequence[Mapping[str, Any]], top_feature: str | None) -> str:
    """One sentence for one incident (see the module docstring).

    ``rows``: one mapping per row, in time order, with ``event_timestamp`` (pd.Timestamp), ``rule``,
    ``facts`` (the record's ``details.facts``), ``customer_id`` (int or None), ``ip_address`` (str
    or None). ``top_feature``: the feature that most often drove the rows, for the fallback rules.
    """
    if not rows:
        raise ValueError("an incident has at least one row")
    rank = {rule: position for position, rule in enumerate(RULE_PRIORITY)}
    counts = Counter(str(row["rule"]) for row in rows)
    rule = min(counts, key=lambda name: (-counts[name], rank.get(name, len(rank)), name))
    main = [row for row in rows if row["rule"] == rule]
    if entity_type == ENTITY_ACTIVITY:
        sentence = _activity_sentence(rule, main, top_feature)
    else:
        sentence = _order_sentence(rule, main, top_feature)
    others = len(rows) - len(main)
    if others:
        noun = ("activity", "activities") if entity_type == ENTITY_ACTIVITY else ("order", "orders")
        sentence += f"; {others} other flagged {noun[others != 1]}"
    return mask_emails_in_text(sentence)


# --- Activities ----------------------------------------------------------------------------------


def _activity_sentence(rule: str, rows: list[Mapping[str, Any]], top_feature: str | None) -> str:
    where = f"{_source(rows)} {_span(rows)}"
    facts = [row["facts"] for row in rows]
    actions = [str(fact.get("action_type") or "action") for fact in facts]
    if rule == RULE_FAILED_LOGIN_RUN:
        failed = [fact for fact in facts if fact.get("action_type") == "failed_login"]
        accounts = sorted({str(fact["attempted_email"]) for fact in failed if fact.get("attempted_email")})
        target = ""
        if len(accounts) == 1:
            target = f" for {accounts[0]}"
        elif accounts:
            target = f" against {count_of(len(accounts), 'account')}"
        others = Counter(action for action in actions if action != "failed_login")
        then = f" and {_action_list(others)}" if others else ""
        if not failed:
            return f"{_action_list(Counter(actions))} {where}, each within 15 min of a run of failed logins"
        return f"{_actions(len(failed), 'failed_login')}{target}{then} {where}"
    if rule == RULE_IDENTICAL_ACTIONS:
        action = Counter(actions).most_common(1)[0][0]
        return f"{len(rows)} identical {_plural(action)}{_shared_target(facts)} {where}"
    if rule == RULE_PURCHASE_TOTAL_MISMATCH:
        charged = sum(float(fact.get("order_total") or 0.0) for fact in facts)
        cost = sum(float(fact.get("items_total") or 0.0) for fact in facts)
        ratio = f" ({_ratio(charged / cost)} their price)" if cost > 0 else ""
        return (
            f"{_actions(len(rows), 'purchase')} totalling {money(charged)} for items costing {money(cost)}{ratio} "
            f"{where}"
        )
    kinds = Counter(actions)
    if len(kinds) == 1:
        return f"{_actions(len(rows), actions[0], 'unusual ')} {where}{_strongest(top_feature)}"
    detail = ", ".join(f"{count} {action}" for action, count in kinds.most_common())
    return f"{count_of(len(rows), 'unusual action')} ({detail}) {where}{_strongest(top_feature)}"


def _shared_target(facts: list[Mapping[str, Any]]) -> str:
    """' for product #17' / ' for "kettle"' / ' on /cart' when every row names the same one."""
    for key, form in (("product_id", "product #{}"), ("query", '"{}"'), ("url", "{}")):
        values = {fact.get(key) for fact in facts}
        if len(values) == 1 and None not in values:
            preposition = " on " if key == "url" else " for "
            return preposition + form.format(values.pop())
    return ""


def _source(rows: list[Mapping[str, Any]]) -> str:
    ips = sorted({str(row["ip_address"]) for row in rows if row.get("ip_address")})
    customers = sorted({int(row["customer_id"]) for row in rows if row.get("customer_id") is not None})
    if len(ips) == 1:
        source = f"from {ips[0]}"
    elif ips:
        source = f"from {len(ips)} IPs"
    else:
        source = "from an unknown IP"
    if len(customers) == 1:
        source += f" (customer {customers[0]})"
    elif customers:
        source += f" ({len(customers)} customers)"
    return source


# --- Orders --------------------------------------------------------------------------------------


def _order_sentence(rule: str, rows: list[Mapping[str, Any]], top_feature: str | None) -> str:
    facts = [row["facts"] for row in rows]
    total = sum(float(fact.get("total_amount") or 0.0) for fact in facts)
    cost = sum(float(fact.get("items_total") or 0.0) for fact in facts)
    head = f"{count_of(len(rows), 'order')} totalling {money(total)} {_customers(rows)}{_span(rows)}"
    whose = "its" if len(rows) == 1 else "their"
    if rule == RULE_TOTAL_ABOVE_ITEMS and cost > 0:
        return f"{head}, {times(total / cost)} what {whose} items cost"
    if rule == RULE_TOTAL_BELOW_ITEMS:
        return f"{head} for items costing {money(cost)}"
    if rule == RULE_TOTAL_VS_CUSTOMER_MEDIAN:
        strongest = max(facts, key=lambda fact: abs(_log_ratio(fact.get("amount_to_customer_median_ratio"))))
        ratio = float(strongest.get("amount_to_customer_median_ratio") or 1.0)
        median = float(strongest.get("customer_median_total") or 0.0)
        if ratio >= 1:
            return f"{head}, up to {times(ratio)} the customer's median order ({money(median)})"
        return f"{head}, against the customer's median order of {money(median)}"
    if rule == RULE_ORDER_WITHOUT_ITEMS:
        none = all(int(fact.get("item_count") or 0) == 0 for fact in facts)
        return f"{head} {'with no items' if none else 'for items that cost nothing'}"
    return f"{head} unlike the training data{_strongest(top_feature)}"


def _customers(rows: list[Mapping[str, Any]]) -> str:
    customers = sorted({int(row["customer_id"]) for row in rows if row.get("customer_id") is not None})
    if len(customers) == 1:
        return f"from customer {customers[0]} "
    if customers:
        return f"from {len(customers)} customers "
    return ""


def _log_ratio(value: Any) -> float:
    return math.log(float(value)) if isinstance(value, int | float) and value > 0 else 0.0


# --- Formatting ----------------------------------------------------------------------------------


def _span(rows: list[Mapping[str, Any]]) -> str:
    times_seen = [pd.Timestamp(row["event_timestamp"]) for row in rows]
    first, last = min(times_seen), max(times_seen)
    if len(rows) == 1:
        return f"at {first:%H:%M}"
    seconds = (last - first).total_seconds()
    return f"{'within' if seconds < WITHIN_SECONDS else 'over'} {duration_text(seconds)}"


def _ratio(ratio: float) -> str:
    """'91x', '1.5x', '0.018x': two significant digits below 1, where `times` would round to 0.0x."""
    return times(ratio) if ratio >= 1 else f"{ratio:.2g}x"


def _strongest(top_feature: str | None) -> str:
    return f"; strongest signal: {top_feature}" if top_feature else ""


def _plural(action: str) -> str:
    if "_" in action:
        return f"{action} actions"
    return _PLURALS.get(action, f"{action}s")


def _actions(n: int, action: str, adjective: str = "") -> str:
    """'1 search', '14 searches', '9 failed logins', '2 unusual view_page actions'."""
    if action == "failed_login":
        return f"{n} {adjective}failed login{'' if n == 1 else 's'}"
    if n == 1:
        return f"1 {adjective}{action}" + (" action" if "_" in action else "")
    return f"{n} {adjective}{_plural(action)}"


def _action_list(counts: Counter[str]) -> str:
    return " and ".join(_actions(n, action) for action, n in counts.most_common())
