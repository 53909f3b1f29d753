"""Deterministic online-store simulator with labelled injected anomalies.

Two pure functions make the store's data:

- :func:`simulate_catalog` builds categories, products and customers, plus the pools the traffic
  draws from (each customer's usual IPs and user agents, anonymous visitors' IPs, attackers' IPs,
  search queries, page URLs). It depends only on ``seed`` and the three catalog sizes, and it is the
  only place Faker runs.
- :func:`simulate_day` builds one day of orders, order items and user activities, and the
  ``simulation_labels`` that name every injected anomalous row. It is a function of
  (settings, day) alone: its generator is seeded from ``(seed, day ordinal)``, so a day rebuilt later
  is identical, row ids included; ids and session numbers follow time. Everything is vectorised
  with numpy; Python loops run over a few rejection rounds or anomaly kinds, never over rows.

Money is in currency units with cent precision (prices like ``38.99``): a normal order's total is
exactly the sum of its items' ``price * quantity`` rounded to cents.

Normal traffic (rules the detectors are measured against):

- Sessions group the consecutive actions of one visitor: one session id, one IP, one user agent,
  actions 3 s to 3 min apart. A session starts at a time drawn from a daily cycle (quiet at night,
  peaks around noon and 19-21 h) and ends before midnight.
- Every order is the last action of its customer's session: optionally a login, some browsing,
  then ``add_to_cart`` for each order line (sometimes each preceded by ``view_product``), then one
  ``purchase`` at the order's ``created_at`` carrying its total and id.
- Browsing sessions belong to a customer (from one of their 1-3 usual IPs and user agents) or to an
  anonymous visitor (customer_id NA, IP from the anonymous pool). A customer runs one session at a
  time, at least a minute after the previous one ends. Customers sometimes log in at the start,
  log out at the end, or update their profile. A login is rarely preceded by one mistyped
  password: one ``failed_login`` (anonymous, since nobody is authenticated yet) with the
  customer's email, then the successful ``login``. Normal traffic never contains a run of failed
  logins nor identical actions seconds apart.
- A day holds ``activities_per_day`` activities in total, injected ones included: browsing fills
  what orders and injected anomalies leave. Only if the orders alone need more actions than that
  (each order needs ``lines + 1``) is the total exceeded, with a warning.

Injected anomalies (each row listed in ``simulation_labels`` with its kind and an episode id
``"<date>:<kind>:<n>"`` unique across days; start times follow the daily cycle):

- ``order_high_total`` / ``order_low_total``: ``order_anomaly_rate`` of the day's orders
  (stochastically rounded) get an abnormal total, 70 % ``items' cost * U(10, 100)`` and 30 %
  ``U(0.1, 10)``; their items are unchanged. The purchase activity carries the same total; the order
  and its purchase activity are labelled with one episode.
- ``activity_burst``: 5-15 identical actions (one of view_product / add_to_cart / search with one
  product or query) in a session of their own, from one IP and user agent, 0.2-3 s apart, by a
  customer from one of their usual IPs or by an anonymous client from an attacker IP.
- ``failed_login_run``: 5-20 anonymous ``failed_login`` for one attempted email (80 % an existing
  customer's, 20 % made up) from one IP (80 % an attacker IP, otherwise one of the victim's usual
  IPs), 1-6 s apart.

For both activity kinds, episode sizes are drawn until their rows reach the rate times
``activities_per_day``; the last episode is kept with the probability that makes the expected row
count equal to that target. Rates of 0 inject nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from faker import Faker

from anomalens_dagster import constants

logger = logging.getLogger(__name__)

__all__ = [
    "DETAIL_COLUMNS",
    "DETAIL_KEYS",
    "DETAIL_KEYS_BY_ACTION",
    "Catalog",
    "SimulatedDay",
    "SimulationSettings",
    "TrafficPools",
    "day_id_base",
    "simulate_catalog",
    "simulate_day",
]

# --- Public vocabulary -----------------------------------------------------------------------------

# Keys of the `details` JSON; the frame holds each as the column "details_<key>".
DETAIL_KEYS = (
    "product_id",
    "product_name",
    "quantity",
    "query",
    "url",
    "success",
    "order_total",
    "attempted_email",
    "order_id",
)
DETAIL_COLUMNS = tuple(f"details_{key}" for key in DETAIL_KEYS)
DETAIL_KEYS_BY_ACTION: dict[str, tuple[str, ...]] = {
    "view_page": ("url",),
    "view_product": ("product_id", "product_name", "url"),
    "search": ("query", "url"),
    "add_to_cart": ("product_id", "product_name", "quantity"),
    "remove_from_cart": ("product_id", "product_name", "quantity"),
    "login": ("success",),
    "failed_login": ("success", "attempted_email"),
    "logout": (),
    "purchase": ("order_total", "order_id"),
    "update_profile": ("url",),
}

SIMULATION_BATCH_ACTIVITIES = 300_000
_ID_EPOCH = dt.date(2000, 1, 1)
_IDS_PER_DAY = 10**8
# A day's rows must fit its id range: an order needs up to 6 activities (5 add_to_carts and the
# purchase) and 5 items, and the activity sort key (µs of the day times sessions) must fit int64.
_MAX_ACTIVITIES_PER_DAY = 50_000_000
_MAX_ORDERS_PER_DAY = 8_000_000

# --- Traffic model parameters ---------------------------------------------------------------------

_US_PER_S = 1_000_000
_DAY_US = 86_400 * _US_PER_S
# Relative activity per hour of the day (UTC): quiet 2-5 h, lunch peak, evening peak 19-21 h.
_HOURLY_ACTIVITY_WEIGHTS = (
    0.9, 0.6, 0.4, 0.3, 0.3, 0.4, 0.7, 1.2, 1.8, 2.3, 2.6, 2.9,
    3.2, 3.1, 2.9, 2.8, 2.9, 3.1, 3.4, 3.8, 4.0, 3.6, 2.6, 1.6,
)  # fmt: skip

_ORDER_LINE_PROBS = (0.35, 0.30, 0.18, 0.11, 0.06)  # 1..5 lines
_QUANTITY_PROBS = (0.70, 0.20, 0.07, 0.02, 0.01)  # 1..5 units
_ORDER_STATUS_PROBS = {  # one per constants.ORDER_STATUSES
    "pending": 0.08,
    "processing": 0.14,
    "shipped": 0.24,
    "delivered": 0.48,
    "cancelled": 0.06,
}
_MIN_PRICE_DOLLARS = 13  # prices are whole dollars minus a cent, so at least 12.99 > any low total
_MAX_PRICE_DOLLARS = 2_500

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
_MIN_GAP_S = 3.0  # normal actions are never closer than this, so they never look like a burst
_MIN_SESSION_PAUSE_S = 60.0  # between two sessions of one customer, who never runs two at once
_MEDIAN_EXTRA_GAP_S = 15.0
_MAX_GAP_S = 180.0

_ABNORMAL_HIGH_SHARE = 0.7
_HIGH_TOTAL_FACTOR = (10.0, 100.0)
_LOW_TOTAL_RANGE = (0.1, 10.0)
_BURST_SIZE = (5, 15)
_BURST_GAP_S = (0.2, 3.0)
_BURST_ACTIONS = ("view_product", "add_to_cart", "search")
_BURST_BY_CUSTOMER_PROB = 0.5
_FAILED_RUN_SIZE = (5, 20)
_FAILED_RUN_GAP_S = (1.0, 6.0)
_FAILED_RUN_REAL_EMAIL_PROB = 0.8
_FAILED_RUN_ATTACKER_IP_PROB = 0.8
_SCRIPT_USER_AGENT_PROB = 0.5  # attackers' share of HTTP-library user agents

# --- Catalog vocabulary ---------------------------------------------------------------------------

_CATEGORY_VOCABULARY = (
    ("Electronics", ("Headphones", "Speaker", "Charger", "Smartwatch", "Keyboard", "Webcam")),
    ("Books", ("Novel", "Cookbook", "Biography", "Atlas", "Poetry Collection", "Graphic Novel")),
    ("Home & Kitchen", ("Kettle", "Frying Pan", "Knife Set", "Blender", "Mug Set", "Toaster")),
    ("Clothing", ("T-Shirt", "Rain Jacket", "Sweater", "Jeans", "Scarf", "Hoodie")),
    ("Shoes", ("Sneakers", "Boots", "Sandals", "Loafers", "Slippers", "Running Shoes")),
    ("Sports & Outdoors", ("Yoga Mat", "Tent", "Water Bottle", "Backpack", "Dumbbells", "Bike Light")),
    ("Beauty", ("Face Cream", "Shampoo", "Perfume", "Lipstick", "Serum", "Hair Dryer")),
    ("Toys & Games", ("Puzzle", "Board Game", "Building Set", "Plush Bear", "Kite", "Card Game")),
    ("Garden", ("Garden Hose", "Planter", "Pruning Shears", "Seed Kit", "Solar Lantern", "Rake")),
    ("Office", ("Desk Lamp", "Stapler", "Planner", "Pen Set", "Desk Organizer", "Office Chair")),
    ("Pet Supplies", ("Dog Bed", "Cat Tree", "Leash", "Pet Bowl", "Chew Toy", "Litter Box")),
    ("Grocery", ("Coffee Beans", "Green Tea", "Olive Oil", "Honey", "Granola", "Dark Chocolate")),
    ("Automotive", ("Car Charger", "Dash Cam", "Seat Cover", "Tire Inflator", "Wax Kit", "Floor Mats")),
    ("Health", ("Vitamins", "Thermometer", "First Aid Kit", "Massage Gun", "Scale", "Face Masks")),
    ("Music", ("Guitar Strings", "Ukulele", "Microphone", "Metronome", "Drum Sticks", "Capo")),
    ("Jewelry", ("Necklace", "Earrings", "Bracelet", "Ring", "Watch", "Pendant")),
)
_GENERIC_PRODUCT_NOUNS = ("Set", "Kit", "Bundle", "Pack", "Collection", "Essentials")
_PRODUCT_ADJECTIVES = (
    "Classic", "Compact", "Deluxe", "Essential", "Premium", "Everyday", "Pro", "Lite",
    "Signature", "Original", "Eco", "Travel", "Ultra", "Mini", "Family", "Vintage",
)  # fmt: skip
_STATIC_PAGES = (
    "/", "/deals", "/new-arrivals", "/bestsellers", "/cart", "/help/shipping", "/help/returns",
    "/help/faq", "/about", "/contact", "/gift-cards", "/stores",
)  # fmt: skip
_PROFILE_PAGES = (
    "/account/profile", "/account/addresses", "/account/password", "/account/notifications",
    "/account/payment-methods",
)  # fmt: skip
_SCRIPT_USER_AGENTS = (
    "python-requests/2.32.3", "curl/8.5.0", "Go-http-client/1.1", "okhttp/4.12.0",
    "Java/17.0.10", "python-httpx/0.27.0", "Scrapy/2.11.2 (+https://scrapy.org)",
)  # fmt: skip
_BROWSER_USER_AGENT_POOL_SIZE = 150
_BROWSER_MIX = (("chrome", 0.55), ("safari", 0.25), ("firefox", 0.15), ("opera", 0.05))
_CUSTOMER_POOL_COUNT_PROBS = (0.5, 0.35, 0.15)  # 1..3 usual IPs / user agents per customer
_CUSTOMER_SINCE = dt.datetime(2024, 1, 1)
_CUSTOMER_UNTIL = dt.datetime(2026, 1, 1)


# --- Data classes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationSettings:
    """Knobs of the simulator: a pure mirror of the Dagster ``SimulationConfig``."""

    seed: int = constants.DEFAULT_SEED
    num_categories: int = constants.DEFAULT_NUM_CATEGORIES
    num_products: int = constants.DEFAULT_NUM_PRODUCTS
    num_customers: int = constants.DEFAULT_NUM_CUSTOMERS
    orders_per_day: int = constants.DEFAULT_ORDERS_PER_DAY
    activities_per_day: int = constants.DEFAULT_ACTIVITIES_PER_DAY
    order_anomaly_rate: float = constants.DEFAULT_ORDER_ANOMALY_RATE
    burst_rate: float = constants.DEFAULT_BURST_RATE
    failed_login_rate: float = constants.DEFAULT_FAILED_LOGIN_RATE

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("num_categories", "num_products", "num_customers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.orders_per_day <= _MAX_ORDERS_PER_DAY:
            raise ValueError(f"orders_per_day must be in [0, {_MAX_ORDERS_PER_DAY:_}], got {self.orders_per_day}")
        if not 0 <= self.activities_per_day <= _MAX_ACTIVITIES_PER_DAY:
            raise ValueError(
                f"activities_per_day must be in [0, {_MAX_ACTIVITIES_PER_DAY:_}], got {self.activities_per_day}"
            )
        for name in ("order_anomaly_rate", "burst_rate", "failed_login_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.burst_rate + self.failed_login_rate > 1.0:
            raise ValueError(
                "burst_rate + failed_login_rate must be <= 1 (they are shares of the same day's "
                f"activities), got {self.burst_rate} + {self.failed_login_rate}"
            )


@dataclass(frozen=True, eq=False)
class TrafficPools:
    """What the day simulation draws from; built with the catalog, never written to the database.

    Each string lives once, in a pandas ``str`` array (``ip_addresses``, ``user_agents``, ``urls``…);
    the other fields hold int64 indices into them, so a day builds a whole string column with one
    ``take``. Customer ``i`` is row ``i`` of ``Catalog.customers`` (id ``i + 1``); product ``j``
    likewise. Numpy arrays are read-only.
    """

    ip_addresses: pd.api.extensions.ExtensionArray  # str, unique: customers', anonymous, attackers'
    customer_ips: np.ndarray  # int64 (num_customers, 3): their 1-3 usual IPs, padded by repetition
    customer_ip_counts: np.ndarray  # int64 (num_customers,)
    anonymous_ips: np.ndarray  # int64 indices of anonymous visitors' IPs
    attacker_ips: np.ndarray  # int64 indices of IPs used only by injected anomalies
    user_agents: pd.api.extensions.ExtensionArray  # str: browser user agents, then HTTP-library ones
    customer_user_agents: np.ndarray  # int64 (num_customers, 3), padded like customer_ips
    customer_user_agent_counts: np.ndarray  # int64 (num_customers,)
    browser_user_agents: np.ndarray  # int64 indices of browser user agents
    script_user_agents: np.ndarray  # int64 indices of HTTP-library user agents (attackers only)
    customer_cdf: np.ndarray  # float64 cumulative activity weight of the customers
    product_cdf: np.ndarray  # float64 cumulative popularity of the products
    product_names: pd.api.extensions.ExtensionArray  # str
    product_price_cents: np.ndarray  # int64
    search_queries: pd.api.extensions.ExtensionArray  # str
    search_cdf: np.ndarray  # float64 cumulative popularity of the queries
    urls: pd.api.extensions.ExtensionArray  # str: every URL an action can carry
    page_urls: np.ndarray  # int64 indices into urls of the pages `view_page` shows
    page_cdf: np.ndarray  # float64 cumulative popularity of those pages
    product_urls: np.ndarray  # int64 (num_products,): "/products/<id>-<slug>"
    search_urls: np.ndarray  # int64 (len(search_queries),): "/search?q=<query>"
    profile_urls: np.ndarray  # int64 indices of the pages `update_profile` submits
    login_emails: pd.api.extensions.ExtensionArray  # str: customers' emails (by index), made-up ones
    made_up_emails: np.ndarray  # int64 indices into login_emails of emails no customer has


@dataclass(frozen=True, eq=False)
class Catalog:
    """The store's slowly changing tables and the traffic pools; deterministic in the settings'
    seed and catalog sizes only."""

    categories: pd.DataFrame  # id int64 (1..n), name str, description str
    products: pd.DataFrame  # id int64, name str, description str, price float64, category_id int64
    # id int64, email str (unique), first_name str, last_name str, created_at datetime64[us] (UTC)
    customers: pd.DataFrame
    pools: TrafficPools


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


# --- Catalog --------------------------------------------------------------------------------------


def simulate_catalog(settings: SimulationSettings) -> Catalog:
    """Build categories, products, customers and the traffic pools for ``settings``.

    Each table has its own random stream derived from the seed, so changing the number of customers
    does not reprice products. Faker (seeded per stream) fills the name, email, IP and user-agent
    pools; numpy draws everything numeric.
    """
    streams = np.random.SeedSequence([settings.seed, 0]).spawn(4)
    fake = Faker("en_US")
    category_nouns, categories = _simulate_categories(settings, fake, streams[0])
    products = _simulate_products(settings, fake, streams[1], categories, category_nouns)
    customers = _simulate_customers(settings, fake, streams[2])
    pools = _simulate_pools(settings, fake, streams[3], categories, products, customers, category_nouns)
    logger.debug(
        "Simulated catalog: %d categories, %d products, %d customers",
        len(categories),
        len(products),
        len(customers),
    )
    return Catalog(categories=categories, products=products, customers=customers, pools=pools)


def _seed_faker(fake: Faker, stream: np.random.SeedSequence) -> None:
    fake.seed_instance(int(stream.generate_state(1)[0]))


def _simulate_categories(
    settings: SimulationSettings, fake: Faker, stream: np.random.SeedSequence
) -> tuple[list[tuple[str, ...]], pd.DataFrame]:
    _seed_faker(fake, stream)
    n = settings.num_categories
    names = [name for name, _ in _CATEGORY_VOCABULARY[:n]]
    nouns = [noun_list for _, noun_list in _CATEGORY_VOCABULARY[:n]]
    while len(names) < n:  # more categories than the curated vocabulary: invent some
        name = f"{fake.word().title()} {fake.word().title()}"
        if name not in names:
            names.append(name)
            nouns.append(_GENERIC_PRODUCT_NOUNS)
    descriptions = [fake.sentence(nb_words=10) for _ in range(n)]
    categories = pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "name": pd.array(names, dtype="str"),
            "description": pd.array(descriptions, dtype="str"),
        }
    )
    return nouns, categories


def _simulate_products(
    settings: SimulationSettings,
    fake: Faker,
    stream: np.random.SeedSequence,
    categories: pd.DataFrame,
    category_nouns: list[tuple[str, ...]],
) -> pd.DataFrame:
    _seed_faker(fake, stream)
    rng = np.random.default_rng(stream)
    n = settings.num_products
    category_index = rng.integers(0, len(categories), size=n)
    brands = [fake.last_name() for _ in range(min(n, 60))]
    brand = rng.integers(0, len(brands), size=n)
    adjective = rng.integers(0, len(_PRODUCT_ADJECTIVES), size=n)
    noun_pick = rng.random(n)
    names = []
    for category, brand_index, adjective_index, u in zip(category_index, brand, adjective, noun_pick, strict=True):
        nouns = category_nouns[category]
        names.append(f"{brands[brand_index]} {_PRODUCT_ADJECTIVES[adjective_index]} {nouns[int(u * len(nouns))]}")
    descriptions = [fake.sentence(nb_words=12) for _ in range(n)]
    # Whole dollars minus a cent (38.99), lognormal around 40.
    dollars = np.round(rng.lognormal(np.log(40.0), 0.85, size=n))
    price_cents = np.clip(dollars, _MIN_PRICE_DOLLARS, _MAX_PRICE_DOLLARS).astype(np.int64) * 100 - 1
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "name": pd.array(names, dtype="str"),
            "description": pd.array(descriptions, dtype="str"),
            "price": price_cents / 100.0,
            "category_id": category_index.astype(np.int64) + 1,
        }
    )


def _ascii_letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower()) or "user"


def _simulate_customers(settings: SimulationSettings, fake: Faker, stream: np.random.SeedSequence) -> pd.DataFrame:
    _seed_faker(fake, stream)
    rng = np.random.default_rng(stream)
    n = settings.num_customers
    # Faker fills name pools; numpy combines them (Faker's weighted name lookup is slow per call).
    first_pool = np.array([fake.first_name() for _ in range(min(n, 600))], dtype=object)
    last_pool = np.array([fake.last_name() for _ in range(min(n, 900))], dtype=object)
    domain_pool = sorted({fake.free_email_domain() for _ in range(30)})
    first = first_pool[rng.integers(0, len(first_pool), size=n)]
    last = last_pool[rng.integers(0, len(last_pool), size=n)]
    domain = rng.integers(0, len(domain_pool), size=n)
    style = rng.integers(0, 4, size=n)
    local_parts = []
    for first_name, last_name, local_style in zip(first, last, style, strict=True):
        given, family = _ascii_letters(first_name), _ascii_letters(last_name)
        options = (f"{given}.{family}", f"{given[0]}{family}", f"{given}_{family}", f"{family}.{given}")
        local_parts.append(options[local_style])
    # Local parts never contain digits, so numbering repeats keeps every email unique.
    local_parts = pd.Series(local_parts, dtype=object)
    repeat = local_parts.groupby([local_parts, pd.Series(domain)]).cumcount().to_numpy()
    emails = [
        f"{local}{r + 1 if r else ''}@{domain_pool[d]}" for local, r, d in zip(local_parts, repeat, domain, strict=True)
    ]
    since_us = int(np.datetime64(_CUSTOMER_SINCE, "us").astype(np.int64))
    until_us = int(np.datetime64(_CUSTOMER_UNTIL, "us").astype(np.int64))
    created_s = np.sort(rng.integers(since_us // _US_PER_S, until_us // _US_PER_S, size=n))
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "email": pd.array(emails, dtype="str"),
            "first_name": pd.array(first, dtype="str"),
            "last_name": pd.array(last, dtype="str"),
            "created_at": (created_s * _US_PER_S).astype("datetime64[us]"),
        }
    )


def _unique_ips(fake: Faker, count: int) -> list[str]:
    ips: dict[str, None] = {}
    while len(ips) < count:
        ips.update(dict.fromkeys(fake.ipv4_public() for _ in range(count - len(ips))))
    return list(ips)


def _zipf_cdf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Cumulative weights of ``n`` items whose popularity follows a shuffled Zipf law."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return _frozen(np.cumsum(rng.permutation(weights)))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _padded_picks(rng: np.random.Generator, counts: np.ndarray, pool_size: int) -> np.ndarray:
    """(n, 3) random indices into a pool, columns beyond a row's count repeating its first pick."""
    picks = rng.integers(0, pool_size, size=(len(counts), 3))
    picks[counts < 2, 1] = picks[counts < 2, 0]
    picks[counts < 3, 2] = picks[counts < 3, 0]
    return picks


def _simulate_pools(
    settings: SimulationSettings,
    fake: Faker,
    stream: np.random.SeedSequence,
    categories: pd.DataFrame,
    products: pd.DataFrame,
    customers: pd.DataFrame,
    category_nouns: list[tuple[str, ...]],
) -> TrafficPools:
    _seed_faker(fake, stream)
    rng = np.random.default_rng(stream)
    n_customers = settings.num_customers
    customer_emails = set(customers["email"])

    # IPs: each customer's usual ones (their own), anonymous visitors', attackers'; all distinct.
    ip_counts = rng.choice(np.arange(1, 4), size=n_customers, p=_CUSTOMER_POOL_COUNT_PROBS)
    n_customer_ips = int(ip_counts.sum())
    n_anonymous_ips = max(200, n_customers)
    n_attacker_ips = max(10, n_customers // 30)
    ips = _unique_ips(fake, n_customer_ips + n_anonymous_ips + n_attacker_ips)
    first_ip = np.cumsum(ip_counts) - ip_counts
    offsets = np.minimum(np.arange(3), ip_counts[:, None] - 1)
    customer_ips = first_ip[:, None] + offsets
    anonymous_ips = np.arange(n_customer_ips, n_customer_ips + n_anonymous_ips)
    attacker_ips = np.arange(n_customer_ips + n_anonymous_ips, len(ips))

    # User agents: a pool of browsers shared by everyone, HTTP libraries for attackers only.
    browsers, shares = zip(*_BROWSER_MIX, strict=True)
    kinds = rng.choice(len(browsers), size=_BROWSER_USER_AGENT_POOL_SIZE, p=shares)
    browser_agents = list(dict.fromkeys(getattr(fake, browsers[k])() for k in kinds))
    user_agents = browser_agents + list(_SCRIPT_USER_AGENTS)
    ua_counts = rng.choice(np.arange(1, 4), size=n_customers, p=_CUSTOMER_POOL_COUNT_PROBS)
    customer_user_agents = _padded_picks(rng, ua_counts, len(browser_agents))

    # Search queries: product nouns, adjective + noun, category names and some everyday words.
    nouns = sorted({noun.lower() for noun_list in category_nouns for noun in noun_list})
    queries = dict.fromkeys(nouns)
    queries.update(dict.fromkeys(name.lower() for name in categories["name"]))
    for adjective_index, noun_index in zip(
        rng.integers(0, len(_PRODUCT_ADJECTIVES), size=120),
        rng.integers(0, len(nouns), size=120),
        strict=True,
    ):
        queries[f"{_PRODUCT_ADJECTIVES[adjective_index].lower()} {nouns[noun_index]}"] = None
    queries.update(dict.fromkeys(f"{fake.word()} {rng.choice(nouns)}" for _ in range(60)))
    search_queries = list(queries)
    search_urls = ["/search?q=" + q.replace("&", "%26").replace(" ", "+") for q in search_queries]

    page_urls = list(_STATIC_PAGES)
    page_urls += [f"/category/{_slug(name)}" for name in categories["name"]]
    page_urls = list(dict.fromkeys(page_urls + [f"/blog/{fake.slug()}" for _ in range(15)]))
    product_urls = [
        f"/products/{pid}-{_slug(name)}" for pid, name in zip(products["id"], products["name"], strict=True)
    ]
    url_groups = (page_urls, product_urls, search_urls, list(_PROFILE_PAGES))
    url_starts = np.cumsum([0] + [len(group) for group in url_groups])
    page_index, product_index, search_index, profile_index = (
        _frozen(np.arange(start, start + len(group), dtype=np.int64))
        for start, group in zip(url_starts, url_groups, strict=False)
    )

    # Emails no customer has, for credential stuffing against accounts that do not exist.
    made_up_emails: dict[str, None] = {}
    while len(made_up_emails) < max(20, n_customers // 10):
        email = fake.free_email()
        if email not in customer_emails:
            made_up_emails[email] = None
    login_emails = customers["email"].tolist() + list(made_up_emails)

    return TrafficPools(
        ip_addresses=pd.array(ips, dtype="str"),
        customer_ips=_frozen(customer_ips.astype(np.int64)),
        customer_ip_counts=_frozen(ip_counts.astype(np.int64)),
        anonymous_ips=_frozen(anonymous_ips.astype(np.int64)),
        attacker_ips=_frozen(attacker_ips.astype(np.int64)),
        user_agents=pd.array(user_agents, dtype="str"),
        customer_user_agents=_frozen(customer_user_agents.astype(np.int64)),
        customer_user_agent_counts=_frozen(ua_counts.astype(np.int64)),
        browser_user_agents=_frozen(np.arange(len(browser_agents), dtype=np.int64)),
        script_user_agents=_frozen(np.arange(len(browser_agents), len(user_agents), dtype=np.int64)),
        customer_cdf=_frozen(np.cumsum(rng.lognormal(0.0, 1.0, size=n_customers))),
        product_cdf=_zipf_cdf(rng, len(products), 0.8),
        product_names=pd.array(products["name"], dtype="str"),
        product_price_cents=_frozen(np.round(products["price"].to_numpy() * 100).astype(np.int64)),
        search_queries=pd.array(search_queries, dtype="str"),
        search_cdf=_zipf_cdf(rng, len(search_queries), 1.0),
        urls=pd.array([url for group in url_groups for url in group], dtype="str"),
        page_urls=page_index,
        # The home page is where most visits land.
        page_cdf=_frozen(np.cumsum([8.0 if url == "/" else 1.0 for url in page_urls])),
        product_urls=product_index,
        search_urls=search_index,
        profile_urls=profile_index,
        login_emails=pd.array(login_emails, dtype="str"),
        made_up_emails=_frozen(np.arange(n_customers, len(login_emails), dtype=np.int64)),
    )


# --- Day ------------------------------------------------------------------------------------------

_ACTION_CODE = {name: code for code, name in enumerate(constants.ACTION_TYPES)}
_VIEW_PAGE = _ACTION_CODE["view_page"]
_VIEW_PRODUCT = _ACTION_CODE["view_product"]
_SEARCH = _ACTION_CODE["search"]
_ADD_TO_CART = _ACTION_CODE["add_to_cart"]
_REMOVE_FROM_CART = _ACTION_CODE["remove_from_cart"]
_LOGIN = _ACTION_CODE["login"]
_FAILED_LOGIN = _ACTION_CODE["failed_login"]
_LOGOUT = _ACTION_CODE["logout"]
_PURCHASE = _ACTION_CODE["purchase"]
_UPDATE_PROFILE = _ACTION_CODE["update_profile"]

_ORDER_SESSION, _CUSTOMER_SESSION, _ANONYMOUS_SESSION = 0, 1, 2
# Injected kinds are numbered by their position in constants.ANOMALY_KINDS.
_KIND_CODE = {kind: code for code, kind in enumerate(constants.ANOMALY_KINDS)}


@dataclass(frozen=True, eq=False)
class _Orders:
    """A day's orders in draw order (index ``o``) and their lines (index ``line``)."""

    customer: np.ndarray
    status: np.ndarray  # index into constants.ORDER_STATUSES
    total: np.ndarray
    anomaly_kind: np.ndarray  # code in _KIND_CODE, -1 for a normal order
    n_lines: np.ndarray
    line_start: np.ndarray
    line_order: np.ndarray
    line_product: np.ndarray
    line_quantity: np.ndarray
    line_price_cents: np.ndarray


@dataclass(frozen=True, eq=False)
class _Sessions:
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


@dataclass(frozen=True, eq=False)
class _Rows:
    """Activities before they are timed and numbered: grouped by session, in session order.

    ``subject`` is what the action is about, read according to its code: a product index
    (view_product, add_to_cart, remove_from_cart), a search query index (search), an index into
    ``TrafficPools.urls`` (view_page, update_profile), an index into ``TrafficPools.login_emails``
    (failed_login), the order's index (purchase), -1 otherwise. One field instead of five keeps
    sorting the rows cheap.
    """

    session: np.ndarray
    gap_us: np.ndarray  # time since the session's previous action, 0 for its first
    code: np.ndarray  # index into constants.ACTION_TYPES
    customer: np.ndarray  # -1: anonymous
    ip: np.ndarray
    user_agent: np.ndarray
    subject: np.ndarray
    quantity: np.ndarray  # 0: none
    kind: np.ndarray  # injected anomaly kind code, -1: normal

    def __len__(self) -> int:
        return len(self.code)


def simulate_days(
    settings: SimulationSettings,
    days: Sequence[dt.date],
    catalog: Catalog,
    batch_activities: int = SIMULATION_BATCH_ACTIVITIES,
) -> Iterator[SimulatedDay]:
    """The days simulated one by one, yielded in batches of consecutive days.

    A batch holds whole days and about `batch_activities` activities (at least one day), its frames
    concatenated: a writer then inserts a few large frames instead of one small frame per day, which
    measured 1.7 times faster into DuckDB, while memory stays bounded by the batch.
    """
    batch: list[SimulatedDay] = []
    for day in days:
        batch.append(simulate_day(settings, day, catalog))
        if sum(len(simulated.user_activities) for simulated in batch) >= batch_activities:
            yield _concatenated(batch)
            batch = []
    if batch:
        yield _concatenated(batch)


def _concatenated(days: list[SimulatedDay]) -> SimulatedDay:
    return SimulatedDay(
        *(pd.concat([getattr(day, field.name) for day in days], ignore_index=True) for field in fields(SimulatedDay))
    )


def simulate_day(settings: SimulationSettings, day: dt.date, catalog: Catalog) -> SimulatedDay:
    """Simulate one day of orders, order items and user activities, with labelled anomalies.

    Deterministic in (settings, day): same inputs give identical frames and ids. See the module
    docstring for the traffic model and the injected anomalies.
    """
    _check_catalog(settings, catalog)
    pools = catalog.pools
    base = day_id_base(day)
    order_rng, session_rng, burst_rng, run_rng, time_rng = (
        np.random.default_rng(stream) for stream in np.random.SeedSequence([settings.seed, day.toordinal()]).spawn(5)
    )
    orders = _draw_orders(order_rng, settings, pools)
    bursts = _draw_bursts(burst_rng, settings, pools)
    runs = _draw_failed_login_runs(run_rng, settings, pools)
    normal_budget = max(settings.activities_per_day - len(bursts) - len(runs), 0)
    sessions = _plan_sessions(session_rng, orders, normal_budget, pools)
    normal = _expand_sessions(session_rng, sessions, orders, pools)
    rows = _concat_rows([normal, bursts, runs])
    # Injected episodes belong to nobody: a bot may act while the account's owner browses.
    session_owner = np.concatenate(
        [sessions.customer, np.full(_n_sessions(bursts) + _n_sessions(runs), -1, dtype=np.int64)]
    )
    n_sessions = len(session_owner)
    t_us, session_start = _place_in_day(time_rng, rows, session_owner)
    session_rank = _rank(session_start)
    # Rows ordered by time, ties by session. The key is unique (a session's actions are strictly
    # increasing in time) and fits int64: t_us < 8.64e10 and fewer than 5e7 sessions.
    chronological = np.argsort(t_us * max(n_sessions, 1) + session_rank[rows.session])
    rows = _take_rows(rows, chronological)
    t_us = t_us[chronological]
    day_frames = _assemble(day, base, rows, t_us, session_rank, orders, pools)
    logger.debug(
        "Simulated %s: %d orders, %d activities in %d sessions, %d labels",
        day.isoformat(),
        len(day_frames.orders),
        len(day_frames.user_activities),
        n_sessions,
        len(day_frames.simulation_labels),
    )
    return day_frames


def _check_catalog(settings: SimulationSettings, catalog: Catalog) -> None:
    sizes = (len(catalog.categories), len(catalog.products), len(catalog.customers))
    wanted = (settings.num_categories, settings.num_products, settings.num_customers)
    if sizes != wanted:
        raise ValueError(
            f"catalog has {sizes} categories/products/customers but the settings ask for {wanted}; "
            "build it with simulate_catalog(settings) from the same settings"
        )


# --- Random helpers -------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    """``size`` indices drawn with the weights whose cumulative sum is ``cdf``."""
    picks = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    return np.minimum(picks, len(cdf) - 1)


def _pick_from(rng: np.random.Generator, pool: np.ndarray, size: int) -> np.ndarray:
    return pool[rng.integers(0, len(pool), size=size)]


def _usual(rng: np.random.Generator, table: np.ndarray, counts: np.ndarray, who: np.ndarray) -> np.ndarray:
    """One of each customer's 1-3 usual IPs or user agents (``who`` must be valid customer indices)."""
    column = (rng.random(len(who)) * counts[who]).astype(np.int64)
    return table[who, column]


def _stochastic_round(rng: np.random.Generator, x: float) -> int:
    """``floor(x)`` or ``ceil(x)``, with the probabilities that make its expectation ``x``."""
    whole = int(np.floor(x))
    return whole + int(rng.random() < x - whole)


def _episode_sizes(rng: np.random.Generator, target_rows: float, low: int, high: int) -> np.ndarray:
    """Episode sizes in [low, high] whose sum is ``target_rows`` in expectation (and within ``high``)."""
    if target_rows <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = rng.integers(low, high + 1, size=int(target_rows // low) + 2)
    reached = np.concatenate([[0], np.cumsum(sizes)])
    k = int(np.searchsorted(reached, target_rows, side="right")) - 1  # reached[k] <= target < reached[k+1]
    k += int(rng.random() < (target_rows - reached[k]) / sizes[k])
    return sizes[:k]


def _time_of_day_us(rng: np.random.Generator, size: int) -> np.ndarray:
    """Microseconds after midnight, following the daily activity cycle."""
    hour = _pick(rng, np.cumsum(_HOURLY_ACTIVITY_WEIGHTS), size)
    return hour * 3600 * _US_PER_S + rng.integers(0, 3600 * _US_PER_S, size=size)


def _rank(values: np.ndarray) -> np.ndarray:
    """Rank (0-based) of each value, ties broken by position."""
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks


# --- Orders ---------------------------------------------------------------------------------------


def _draw_orders(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> _Orders:
    """Orders of 1-5 distinct products, mostly 1-3 units each; some get an abnormal total."""
    n = settings.orders_per_day
    n_products = len(pools.product_cdf)
    max_lines = min(len(_ORDER_LINE_PROBS), n_products)
    line_probs = np.array(_ORDER_LINE_PROBS[:max_lines])
    n_lines = rng.choice(np.arange(1, max_lines + 1), size=n, p=line_probs / line_probs.sum())
    line_start = np.cumsum(n_lines) - n_lines
    line_order = np.repeat(np.arange(n), n_lines)
    line_product = _distinct_products(rng, line_order, line_start, pools.product_cdf)
    line_quantity = rng.choice(np.arange(1, len(_QUANTITY_PROBS) + 1), size=len(line_order), p=_QUANTITY_PROBS)
    line_price_cents = pools.product_price_cents[line_product]
    # Whole cents summed exactly, then divided once: the total is the nearest float to the sum.
    cost = np.bincount(line_order, weights=line_price_cents * line_quantity, minlength=n) / 100.0
    total = cost.copy()

    anomaly_kind = np.full(n, -1, dtype=np.int64)
    abnormal = rng.choice(n, size=_stochastic_round(rng, settings.order_anomaly_rate * n), replace=False)
    high = rng.random(len(abnormal)) < _ABNORMAL_HIGH_SHARE
    high_orders, low_orders = abnormal[high], abnormal[~high]
    total[high_orders] = np.round(cost[high_orders] * rng.uniform(*_HIGH_TOTAL_FACTOR, size=len(high_orders)), 2)
    total[low_orders] = np.round(rng.uniform(*_LOW_TOTAL_RANGE, size=len(low_orders)), 2)
    anomaly_kind[high_orders] = _KIND_CODE[constants.ANOMALY_KIND_HIGH_TOTAL]
    anomaly_kind[low_orders] = _KIND_CODE[constants.ANOMALY_KIND_LOW_TOTAL]

    status_probs = [_ORDER_STATUS_PROBS[status] for status in constants.ORDER_STATUSES]
    status = rng.choice(len(status_probs), size=n, p=status_probs)
    return _Orders(
        customer=_pick(rng, pools.customer_cdf, n),
        status=status,
        total=total,
        anomaly_kind=anomaly_kind,
        n_lines=n_lines,
        line_start=line_start,
        line_order=line_order,
        line_product=line_product,
        line_quantity=line_quantity,
        line_price_cents=line_price_cents,
    )


def _distinct_products(
    rng: np.random.Generator, line_order: np.ndarray, line_start: np.ndarray, product_cdf: np.ndarray
) -> np.ndarray:
    """Products by popularity, redrawn where an order would list one product twice."""
    n_products = len(product_cdf)
    product = _pick(rng, product_cdf, len(line_order))
    for _ in range(20):
        key = line_order * n_products + product
        by_key = np.argsort(key, kind="stable")
        repeated = by_key[1:][key[by_key][1:] == key[by_key][:-1]]
        if repeated.size == 0:
            return product
        product[repeated] = _pick(rng, product_cdf, repeated.size)
    # Tiny catalogs with steep popularity: consecutive products from each order's first one.
    line_no = np.arange(len(line_order)) - line_start[line_order]
    return (product[line_start[line_order]] + line_no) % n_products


# --- Normal sessions ------------------------------------------------------------------------------


def _plan_sessions(rng: np.random.Generator, orders: _Orders, budget: int, pools: TrafficPools) -> _Sessions:
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

    browse_length = _browse_session_lengths(rng, budget - int(order_length.sum()))
    n_browse = len(browse_length)
    anonymous = rng.random(n_browse) < _ANONYMOUS_SESSION_SHARE
    b_customer = np.where(anonymous, -1, _pick(rng, pools.customer_cdf, n_browse))
    b_login = ~anonymous & (rng.random(n_browse) < _LOGIN_PROB)
    b_typo = b_login & (browse_length >= 2) & (rng.random(n_browse) < _TYPO_PROB)
    head = b_login.astype(np.int64) + b_typo
    b_logout = ~anonymous & (browse_length > head) & (rng.random(n_browse) < _LOGOUT_PROB)
    body = browse_length - head - b_logout
    profile = ~anonymous & (body >= 1) & (rng.random(n_browse) < _PROFILE_UPDATE_PROB)
    profile_pos = np.where(profile, head + (rng.random(n_browse) * body).astype(np.int64), -1)

    customer = np.concatenate([orders.customer, b_customer])
    known = customer >= 0
    who = np.maximum(customer, 0)
    ip = np.where(
        known,
        _usual(rng, pools.customer_ips, pools.customer_ip_counts, who),
        _pick_from(rng, pools.anonymous_ips, len(customer)),
    )
    user_agent = np.where(
        known,
        _usual(rng, pools.customer_user_agents, pools.customer_user_agent_counts, who),
        _pick_from(rng, pools.browser_user_agents, len(customer)),
    )
    zeros = np.zeros(n_browse, dtype=np.int64)
    return _Sessions(
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
    codes = np.array([_ACTION_CODE[name] for name in probs])
    thresholds = np.cumsum(list(probs.values()))[:-1] / sum(probs.values())
    index = np.zeros(len(u), dtype=np.int64)
    for threshold in thresholds:
        index += u >= threshold
    return codes[index]


def _expand_sessions(rng: np.random.Generator, sessions: _Sessions, orders: _Orders, pools: TrafficPools) -> _Rows:
    """One row per action of the normal sessions.

    Layout of a session: [failed_login] [login] browsing... [update_profile somewhere in it]
    then, for an order, ([view_product] add_to_cart) per line and the purchase; for a customer's
    browsing session maybe a final logout.
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
    is_typo = (typo == 1) & (pos == 0)
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
    code[is_typo] = _FAILED_LOGIN
    code[is_login] = _LOGIN
    code[is_profile] = _UPDATE_PROFILE
    code[is_logout] = _LOGOUT
    code[is_cart] = _ADD_TO_CART
    code[is_cart_view] = _VIEW_PRODUCT
    code[is_purchase] = _PURCHASE

    subject = np.full(n, -1, dtype=np.int64)
    quantity = np.zeros(n, dtype=np.int64)
    browse_product = is_browsing & ((code == _VIEW_PRODUCT) | (code == _ADD_TO_CART) | (code == _REMOVE_FROM_CART))
    subject[browse_product] = _pick(rng, pools.product_cdf, np.count_nonzero(browse_product))
    # A removal takes out the session's latest addition; with nothing added it is a product view.
    latest_add = np.maximum.accumulate(np.where(code == _ADD_TO_CART, np.arange(n), -1))
    removal = is_browsing & (code == _REMOVE_FROM_CART)
    valid_removal = removal & (latest_add >= first)
    code[removal & ~valid_removal] = _VIEW_PRODUCT
    # Adding right after viewing adds the viewed product.
    add_after_view = (
        np.flatnonzero(is_browsing[1:] & (code[1:] == _ADD_TO_CART) & (code[:-1] == _VIEW_PRODUCT) & (pos[1:] > 0)) + 1
    )
    subject[add_after_view] = subject[add_after_view - 1]
    browse_add = is_browsing & (code == _ADD_TO_CART)
    quantity[browse_add] = rng.choice(
        np.arange(1, len(_QUANTITY_PROBS) + 1), size=np.count_nonzero(browse_add), p=_QUANTITY_PROBS
    )
    subject[valid_removal] = subject[latest_add[valid_removal]]
    quantity[valid_removal] = quantity[latest_add[valid_removal]]

    order = sessions.order[session]
    cart = np.flatnonzero(is_cart)
    line = orders.line_start[order[cart]] + in_cart[cart] // (1 + view_before_add[cart])
    subject[cart] = orders.line_product[line]
    cart_add = ~is_cart_view[cart]
    quantity[cart[cart_add]] = orders.line_quantity[line[cart_add]]
    # A product viewed right before the cart is the first product added.
    viewed_then_added = cart[(in_cart[cart] == 0) & cart_add & (pos[cart] > 0)]
    viewed_then_added = viewed_then_added[code[viewed_then_added - 1] == _VIEW_PRODUCT]
    subject[viewed_then_added - 1] = subject[viewed_then_added]
    subject[is_purchase] = order[is_purchase]

    is_search = code == _SEARCH
    subject[is_search] = _pick(rng, pools.search_cdf, np.count_nonzero(is_search))
    is_page = code == _VIEW_PAGE
    subject[is_page] = pools.page_urls[_pick(rng, pools.page_cdf, np.count_nonzero(is_page))]
    subject[is_profile] = _pick_from(rng, pools.profile_urls, np.count_nonzero(is_profile))

    customer = sessions.customer[session]
    # Nobody is authenticated by a failed login: it is anonymous, with the customer's email typed.
    subject[is_typo] = customer[is_typo]
    customer[is_typo] = -1
    gap_s = np.minimum(_MIN_GAP_S + rng.lognormal(np.log(_MEDIAN_EXTRA_GAP_S), 0.9, size=n), _MAX_GAP_S)
    gap_us = (gap_s * _US_PER_S).astype(np.int64)
    gap_us[pos == 0] = 0
    return _Rows(
        session=session,
        gap_us=gap_us,
        code=code,
        customer=customer,
        ip=sessions.ip[session],
        user_agent=sessions.user_agent[session],
        subject=subject,
        quantity=quantity,
        kind=np.full(n, -1, dtype=np.int64),
    )


# --- Injected activity anomalies ------------------------------------------------------------------


def _attacker_user_agents(rng: np.random.Generator, pools: TrafficPools, size: int) -> np.ndarray:
    return np.where(
        rng.random(size) < _SCRIPT_USER_AGENT_PROB,
        _pick_from(rng, pools.script_user_agents, size),
        _pick_from(rng, pools.browser_user_agents, size),
    )


def _episode_rows(
    rng: np.random.Generator, sizes: np.ndarray, gap_s: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Episode index of each row, and each row's gap to the episode's previous row."""
    episode = np.repeat(np.arange(len(sizes)), sizes)
    pos = np.arange(len(episode)) - (np.cumsum(sizes) - sizes)[episode]
    gap_us = (rng.uniform(*gap_s, size=len(episode)) * _US_PER_S).astype(np.int64)
    gap_us[pos == 0] = 0
    return episode, gap_us


def _draw_bursts(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> _Rows:
    """Bursts of 5-15 identical actions from one IP, 0.2-3 s apart, each in a session of its own."""
    sizes = _episode_sizes(rng, settings.burst_rate * settings.activities_per_day, *_BURST_SIZE)
    n = len(sizes)
    action = np.array([_ACTION_CODE[name] for name in _BURST_ACTIONS])[rng.integers(0, len(_BURST_ACTIONS), size=n)]
    by_customer = rng.random(n) < _BURST_BY_CUSTOMER_PROB
    customer = np.where(by_customer, _pick(rng, pools.customer_cdf, n), -1)
    who = np.maximum(customer, 0)
    ip = np.where(
        by_customer,
        _usual(rng, pools.customer_ips, pools.customer_ip_counts, who),
        _pick_from(rng, pools.attacker_ips, n),
    )
    user_agent = np.where(
        by_customer,
        _usual(rng, pools.customer_user_agents, pools.customer_user_agent_counts, who),
        _attacker_user_agents(rng, pools, n),
    )
    subject = np.where(action == _SEARCH, _pick(rng, pools.search_cdf, n), _pick(rng, pools.product_cdf, n))
    quantity = np.where(action == _ADD_TO_CART, 1, 0)
    episode, gap_us = _episode_rows(rng, sizes, _BURST_GAP_S)
    return _Rows(
        session=episode,
        gap_us=gap_us,
        code=action[episode],
        customer=customer[episode],
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=subject[episode],
        quantity=quantity[episode],
        kind=np.full(len(episode), _KIND_CODE[constants.ANOMALY_KIND_BURST], dtype=np.int64),
    )


def _draw_failed_login_runs(rng: np.random.Generator, settings: SimulationSettings, pools: TrafficPools) -> _Rows:
    """Runs of 5-20 anonymous failed logins for one email from one IP, 1-6 s apart."""
    sizes = _episode_sizes(rng, settings.failed_login_rate * settings.activities_per_day, *_FAILED_RUN_SIZE)
    n = len(sizes)
    real = rng.random(n) < _FAILED_RUN_REAL_EMAIL_PROB
    victim = rng.integers(0, len(pools.customer_cdf), size=n)
    email = np.where(real, victim, _pick_from(rng, pools.made_up_emails, n))
    from_attacker = ~real | (rng.random(n) < _FAILED_RUN_ATTACKER_IP_PROB)
    ip = np.where(
        from_attacker,
        _pick_from(rng, pools.attacker_ips, n),
        _usual(rng, pools.customer_ips, pools.customer_ip_counts, victim),
    )
    user_agent = np.where(
        from_attacker,
        _attacker_user_agents(rng, pools, n),
        _usual(rng, pools.customer_user_agents, pools.customer_user_agent_counts, victim),
    )
    episode, gap_us = _episode_rows(rng, sizes, _FAILED_RUN_GAP_S)
    return _Rows(
        session=episode,
        gap_us=gap_us,
        code=np.full(len(episode), _FAILED_LOGIN, dtype=np.int64),
        customer=np.full(len(episode), -1, dtype=np.int64),
        ip=ip[episode],
        user_agent=user_agent[episode],
        subject=email[episode],
        quantity=np.zeros(len(episode), dtype=np.int64),
        kind=np.full(len(episode), _KIND_CODE[constants.ANOMALY_KIND_FAILED_LOGINS], dtype=np.int64),
    )


# --- Timing, numbering and frames -----------------------------------------------------------------


def _row_fields() -> tuple[str, ...]:
    return tuple(_Rows.__dataclass_fields__)


def _n_sessions(rows: _Rows) -> int:
    return int(rows.session[-1]) + 1 if len(rows) else 0


def _concat_rows(parts: list[_Rows]) -> _Rows:
    """Concatenate row sets, renumbering their sessions so they stay distinct and contiguous."""
    offsets = np.cumsum([0] + [_n_sessions(p) for p in parts])
    columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _row_fields()}
    columns["session"] = np.concatenate([p.session + offset for p, offset in zip(parts, offsets, strict=False)])
    return _Rows(**columns)


def _take_rows(rows: _Rows, index: np.ndarray) -> _Rows:
    return _Rows(**{name: getattr(rows, name)[index] for name in _row_fields()})


def _place_in_day(rng: np.random.Generator, rows: _Rows, session_owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (µs after midnight) of the rows and the start of each session.

    Sessions start at times from the daily cycle, then are fitted into the day (see
    :func:`_fit_sessions_in_day`).
    """
    n_sessions = len(session_owner)
    length = np.bincount(rows.session, minlength=n_sessions)
    first = np.cumsum(length) - length
    elapsed = np.cumsum(rows.gap_us)
    offset = elapsed - elapsed[first][rows.session]
    duration = offset[first + length - 1] if len(rows) else np.zeros(0, dtype=np.int64)
    start = _fit_sessions_in_day(_time_of_day_us(rng, n_sessions), duration, session_owner)
    return start[rows.session] + offset, start


def _fit_sessions_in_day(start: np.ndarray, duration: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Move session starts so that every session ends before midnight and a customer's sessions
    never overlap, a pause apart. Anonymous and injected sessions (owner -1) only move earlier
    when they would cross midnight.

    A customer's sessions, in start order, are first delayed, ``new_i = max(start_i, new_{i-1} +
    busy_{i-1})`` with ``busy = duration + pause``, then moved earlier from the last one back where
    they would cross midnight (or collide with the next one so moved). Unrolled, each pass is a grouped running max (min) over
    ``start_j - B_j``, ``B`` being the busy time of the customer's earlier sessions. Only a
    customer busy for more than a whole day ends up with overlapping sessions.
    """
    latest = _DAY_US - 1 - duration
    fitted = _fold_before(start, latest)
    known = np.flatnonzero(owner >= 0)
    order = known[np.lexsort((start[known], owner[known]))]
    customer = owner[order]
    busy = duration[order] + int(_MIN_SESSION_PAUSE_S * _US_PER_S)
    busy_before = pd.Series(busy).groupby(customer).cumsum().to_numpy() - busy
    delayed = busy_before + pd.Series(start[order] - busy_before).groupby(customer).cummax().to_numpy()
    slack = _fold_before(delayed, latest[order]) - busy_before
    earliest_slack_after = pd.Series(slack[::-1]).groupby(customer[::-1]).cummin().to_numpy()[::-1]
    fitted[order] = np.maximum(busy_before + earliest_slack_after, 0)
    return fitted


def _fold_before(start: np.ndarray, latest: np.ndarray) -> np.ndarray:
    """Starts past ``latest`` mirrored back before it, so that sessions pushed out of the day end
    spread over its last minutes instead of all at the same instant."""
    return np.where(start > latest, np.maximum(2 * latest - start, 0), start)


def _frame(columns: dict[str, object]) -> pd.DataFrame:
    """A DataFrame over freshly built arrays, without copying them (nothing else holds them)."""
    return pd.DataFrame(columns, copy=False)


def _assemble(
    day: dt.date,
    base: int,
    rows: _Rows,
    t_us: np.ndarray,
    session_rank: np.ndarray,
    orders: _Orders,
    pools: TrafficPools,
) -> SimulatedDay:
    midnight_us = int(np.datetime64(day, "us").astype(np.int64))
    n_rows, n_orders = len(rows), len(orders.customer)
    code = rows.code

    # Orders are numbered by time; their created_at is their purchase's timestamp.
    is_purchase = code == _PURCHASE
    purchase_row = np.empty(n_orders, dtype=np.int64)
    purchase_row[rows.subject[is_purchase]] = np.flatnonzero(is_purchase)
    order_time = t_us[purchase_row]
    order_rank = _rank(order_time)
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
    line_sort = np.argsort(order_rank[orders.line_order] * len(_ORDER_LINE_PROBS) + line_no)
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
    is_login, is_failed = code == _LOGIN, code == _FAILED_LOGIN
    is_view_product, is_search = code == _VIEW_PRODUCT, code == _SEARCH
    is_product = is_view_product | (code == _ADD_TO_CART) | (code == _REMOVE_FROM_CART)
    product = np.where(is_product, subject, -1)
    query = np.where(is_search, subject, -1)
    url = np.where((code == _VIEW_PAGE) | (code == _UPDATE_PROFILE), subject, -1)
    url[is_view_product] = pools.product_urls[subject[is_view_product]]
    url[is_search] = pools.search_urls[subject[is_search]]
    purchases = np.flatnonzero(is_purchase)
    purchase_total = np.zeros(n_rows)
    purchase_total[purchases] = orders.total[subject[purchases]]
    purchase_order_id = np.zeros(n_rows, dtype=np.int64)
    purchase_order_id[purchases] = order_id[subject[purchases]]
    session_ids = _session_ids(day, len(session_rank))
    activity_id = base + 1 + np.arange(n_rows, dtype=np.int64)
    activities_frame = _frame(
        {
            "id": activity_id,
            "customer_id": pd.arrays.IntegerArray(np.maximum(rows.customer, 0) + 1, rows.customer < 0),
            "session_id": session_ids.take(session_rank[rows.session]),
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

    labels_frame = _labels(day, rows, session_rank, activity_id, orders, order_id, purchase_row)
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
    rows: _Rows,
    session_rank: np.ndarray,
    activity_id: np.ndarray,
    orders: _Orders,
    order_id: np.ndarray,
    purchase_row: np.ndarray,
) -> pd.DataFrame:
    """One label per injected row; episodes numbered per kind in chronological order."""
    abnormal = np.flatnonzero(orders.anomaly_kind >= 0)
    injected = np.flatnonzero(rows.kind >= 0)
    # An abnormal order is an episode alone; an injected activity's episode is its session. Order
    # ids and session ranks both grow with time, so ranking them numbers episodes chronologically.
    kind = np.concatenate([orders.anomaly_kind[abnormal], rows.kind[injected]])
    when = np.concatenate([order_id[abnormal], session_rank[rows.session[injected]]])
    episode = np.zeros(len(kind), dtype=np.int64)
    for code in np.unique(kind):
        mine = kind == code
        episode[mine] = np.unique(when[mine], return_inverse=True)[1] + 1
    kind_names = pd.array(constants.ANOMALY_KINDS, dtype="str")
    episode_ids = pd.array(
        np.strings.add(
            np.strings.add(f"{day.isoformat()}:", np.array(constants.ANOMALY_KINDS)[kind]),
            np.strings.add(":", episode.astype(np.str_)),
        ),
        dtype="str",
    )

    # An abnormal order is labelled twice: the order and its purchase activity.
    n_abnormal = len(abnormal)
    episode_of_label = np.concatenate([np.arange(n_abnormal), np.arange(len(kind))])
    is_activity = np.arange(len(episode_of_label)) >= n_abnormal
    entity_id = np.concatenate([order_id[abnormal], activity_id[purchase_row[abnormal]], activity_id[injected]])
    ordered = np.lexsort((entity_id, is_activity))  # orders first, then activities, each by id
    episode_of_label = episode_of_label[ordered]
    entity_type = pd.array([constants.ENTITY_ORDER, constants.ENTITY_ACTIVITY], dtype="str")
    return _frame(
        {
            "entity_type": entity_type.take(is_activity[ordered].astype(np.int64)),
            "entity_id": entity_id[ordered].astype(np.int64),
            "anomaly_kind": kind_names.take(kind[episode_of_label]),
            "episode_id": episode_ids.take(episode_of_label),
        }
    )
