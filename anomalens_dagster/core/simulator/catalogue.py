"""The store's catalogue: categories, products, customers and the pools a day's traffic draws from.

It depends only on ``seed`` and the three catalogue sizes, and it is the only place Faker runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from faker import Faker

from anomalens_dagster.core.simulator.profiles import CustomerProfiles, simulate_profiles
from anomalens_dagster.core.simulator.settings import SimulationSettings
from anomalens_dagster.core.simulator.vocabulary import US_PER_S

logger = logging.getLogger(__name__)

_MIN_PRICE_DOLLARS = 13  # prices are whole dollars minus a cent, so at least 12.99 > any low total
_MAX_PRICE_DOLLARS = 2_500

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


@dataclass(frozen=True, eq=False)
class TrafficPools:
    """What the day simulation draws from; built with the catalog, never written to the database.

    Each string lives once, in a pandas ``str`` array (``ip_addresses``, ``user_agents``, ``urls``…);
    the other fields hold int64 indices into them, so a day builds a whole string column with one
    ``take``. Customer ``i`` is row ``i`` of ``Catalog.customers`` (id ``i + 1``); product ``j``
    likewise. Numpy arrays are read-only.
    """

    # str, unique: customers' own, anonymous, attackers', offices', mobile carriers'
    ip_addresses: pd.api.extensions.ExtensionArray
    # int64 (num_customers, 3): their 1-3 usual IPs (an office worker's last one is the office's),
    # padded by repetition
    customer_ips: np.ndarray
    customer_ip_counts: np.ndarray  # int64 (num_customers,)
    anonymous_ips: np.ndarray  # int64 indices of anonymous visitors' IPs
    attacker_ips: np.ndarray  # int64 indices of IPs used only by injected anomalies
    carrier_ips: np.ndarray  # int64 indices of mobile carriers' shared IPs
    user_agents: pd.api.extensions.ExtensionArray  # str: browser user agents, then HTTP-library ones
    customer_user_agents: np.ndarray  # int64 (num_customers, 3), padded like customer_ips
    customer_user_agent_counts: np.ndarray  # int64 (num_customers,)
    browser_user_agents: np.ndarray  # int64 indices of browser user agents
    script_user_agents: np.ndarray  # int64 indices of HTTP-library user agents (attackers only)
    # float64 cumulative activity weight of the customers (0 for the fresh accounts kept for fraud)
    customer_cdf: np.ndarray
    product_cdf: np.ndarray  # float64 cumulative popularity of the products
    product_names: pd.api.extensions.ExtensionArray  # str
    product_price_cents: np.ndarray  # int64
    cheap_products: np.ndarray  # int64 indices of the cheapest quarter of the products
    expensive_products: np.ndarray  # int64 indices of the dearest tenth of the products
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
    profiles: CustomerProfiles


@dataclass(frozen=True, eq=False)
class Catalog:
    """The store's slowly changing tables and the traffic pools; deterministic in the settings'
    seed and catalog sizes only."""

    categories: pd.DataFrame  # id int64 (1..n), name str, description str
    products: pd.DataFrame  # id int64, name str, description str, price float64, category_id int64
    # id int64, email str (unique), first_name str, last_name str, created_at datetime64[us] (UTC)
    customers: pd.DataFrame
    pools: TrafficPools


def simulate_catalog(settings: SimulationSettings) -> Catalog:
    """Build categories, products, customers and the traffic pools for ``settings``.

    Each table has its own random stream derived from the seed, so changing the number of customers
    does not reprice products. Faker (seeded per stream) fills the name, email, IP and user-agent
    pools; numpy draws everything numeric.
    """
    streams = np.random.SeedSequence([settings.seed, 0]).spawn(5)
    fake = Faker("en_US")
    category_nouns, categories = _simulate_categories(settings, fake, streams[0])
    products = _simulate_products(settings, fake, streams[1], categories, category_nouns)
    customers = _simulate_customers(settings, fake, streams[2])
    profiles = simulate_profiles(np.random.default_rng(streams[4]), settings.num_customers)
    pools = _simulate_pools(settings, fake, streams[3], categories, products, customers, category_nouns, profiles)
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
    created_s = np.sort(rng.integers(since_us // US_PER_S, until_us // US_PER_S, size=n))
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "email": pd.array(emails, dtype="str"),
            "first_name": pd.array(first, dtype="str"),
            "last_name": pd.array(last, dtype="str"),
            "created_at": (created_s * US_PER_S).astype("datetime64[us]"),
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
    profiles: CustomerProfiles,
) -> TrafficPools:
    _seed_faker(fake, stream)
    rng = np.random.default_rng(stream)
    n_customers = settings.num_customers
    customer_emails = set(customers["email"])

    # IPs: each customer's usual ones (their own), anonymous visitors', attackers', offices' and
    # mobile carriers'; all distinct.
    ip_counts = rng.choice(np.arange(1, 4), size=n_customers, p=_CUSTOMER_POOL_COUNT_PROBS)
    n_customer_ips = int(ip_counts.sum())
    n_anonymous_ips = max(200, n_customers)
    n_attacker_ips = max(10, n_customers // 30)
    group_sizes = (n_customer_ips, n_anonymous_ips, n_attacker_ips, profiles.n_offices, profiles.n_carrier_ips)
    ips = _unique_ips(fake, sum(group_sizes))
    group_starts = np.cumsum((0, *group_sizes))
    _, anonymous_ips, attacker_ips, office_ips, carrier_ips = (
        np.arange(start, start + size, dtype=np.int64)
        for start, size in zip(group_starts[:-1], group_sizes, strict=True)
    )
    first_ip = np.cumsum(ip_counts) - ip_counts
    offsets = np.minimum(np.arange(3), ip_counts[:, None] - 1)
    customer_ips = first_ip[:, None] + offsets
    # An office worker's last usual IP (a third one replaced, else one more) is the office's.
    worker = np.flatnonzero(profiles.office >= 0)
    office_slot = np.minimum(ip_counts[worker], 2)
    customer_ips[worker, office_slot] = office_ips[profiles.office[worker]]
    ip_counts[worker] = office_slot + 1

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

    customer_weight = rng.lognormal(0.0, 1.0, size=n_customers)
    customer_weight[profiles.fresh_accounts] = 0.0
    price_cents = np.round(products["price"].to_numpy() * 100).astype(np.int64)
    by_price = np.argsort(price_cents, kind="stable").astype(np.int64)

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
        carrier_ips=_frozen(carrier_ips),
        customer_cdf=_frozen(np.cumsum(customer_weight)),
        product_cdf=_zipf_cdf(rng, len(products), 0.8),
        product_names=pd.array(products["name"], dtype="str"),
        product_price_cents=_frozen(price_cents),
        cheap_products=_frozen(by_price[: max(1, len(by_price) // 4)]),
        expensive_products=_frozen(by_price[-max(1, len(by_price) // 10) :]),
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
        profiles=profiles,
    )
