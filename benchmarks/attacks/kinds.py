"""The attack kinds: realistic e-commerce abuse that the simulator never injects.

Each kind writes one episode per call through an `AttackBuilder`. Parameters come from how such
attacks are run in practice (sizes, pacing, infrastructure), written down beside each kind; they
were chosen without looking at which features or thresholds the detectors use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.attacks.builder import AttackBuilder

SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


def password_spraying(b: AttackBuilder) -> None:
    episode = b.start_episode("password_spraying")
    attempts = int(b.rng.integers(25, 91))
    gaps = b.human_gaps(attempts, median_s=90.0, sigma=0.8, floor_s=5.0)
    at = b.start_time(dt.timedelta(seconds=float(gaps.sum())) + HOUR)
    agents = [b.browser() for _ in range(3)]
    emails = b.view.customers["email"].to_numpy()
    cracked = int(b.rng.integers(attempts)) if b.rng.random() < 0.3 else -1
    for attempt in range(attempts):
        ip, agent, session = b.residential_ip(), agents[int(b.rng.integers(3))], b.session_token()
        if attempt == cracked:  # the sprayed password was this account's: the attacker looks around
            customer, _, _ = b.active_customer()
            b.act(episode, at, "login", customer, session, ip, agent, success=True)
            for gap in b.human_gaps(int(b.rng.integers(1, 4)), median_s=20.0):
                at += dt.timedelta(seconds=float(gap))
                b.act(episode, at, "view_page", customer, session, ip, agent, url=b.page())
        else:
            stale = b.rng.random() < 0.1  # lists of addresses hold closed or mistyped accounts too
            email = f"{b.rng.bytes(4).hex()}@gmail.com" if stale else str(emails[int(b.rng.integers(len(emails)))])
            b.act(episode, at, "failed_login", None, session, ip, agent, success=False, attempted_email=email)
        at += dt.timedelta(seconds=float(gaps[attempt]))


def session_hijack(b: AttackBuilder) -> None:
    episode = b.start_episode("session_hijack")
    victim = b.hijackable_session()
    customer, session = b.shop_id(int(victim.customer_id)), str(victim.session_id)
    ip, agent = b.residential_ip(), b.browser(other_than=str(victim.user_agent))
    at = victim.ended.to_pydatetime() + dt.timedelta(minutes=float(b.rng.uniform(2, 40)))
    gaps = iter(b.human_gaps(40, median_s=18.0))
    for url in ("/account/orders", "/account/addresses"):
        b.act(episode, at, "view_page", customer, session, ip, agent, url=url)
        at += dt.timedelta(seconds=float(next(gaps)))
    b.act(episode, at, "update_profile", customer, session, ip, agent, url="/account/addresses")
    at += dt.timedelta(seconds=float(next(gaps)))
    if b.rng.random() < 0.3:
        b.act(episode, at, "update_profile", customer, session, ip, agent, url="/account/payment-methods")
        at += dt.timedelta(seconds=float(next(gaps)))
    if b.rng.random() < 0.7:  # most hijackers cash out with an order shipped to their new address
        lines = [(product, int(b.rng.integers(1, 3))) for product in b.products(int(b.rng.integers(1, 4)), "expensive")]
        at = b.checkout(episode, at, customer, session, ip, agent, lines, [float(next(gaps)) for _ in range(12)])
    if b.rng.random() < 0.5:
        b.act(episode, at + dt.timedelta(seconds=float(next(gaps))), "logout", customer, session, ip, agent)


def cart_manipulation(b: AttackBuilder) -> None:
    episode = b.start_episode("cart_manipulation")
    customer, _, _ = b.active_customer()
    ip, agent, session = b.datacentre_ip(), b.browser(), b.session_token()
    products = b.products(int(b.rng.integers(1, 4)), "any")
    quantities = b.rng.integers(1, 6, size=len(products))
    cycles = int(b.rng.integers(10, 41))
    gaps = b.human_gaps(2 * cycles + 1, median_s=2.5, sigma=0.5, floor_s=0.8)
    at = b.start_time(dt.timedelta(seconds=float(gaps.sum())) + MINUTE)
    b.view_product(episode, at, products[0], customer, session, ip, agent)
    for cycle in range(cycles):
        k = cycle % len(products)
        for step, action in enumerate(("add_to_cart", "remove_from_cart")):
            at += dt.timedelta(seconds=float(gaps[2 * cycle + step]))
            b.cart(episode, at, action, products[k], quantities[k], customer, session, ip, agent)


def coupon_draining(b: AttackBuilder) -> None:
    episode = b.start_episode("coupon_draining")
    (product,) = b.products(1, "cheap")
    discount = float(b.rng.uniform(0.6, 0.95))  # a leaked 60-95 %-off code, or gift-card balances
    accounts = int(b.rng.integers(6, 19))
    spacing = b.human_gaps(accounts, median_s=300.0, sigma=0.6, floor_s=60.0)
    at = b.start_time(dt.timedelta(seconds=float(spacing.sum())) + HOUR)
    proxies = [b.datacentre_ip() for _ in range(int(b.rng.integers(2, 5)))] if b.rng.random() < 0.5 else None
    agent = b.browser()
    for gap in spacing:
        ip = proxies[int(b.rng.integers(len(proxies)))] if proxies else b.residential_ip()
        session = b.session_token()
        customer = b.new_account(episode, at)
        b.act(episode, at + SECOND, "login", customer, session, ip, agent, success=True)
        lines = [(product, int(b.rng.integers(1, 3)))]
        b.checkout(episode, at + 8 * SECOND, customer, session, ip, agent, lines, b.human_gaps(4, 8.0), 1 - discount)
        at += dt.timedelta(seconds=float(gap))


def price_tampering(b: AttackBuilder) -> None:
    episode = b.start_episode("price_tampering")
    customer, ip, agent = b.active_customer()  # from their own browser, editing the request in its dev tools
    orders = int(b.rng.integers(2, 6))
    span = b.span(dt.timedelta(days=1, hours=6))
    at = b.start_time(span, hours=(8, 22))
    for _ in range(orders):
        session = b.session_token()
        # The charged total reads like a sale: 30-60 % off, in steps of 5 points.
        off = float(b.rng.choice(np.arange(0.30, 0.61, 0.05)))
        lines = [(product, 1) for product in b.products(int(b.rng.integers(1, 4)), "mid")]
        b.act(episode, at, "view_page", customer, session, ip, agent, url=b.page())
        b.checkout(episode, at + 20 * SECOND, customer, session, ip, agent, lines, b.human_gaps(8, 25.0), 1 - off)
        at += span / orders * float(b.rng.uniform(0.5, 1.0))


def dormant_reactivation(b: AttackBuilder) -> None:
    episode = b.start_episode("dormant_reactivation")
    customer, email, usual_agent = b.dormant_customer()
    ip, agent, session = b.residential_ip(), b.browser(other_than=usual_agent), b.session_token()
    at = b.start_time(2 * HOUR, hours=(1, 5))  # the owner's night; the buyer of the stolen login is elsewhere
    if b.rng.random() < 0.3:
        b.act(episode, at, "failed_login", None, session, ip, agent, success=False, attempted_email=email)
        at += dt.timedelta(seconds=float(b.human_gaps(1, 12.0)[0]))
    b.act(episode, at, "login", customer, session, ip, agent, success=True)
    gaps = iter(b.human_gaps(40, median_s=20.0))
    at += dt.timedelta(seconds=float(next(gaps)))
    b.act(episode, at, "view_page", customer, session, ip, agent, url="/account/addresses")
    at += dt.timedelta(seconds=float(next(gaps)))
    b.act(episode, at, "update_profile", customer, session, ip, agent, url="/account/addresses")
    at += dt.timedelta(seconds=float(next(gaps)))
    lines = [(product, int(b.rng.integers(1, 4))) for product in b.products(int(b.rng.integers(2, 6)), "expensive")]
    b.checkout(episode, at, customer, session, ip, agent, lines, [float(next(gaps)) for _ in range(16)])


def checkout_sniping(b: AttackBuilder) -> None:
    episode = b.start_episode("checkout_sniping")
    (product,) = b.products(1, "any")  # the limited drop every bot of the episode goes for
    drop = b.start_time(10 * MINUTE)
    agent = b.headless()
    for _ in range(int(b.rng.integers(3, 9))):
        ip, session = b.datacentre_ip(), b.session_token()
        at = drop + dt.timedelta(seconds=float(b.rng.uniform(0, 60)))
        customer = b.new_account(episode, at - dt.timedelta(seconds=float(b.rng.uniform(20, 600))))
        b.act(episode, at - 2 * SECOND, "login", customer, session, ip, agent, success=True)
        gaps = b.rng.uniform(0.3, 1.5, size=2)  # view, add and pay within a few seconds
        b.checkout(episode, at, customer, session, ip, agent, [(product, int(b.rng.integers(5, 21)))], gaps)


def search_spam(b: AttackBuilder) -> None:
    episode = b.start_episode("search_spam")
    customer, _, _ = b.active_customer()
    searches = int(b.rng.integers(40, 151))
    gaps = b.human_gaps(searches, median_s=20.0, sigma=0.9, floor_s=3.0)
    at = b.start_time(dt.timedelta(seconds=float(gaps.sum())) + MINUTE)
    agent = b.browser()
    # Terms pushed into "popular searches" and autocomplete: a few, repeated, with a store word for cover.
    spam = [f"{b.query()} {word}" for word in ("cheap", "replica", "discount code", "free shipping hack")]
    spam += ["buy followers fast", "casino bonus 200 free spins", "crypto x100 signal"]
    ip = b.residential_ip()
    session = b.session_token()
    for gap in gaps:
        if b.rng.random() < 0.8:  # rotating proxies: a new address (and cookie) for most requests
            ip, session = b.residential_ip(), b.session_token()
        query = spam[int(b.rng.integers(len(spam)))]
        b.act(episode, at, "search", customer, session, ip, agent, query=query,
              url="/search?q=" + query.replace(" ", "+"))  # fmt: skip
        at += dt.timedelta(seconds=float(gap))


def refund_abuse(b: AttackBuilder) -> None:
    episode = b.start_episode("refund_abuse")
    customer, ip, agent = b.active_customer()
    orders = int(b.rng.integers(8, 21))
    cancelled_share = float(b.rng.uniform(0.6, 0.9))
    span = b.span(dt.timedelta(days=2))
    at = b.start_time(span, hours=(9, 21))
    for _ in range(orders):
        session = b.session_token()
        lines = [(product, int(b.rng.integers(1, 3))) for product in b.products(int(b.rng.integers(1, 4)), "mid")]
        status = "cancelled" if b.rng.random() < cancelled_share else "processing"
        b.checkout(episode, at, customer, session, ip, agent, lines, b.human_gaps(10, 30.0), status=status)
        at += span / orders * float(b.rng.uniform(0.5, 1.0))


def slow_scraping(b: AttackBuilder) -> None:
    episode = b.start_episode("slow_scraping")
    requests = int(b.rng.integers(400, 1501))
    gaps = b.human_gaps(requests, median_s=12.0, sigma=0.9, floor_s=2.0)
    # A sleeper: every few hundred requests it pauses for 10-40 minutes, as if the visitor had left.
    pauses = b.rng.integers(0, requests, size=requests // 200)
    gaps[pauses] += b.rng.uniform(600, 2400, size=len(pauses))
    at = b.start_time(dt.timedelta(seconds=float(gaps.sum())) + MINUTE)
    ip, agent = b.residential_ip(), b.browser()
    catalogue = b.view.products.sample(frac=1.0, random_state=np.random.RandomState(int(b.rng.integers(2**31))))
    products = list(catalogue.itertuples(index=False))
    session, left_in_session = b.session_token(), int(b.rng.integers(20, 61))
    for n, gap in enumerate(gaps):
        if left_in_session == 0:  # cookies cleared: a new session, same address
            session, left_in_session = b.session_token(), int(b.rng.integers(20, 61))
        left_in_session -= 1
        draw = b.rng.random()
        if draw < 0.8:
            b.view_product(episode, at, products[n % len(products)], None, session, ip, agent)
        elif draw < 0.93:
            b.act(episode, at, "view_page", None, session, ip, agent, url=b.page())
        else:
            query = b.query()
            b.act(
                episode, at, "search", None, session, ip, agent, query=query, url="/search?q=" + query.replace(" ", "+")
            )
        at += dt.timedelta(seconds=float(gap))


def datacentre_new_account_orders(b: AttackBuilder) -> None:
    episode = b.start_episode("datacentre_new_account_orders")
    ip, agent, session = b.datacentre_ip(), b.browser(), b.session_token()
    orders = int(b.rng.integers(3, 7))
    at = b.start_time(orders * 10 * MINUTE + HOUR)
    customer = b.new_account(episode, at)
    at += dt.timedelta(seconds=float(b.rng.uniform(5, 60)))
    b.act(episode, at, "login", customer, session, ip, agent, success=True)
    for _ in range(orders):  # stolen cards: full price, expensive goods, before the card is blocked
        lines = [(product, int(b.rng.integers(1, 4))) for product in b.products(int(b.rng.integers(1, 5)), "expensive")]
        at = b.checkout(episode, at + 10 * SECOND, customer, session, ip, agent, lines, b.human_gaps(12, 10.0))
        at += dt.timedelta(minutes=float(b.rng.uniform(1, 6)))


@dataclass(frozen=True)
class AttackKind:
    name: str
    generate: Callable[[AttackBuilder], None]
    why_realistic: str


ATTACK_KINDS: tuple[AttackKind, ...] = (
    AttackKind(
        "password_spraying", password_spraying,
        "One common password tried once per account, each attempt from another residential-proxy address "
        "(a new cookie each time), 25-90 attempts a minute or two apart: low and slow so no address and no "
        "account sees a run of failures; now and then the password is right and the attacker looks around.",
    ),
    AttackKind(
        "session_hijack", session_hijack,
        "A customer's session cookie, stolen by malware or a malicious extension, is replayed minutes after "
        "the customer left: same session id, another address and browser; the thief checks the orders, "
        "changes the delivery address (sometimes the card) and usually orders expensive goods.",
    ),
    AttackKind(
        "cart_manipulation", cart_manipulation,
        "A script on a rented server adds and removes the same 1-3 products 10-40 times, a second or two "
        "apart, from a customer account: holding stock away from others or probing cart pricing rules.",
    ),
    AttackKind(
        "coupon_draining", coupon_draining,
        "A leaked 60-95 %-off code (or gift-card balances) drained by 6-18 freshly made accounts, each "
        "buying one cheap product minutes after the previous, from a few proxies or a rotating pool.",
    ),
    AttackKind(
        "price_tampering", price_tampering,
        "A customer edits the checkout request in the browser's developer tools: 2-5 orders over a day "
        "charged 30-60 % below the items' price, a round discount that reads like a sale.",
    ),
    AttackKind(
        "dormant_reactivation", dormant_reactivation,
        "The login of a long-silent account (bought from a breach dump) used at 1-5 a.m. UTC from a new "
        "device and address: sometimes one wrong password, then a new delivery address and a large order "
        "of expensive goods at full price.",
    ),
    AttackKind(
        "checkout_sniping", checkout_sniping,
        "At a limited drop, 3-8 bots on rented servers, each with an account made minutes before, view, "
        "add 5-20 units and pay within seconds of one another, all for the same product.",
    ),
    AttackKind(
        "search_spam", search_spam,
        "One account floods the site search with a handful of spam terms (40-150 searches seconds to a "
        "minute apart) through rotating proxies, to push them into popular searches and autocomplete.",
    ),
    AttackKind(
        "refund_abuse", refund_abuse,
        "One customer places 8-20 ordinary orders over two days from their usual device and cancels "
        "most of them after payment: refund fraud or card-balance laundering through the shop.",
    ),
    AttackKind(
        "slow_scraping", slow_scraping,
        "A competitor's scraper on a residential address walks the whole catalogue anonymously at human "
        "pace (irregular gaps around 12 s), 400-1,500 pages, resetting cookies every few dozen pages and "
        "sleeping 10-40 minutes now and then.",
    ),
    AttackKind(
        "datacentre_new_account_orders", datacentre_new_account_orders,
        "An account made from a cloud server immediately places 3-6 full-price orders of expensive goods "
        "minutes apart: stolen cards used before they are blocked.",
    ),
)  # fmt: skip
ATTACK_KIND_NAMES = tuple(kind.name for kind in ATTACK_KINDS)
