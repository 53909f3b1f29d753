"""Normal traffic: the sessions of a day (one per order, then browsing) and their actions."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from anomalens_dagster.core.simulator.catalogue import TrafficPools
from anomalens_dagster.core.simulator.draws import episode_sizes, pick, pick_from, usual
from anomalens_dagster.core.simulator.orders import QUANTITY_PROBS
from anomalens_dagster.core.simulator.profiles import MOBILE_SESSION_PROB
from anomalens_dagster.core.simulator.rows import Orders, Rows
from anomalens_dagster.core.simulator.vocabulary import (
    ACTION_CODE,
    ADD_TO_CART,
    FAILED_LOGIN,
    LOGIN,
    LOGOUT,
    PURCHASE,
    REMOVE_FROM_CART,
    SEARCH,
    UPDATE_PROFILE,
    US_PER_S,
    VIEW_PAGE,
    VIEW_PRODUCT,
)

logger = logging.getLogger(__name__)

_BROWSE_ACTION_PROBS = {
    "view_page": 0.28,
    "view_product": 0.40,
    "search": 0.16,
    "add_to_cart": 0.11,
    "remove_from_cart": 0.05,
}
# Browsing inside an order's session; its cart is the order's lines, added at the end.
_ORDER_BROWSE_ACTION_PROBS = {"view_page": 0.30, "view_product": 0.50, "search": 0.20}
_ANONYMOUS_SESSION_SHARE = 0.4
_MEAN_BROWSE_SESSION_LENGTH = 6
_MAX_BROWSE_SESSION_LENGTH = 40
_LOGIN_PROB = 0.30  # a customer's session starts with a login
_TYPO_PROB = 0.04  # a login is preceded by one failed attempt
_LOGOUT_PROB = 0.20  # a customer's browsing session ends with a logout
_PROFILE_UPDATE_PROB = 0.05  # a customer's browsing session contains an update_profile
_ORDER_VIEW_PROB = 0.60  # an order's add_to_carts are each preceded by a view_product
_ORDER_MEAN_EXTRA_ACTIONS = 2.5  # browsing actions before an order's cart
_ORDER_SPARE_SHARE = 0.6  # at most this share of spare actions is spent on order sessions
_MIN_GAP_S = 3.0  # normal actions are this far apart at least (power shoppers: _FAST_MIN_GAP_S)
_MEDIAN_EXTRA_GAP_S = 15.0
_MAX_GAP_S = 180.0

# Benign oddities (normal, unlabelled traffic; the customers' habits are in profiles.py):
# a customer's browsing session of one or two actions is, this often, a mistyped password and leaving
# (one or two failed logins, no login): about 1.5 % of the browsing sessions.
_ABANDONED_LOGIN_PROB = 0.08
# Power shoppers' fast sessions: this share of the browsing actions, 20-60 actions 1-20 s apart.
_POWER_SESSION_SHARE = 0.03
_POWER_SESSION_LENGTH = (20, 60)
_FAST_MIN_GAP_S = 1.0
_FAST_MEDIAN_EXTRA_GAP_S = 2.5
_FAST_MAX_GAP_S = 20.0
_ANONYMOUS_MOBILE_PROB = 0.2  # an anonymous visitor browses from a mobile carrier's shared IP

_ORDER_SESSION, _CUSTOMER_SESSION, _ANONYMOUS_SESSION = 0, 1, 2


@dataclass(frozen=True, eq=False)
class Sessions:
    """Normal sessions: order sessions first (session ``o`` is order ``o``'s), then browsing."""

    kind: np.ndarray
    customer: np.ndarray  # -1 for anonymous visitors
    ip: np.ndarray
    user_agent: np.ndarray
    length: np.ndarray
    typo: np.ndarray  # 1: a failed_login then the login open the session
    login: np.ndarray
    logout: np.ndarray
    profile_pos: np.ndarray  # position of the update_profile, -1 for none
    order: np.ndarray  # -1 for browsing sessions
    view_before_add: np.ndarray
    cart_length: np.ndarray
    abandoned: np.ndarray  # bool: only failed logins, the visitor gave up
    fast: np.ndarray  # bool: a power shopper's quick session


def plan_sessions(rng: np.random.Generator, orders: Orders, budget: int, pools: TrafficPools) -> Sessions:
    """One session per order, then browsing sessions filling the rest of the activity budget.

    An order's session needs its add_to_carts and its purchase; logins, views before adding and
    browsing are optional and thinned when the budget is short, so browsing keeps at least
    ``1 - _ORDER_SPARE_SHARE`` of the spare actions.
    """
    n_orders = len(orders.customer)
    essential = int(orders.n_lines.sum()) + n_orders
    spare = budget - essential
    if spare < 0:
        logger.warning(
            "%d orders need %d activities but the day has room for %d; the day gets more activities "
            "than activities_per_day (raise it or lower orders_per_day)",
            n_orders,
            essential,
            budget,
        )
    expected_optional = n_orders * (_LOGIN_PROB * (1 + _TYPO_PROB) + _ORDER_MEAN_EXTRA_ACTIONS) + (
        _ORDER_VIEW_PROB * (essential - n_orders)
    )
    scale = min(1.0, _ORDER_SPARE_SHARE * max(spare, 0) / expected_optional) if expected_optional else 0.0
    login = rng.random(n_orders) < _LOGIN_PROB * scale
    typo = login & (rng.random(n_orders) < _TYPO_PROB)
    view = rng.random(n_orders) < _ORDER_VIEW_PROB * scale
    extra = rng.poisson(_ORDER_MEAN_EXTRA_ACTIONS * scale, size=n_orders)
    cart_length = orders.n_lines * (1 + view)
    order_length = typo.astype(np.int64) + login + extra + cart_length + 1

    browse_budget = budget - int(order_length.sum())
    power_shoppers = pools.profiles.power_shoppers
    power_length = episode_sizes(
        rng, _POWER_SESSION_SHARE * browse_budget if len(power_shoppers) else 0, *_POWER_SESSION_LENGTH
    )
    power_length = power_length[: np.searchsorted(np.cumsum(power_length), max(browse_budget, 0), side="right")]
    regular_length = _browse_session_lengths(rng, browse_budget - int(power_length.sum()))
    browse_length = np.concatenate([regular_length, power_length])
    n_browse = len(browse_length)
    fast = np.arange(n_browse) >= len(regular_length)
    anonymous = ~fast & (rng.random(n_browse) < _ANONYMOUS_SESSION_SHARE)
    b_customer = np.where(anonymous, -1, pick(rng, pools.customer_cdf, n_browse))
    b_customer[fast] = pick_from(rng, power_shoppers, int(fast.sum()))
    abandoned = ~anonymous & ~fast & (browse_length <= 2) & (rng.random(n_browse) < _ABANDONED_LOGIN_PROB)
    b_login = ~anonymous & ~abandoned & (rng.random(n_browse) < _LOGIN_PROB)
    b_typo = b_login & (browse_length >= 2) & (rng.random(n_browse) < _TYPO_PROB)
    head = b_login.astype(np.int64) + b_typo
    b_logout = ~anonymous & ~abandoned & (browse_length > head) & (rng.random(n_browse) < _LOGOUT_PROB)
    body = browse_length - head - b_logout
    profile = ~anonymous & ~abandoned & (body >= 1) & (rng.random(n_browse) < _PROFILE_UPDATE_PROB)
    profile_pos = np.where(profile, head + (rng.random(n_browse) * body).astype(np.int64), -1)

    customer = np.concatenate([orders.customer, b_customer])
    known = customer >= 0
    who = np.maximum(customer, 0)
    ip = np.where(
        known,
        usual(rng, pools.customer_ips, pools.customer_ip_counts, who),
        pick_from(rng, pools.anonymous_ips, len(customer)),
    )
    # On a phone, the carrier hands out one of its few shared IPs, a different one each time.
    on_phone = rng.random(len(customer)) < np.where(
        known, MOBILE_SESSION_PROB * pools.profiles.mobile[who], _ANONYMOUS_MOBILE_PROB
    )
    ip[on_phone] = pick_from(rng, pools.carrier_ips, int(on_phone.sum()))
    user_agent = np.where(
        known,
        usual(rng, pools.customer_user_agents, pools.customer_user_agent_counts, who),
        pick_from(rng, pools.browser_user_agents, len(customer)),
    )
    zeros = np.zeros(n_browse, dtype=np.int64)
    return Sessions(
        kind=np.concatenate(
            [
                np.full(n_orders, _ORDER_SESSION),
                np.where(anonymous, _ANONYMOUS_SESSION, _CUSTOMER_SESSION),
            ]
        ),
        customer=customer,
        ip=ip,
        user_agent=user_agent,
        length=np.concatenate([order_length, browse_length]).astype(np.int64),
        typo=np.concatenate([typo, b_typo]).astype(np.int64),
        login=np.concatenate([login, b_login]).astype(np.int64),
        logout=np.concatenate([np.zeros(n_orders, dtype=bool), b_logout]),
        profile_pos=np.concatenate([np.full(n_orders, -1), profile_pos]),
        order=np.concatenate([np.arange(n_orders), np.full(n_browse, -1)]),
        view_before_add=np.concatenate([view, zeros]).astype(np.int64),
        cart_length=np.concatenate([cart_length, zeros]),
        abandoned=np.concatenate([np.zeros(n_orders, dtype=bool), abandoned]),
        fast=np.concatenate([np.zeros(n_orders, dtype=bool), fast]),
    )


def _browse_session_lengths(rng: np.random.Generator, total: int) -> np.ndarray:
    """Geometric session lengths (mean about 6, at most 40) summing exactly to ``total``."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    draw = int(total / _MEAN_BROWSE_SESSION_LENGTH * 1.25) + 16
    lengths = np.zeros(0, dtype=np.int64)
    while lengths.sum() < total:
        more = rng.geometric(1 / _MEAN_BROWSE_SESSION_LENGTH, size=draw)
        lengths = np.concatenate([lengths, np.minimum(more, _MAX_BROWSE_SESSION_LENGTH)])
    reached = np.cumsum(lengths)
    last = int(np.searchsorted(reached, total))  # first session that reaches the total
    lengths = lengths[: last + 1]
    lengths[last] -= reached[last] - total
    return lengths


def _categorical(u: np.ndarray, probs: dict[str, float]) -> np.ndarray:
    """Action codes for uniforms ``u`` with the given probabilities (a few classes: comparisons
    beat a binary search)."""
    codes = np.array([ACTION_CODE[name] for name in probs])
    thresholds = np.cumsum(list(probs.values()))[:-1] / sum(probs.values())
    index = np.zeros(len(u), dtype=np.int64)
    for threshold in thresholds:
        index += u >= threshold
    return codes[index]


def expand_sessions(rng: np.random.Generator, sessions: Sessions, orders: Orders, pools: TrafficPools) -> Rows:
    """One row per action of the normal sessions.

    Layout of a session: [failed_login] [login] browsing... [update_profile somewhere in it]
    then, for an order, ([view_product] add_to_cart) per line and the purchase; for a customer's
    browsing session maybe a final logout. An abandoned session is only failed logins.
    """
    length = sessions.length
    n = int(length.sum())
    session = np.repeat(np.arange(len(length)), length)
    first = (np.cumsum(length) - length)[session]
    pos = np.arange(n) - first
    from_end = length[session] - 1 - pos

    # Browsing actions by default, then the structural rows on top.
    is_order_session = sessions.kind[session] == _ORDER_SESSION
    u = rng.random(n)
    code = np.where(
        is_order_session,
        _categorical(u, _ORDER_BROWSE_ACTION_PROBS),
        _categorical(u, _BROWSE_ACTION_PROBS),
    )
    typo = sessions.typo[session]
    is_typo = ((typo == 1) & (pos == 0)) | sessions.abandoned[session]
    is_login = (sessions.login[session] == 1) & (pos == typo)
    is_profile = pos == sessions.profile_pos[session]
    is_logout = sessions.logout[session] & (from_end == 0)
    is_purchase = is_order_session & (from_end == 0)
    cart_length = sessions.cart_length[session]
    is_cart = is_order_session & (from_end >= 1) & (from_end <= cart_length)
    in_cart = cart_length - from_end  # 0-based position inside the cart segment
    view_before_add = sessions.view_before_add[session]
    is_cart_view = is_cart & (view_before_add == 1) & (in_cart % 2 == 0)
    is_browsing = ~(is_typo | is_login | is_profile | is_logout | is_purchase | is_cart)
    code[is_typo] = FAILED_LOGIN
    code[is_login] = LOGIN
    code[is_profile] = UPDATE_PROFILE
    code[is_logout] = LOGOUT
    code[is_cart] = ADD_TO_CART
    code[is_cart_view] = VIEW_PRODUCT
    code[is_purchase] = PURCHASE

    subject = np.full(n, -1, dtype=np.int64)
    quantity = np.zeros(n, dtype=np.int64)
    browse_product = is_browsing & ((code == VIEW_PRODUCT) | (code == ADD_TO_CART) | (code == REMOVE_FROM_CART))
    subject[browse_product] = pick(rng, pools.product_cdf, np.count_nonzero(browse_product))
    # A removal takes out the session's latest addition; with nothing added it is a product view.
    latest_add = np.maximum.accumulate(np.where(code == ADD_TO_CART, np.arange(n), -1))
    removal = is_browsing & (code == REMOVE_FROM_CART)
    valid_removal = removal & (latest_add >= first)
    code[removal & ~valid_removal] = VIEW_PRODUCT
    # Adding right after viewing adds the viewed product.
    add_after_view = (
        np.flatnonzero(is_browsing[1:] & (code[1:] == ADD_TO_CART) & (code[:-1] == VIEW_PRODUCT) & (pos[1:] > 0)) + 1
    )
    subject[add_after_view] = subject[add_after_view - 1]
    browse_add = is_browsing & (code == ADD_TO_CART)
    quantity[browse_add] = rng.choice(
        np.arange(1, len(QUANTITY_PROBS) + 1), size=np.count_nonzero(browse_add), p=QUANTITY_PROBS
    )
    subject[valid_removal] = subject[latest_add[valid_removal]]
    quantity[valid_removal] = quantity[latest_add[valid_removal]]

    order = sessions.order[session]
    cart = np.flatnonzero(is_cart)
    line = orders.line_start[order[cart]] + in_cart[cart] // (1 + view_before_add[cart])
    subject[cart] = orders.line_product[line]
    cart_add = ~is_cart_view[cart]
    quantity[cart[cart_add]] = orders.line_quantity[line[cart_add]]
    # An order anomaly's episode holds the order, its purchase and the add_to_cart of a marked line.
    kind = np.full(n, -1, dtype=np.int64)
    episode = np.full(n, -1, dtype=np.int64)
    marked = cart[cart_add][orders.line_labelled[line[cart_add]]]
    purchases = np.flatnonzero(is_purchase)
    for rows_of_order in (marked, purchases):
        kind[rows_of_order] = orders.anomaly_kind[order[rows_of_order]]
        episode[rows_of_order] = orders.episode[order[rows_of_order]]
    # A product viewed right before the cart is the first product added.
    viewed_then_added = cart[(in_cart[cart] == 0) & cart_add & (pos[cart] > 0)]
    viewed_then_added = viewed_then_added[code[viewed_then_added - 1] == VIEW_PRODUCT]
    subject[viewed_then_added - 1] = subject[viewed_then_added]
    subject[is_purchase] = order[is_purchase]

    is_search = code == SEARCH
    subject[is_search] = pick(rng, pools.search_cdf, np.count_nonzero(is_search))
    is_page = code == VIEW_PAGE
    subject[is_page] = pools.page_urls[pick(rng, pools.page_cdf, np.count_nonzero(is_page))]
    subject[is_profile] = pick_from(rng, pools.profile_urls, np.count_nonzero(is_profile))

    customer = sessions.customer[session]
    # Nobody is authenticated by a failed login: it is anonymous, with the customer's email typed.
    subject[is_typo] = customer[is_typo]
    customer[is_typo] = -1
    gap_s = np.minimum(_MIN_GAP_S + rng.lognormal(np.log(_MEDIAN_EXTRA_GAP_S), 0.9, size=n), _MAX_GAP_S)
    fast = np.flatnonzero(sessions.fast[session])
    gap_s[fast] = np.minimum(
        _FAST_MIN_GAP_S + rng.lognormal(np.log(_FAST_MEDIAN_EXTRA_GAP_S), 0.6, size=len(fast)), _FAST_MAX_GAP_S
    )
    gap_us = (gap_s * US_PER_S).astype(np.int64)
    gap_us[pos == 0] = 0
    return Rows(
        session=session,
        gap_us=gap_us,
        code=code,
        customer=customer,
        ip=sessions.ip[session],
        user_agent=sessions.user_agent[session],
        subject=subject,
        quantity=quantity,
        kind=kind,
        episode=episode,
        part=np.zeros(n, dtype=np.int64),
    )
