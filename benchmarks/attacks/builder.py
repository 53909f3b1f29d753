"""The rows of attack episodes, built one action at a time: accounts, activities, orders and their items.

An `AttackBuilder` draws everything from one seeded generator and a `StoreView`: real products at
their real prices, real accounts and their usual devices, the site's own pages and searches. Each
row it adds belongs to the episode being built, so the ground truth is the list of rows the
attack wrote, never anything a detector said.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmarks.attacks.store import StoreView

# Numeric order and order-item ids of attack files: 18-digit numbers (a shop's own numbering), far above
# the simulator's day ranges, below the text-id range of ops.id_map; each batch gets its own block.
ATTACK_ID_BASE = 700_000_000_000_000_000
IDS_PER_BATCH = 10_000_000_000

# Address blocks of large hosting and cloud providers (AWS, Google Cloud, Azure, DigitalOcean,
# Hetzner, OVH, Vultr, Linode): where rented servers, and the bots on them, connect from.
DATACENTRE_PREFIXES = (
    "3.80", "18.196", "34.91", "35.188", "52.14", "54.210", "20.51", "40.76", "104.131", "138.68",
    "159.65", "167.99", "5.161", "78.46", "95.217", "51.38", "51.75", "45.32", "45.63", "139.162",
)  # fmt: skip
# Browser automation that does not hide itself: what sniping bots run when speed matters more than stealth.
HEADLESS_USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36",
)  # fmt: skip
_NOT_PUBLIC_FIRST_OCTETS = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203})
_EMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "mail.com", "gmx.net", "icloud.com")
_SYLLABLES = ("ka", "ri", "mo", "te", "lu", "sa", "no", "vi", "da", "re", "po", "li", "ma", "zu", "fe", "to")


@dataclass
class Episode:
    """One attack: its kind, and the ids of every activity and order it wrote (as the files give them)."""

    episode_id: str
    kind: str
    activity_ids: list[str] = field(default_factory=list)  # text ids (UUIDs), mapped by ops.id_map
    order_ids: list[int] = field(default_factory=list)
    new_customer_ids: list[str] = field(default_factory=list)  # accounts the attack signed up (text ids)


@dataclass
class AttackRows:
    """Everything a batch of attacks wrote, in the store's column names (the shop's come at writing)."""

    customers: pd.DataFrame  # id (text), email, first_name, last_name, created_at
    orders: pd.DataFrame  # id, customer_id (int or text), created_at, total_amount, status
    order_items: pd.DataFrame  # id, order_id, product_id, quantity, price
    user_activities: pd.DataFrame  # id (text), customer_id, session_id, timestamp, action_type, details, ip, ua
    episodes: list[Episode]


def product_slug(name: str) -> str:
    """The URL slug of a product name, as the shop's product pages use it."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class AttackBuilder:
    """Rows of one batch of attacks on the store in `view`, drawn from `rng`; ids in `batch`'s block."""

    def __init__(self, view: StoreView, rng: np.random.Generator, batch: int) -> None:
        if not 0 <= batch < 10_000:
            raise ValueError(f"batch must be in 0..9999, not {batch}")
        self.view = view
        self.rng = rng
        self._next_id = ATTACK_ID_BASE + batch * IDS_PER_BATCH
        self._customers: list[dict] = []
        self._orders: list[dict] = []
        self._items: list[dict] = []
        self._activities: list[dict] = []
        self.episodes: list[Episode] = []
        self._used_customers: set[int] = set()
        prices = view.products["price"].to_numpy()
        self._cheap = view.products[prices <= np.quantile(prices, 0.2)]
        self._expensive = view.products[prices >= np.quantile(prices, 0.75)]
        self._mid = view.products[(prices > np.quantile(prices, 0.2)) & (prices < np.quantile(prices, 0.75))]

    # --- episodes and rows ---------------------------------------------------------------------

    def start_episode(self, kind: str) -> Episode:
        number = sum(episode.kind == kind for episode in self.episodes) + 1
        episode = Episode(episode_id=f"{kind}:{number}", kind=kind)
        self.episodes.append(episode)
        return episode

    def new_account(self, episode: Episode, created_at: dt.datetime) -> str:
        """A customer account the attack signs up: a text id, a throwaway email, made-up names."""
        customer_id = "cus_" + self.rng.bytes(6).hex()
        first, last = self._made_up_name(), self._made_up_name()
        local = (
            f"{first}.{last}{int(self.rng.integers(1, 999))}" if self.rng.random() < 0.6 else self.rng.bytes(5).hex()
        )
        self._customers.append(
            {
                "id": customer_id,
                "email": f"{local}@{_EMAIL_DOMAINS[int(self.rng.integers(len(_EMAIL_DOMAINS)))]}",
                "first_name": first.capitalize(),
                "last_name": last.capitalize(),
                "created_at": created_at,
            }
        )
        episode.new_customer_ids.append(customer_id)
        return customer_id

    def act(
        self,
        episode: Episode,
        at: dt.datetime,
        action: str,
        customer: int | str | None,
        session: str,
        ip: str,
        user_agent: str,
        **details,
    ) -> None:
        activity_id = str(uuid.UUID(bytes=self.rng.bytes(16), version=4))
        self._activities.append(
            {
                "id": activity_id,
                "customer_id": customer,
                "session_id": session,
                "timestamp": at,
                "action_type": action,
                "details": details,
                "ip_address": ip,
                "user_agent": user_agent,
            }
        )
        episode.activity_ids.append(activity_id)

    def view_product(self, episode, at, product, customer, session, ip, user_agent) -> None:
        self.act(
            episode, at, "view_product", customer, session, ip, user_agent,
            product_id=int(product.id), product_name=product.name,
            url=f"/products/{int(product.id)}-{product_slug(product.name)}",
        )  # fmt: skip

    def cart(self, episode, at, action, product, quantity, customer, session, ip, user_agent) -> None:
        self.act(
            episode, at, action, customer, session, ip, user_agent,
            product_id=int(product.id), product_name=product.name, quantity=int(quantity),
        )  # fmt: skip

    def order(
        self,
        episode: Episode,
        at: dt.datetime,
        customer: int | str,
        lines: Sequence[tuple[object, int]],
        charge_ratio: float = 1.0,
        status: str = "processing",
    ) -> tuple[int, float]:
        """An order of `lines` (product row, quantity) at the products' prices, charged `charge_ratio`
        of the items' cost; returns its id and total."""
        order_id = self._take_id()
        items_total = 0.0
        for product, quantity in lines:
            price = round(float(product.price), 2)
            self._items.append(
                {"id": self._take_id(), "order_id": order_id, "product_id": int(product.id), "quantity": int(quantity),
                 "price": price}
            )  # fmt: skip
            items_total += price * int(quantity)
        total = round(items_total * charge_ratio, 2)
        self._orders.append(
            {"id": order_id, "customer_id": customer, "created_at": at, "total_amount": total, "status": status}
        )
        episode.order_ids.append(order_id)
        return order_id, total

    def checkout(
        self,
        episode: Episode,
        at: dt.datetime,
        customer: int | str,
        session: str,
        ip: str,
        user_agent: str,
        lines: Sequence[tuple[object, int]],
        gaps_s: Sequence[float],
        charge_ratio: float = 1.0,
        status: str = "processing",
        view_first: bool = True,
    ) -> dt.datetime:
        """View (optionally) and add each line to the cart, then buy: the actions and the order, `gaps_s`
        seconds apart (one gap per action after the first, recycled). Returns the purchase's time."""
        gaps = iter(np.resize(np.asarray(gaps_s, dtype=float), 3 * len(lines) + 1))
        for product, quantity in lines:
            if view_first:
                self.view_product(episode, at, product, customer, session, ip, user_agent)
                at += dt.timedelta(seconds=next(gaps))
            self.cart(episode, at, "add_to_cart", product, quantity, customer, session, ip, user_agent)
            at += dt.timedelta(seconds=next(gaps))
        order_id, total = self.order(episode, at, customer, lines, charge_ratio, status)
        self.act(episode, at, "purchase", customer, session, ip, user_agent, order_total=total, order_id=order_id)
        return at

    def rows(self) -> AttackRows:
        activities = pd.DataFrame(
            self._activities,
            columns=[
                "id",
                "customer_id",
                "session_id",
                "timestamp",
                "action_type",
                "details",
                "ip_address",
                "user_agent",
            ],
        )
        return AttackRows(
            customers=pd.DataFrame(self._customers, columns=["id", "email", "first_name", "last_name", "created_at"]),
            orders=pd.DataFrame(self._orders, columns=["id", "customer_id", "created_at", "total_amount", "status"]),
            order_items=pd.DataFrame(self._items, columns=["id", "order_id", "product_id", "quantity", "price"]),
            user_activities=activities.sort_values("timestamp", kind="stable", ignore_index=True),
            episodes=list(self.episodes),
        )

    # --- draws ---------------------------------------------------------------------------------

    def start_time(self, duration: dt.timedelta, hours: tuple[int, int] | None = None) -> dt.datetime:
        """A start on a random day of the window (within `hours` [from, to) UTC when given) such that
        the episode ends inside the window."""
        days = (self.view.last_day - self.view.first_day).days + 1
        latest = self.view.window_end - duration - dt.timedelta(seconds=1)
        if latest < self.view.window_start:
            raise ValueError(
                f"an episode of {duration} does not fit the window {self.view.first_day}..{self.view.last_day}"
            )
        day = self.view.window_start + dt.timedelta(days=int(self.rng.integers(days)))
        low, high = hours or (0, 24)
        start = day + dt.timedelta(seconds=float(self.rng.uniform(low * 3600, high * 3600)))
        return min(start, latest)

    def span(self, wanted: dt.timedelta) -> dt.timedelta:
        """`wanted`, or most of the window when the window is shorter (an episode's pattern compressed)."""
        return min(wanted, 0.8 * (self.view.window_end - self.view.window_start))

    def human_gaps(self, n: int, median_s: float, sigma: float = 0.7, floor_s: float = 2.0) -> np.ndarray:
        """Seconds between `n` consecutive actions of a person (or a bot imitating one): log-normal."""
        return np.maximum(self.rng.lognormal(np.log(median_s), sigma, size=n), floor_s)

    def residential_ip(self) -> str:
        """A public IPv4 address of a home or mobile connection (what residential proxies rent out)."""
        while True:
            first = int(self.rng.integers(1, 224))
            if first not in _NOT_PUBLIC_FIRST_OCTETS:
                rest = self.rng.integers(0, 256, size=2)
                return f"{first}.{rest[0]}.{rest[1]}.{int(self.rng.integers(1, 255))}"

    def datacentre_ip(self) -> str:
        prefix = DATACENTRE_PREFIXES[int(self.rng.integers(len(DATACENTRE_PREFIXES)))]
        return f"{prefix}.{int(self.rng.integers(0, 256))}.{int(self.rng.integers(1, 255))}"

    def browser(self, other_than: str | None = None) -> str:
        """A user agent common in the store (not `other_than`): attackers who pass for people copy the
        browsers everyone uses (a string the store never saw would tell them apart by a word)."""
        agents = [agent for agent in self.view.user_agents if agent != other_than] or list(self.view.user_agents)
        return agents[int(self.rng.integers(len(agents)))]

    def headless(self) -> str:
        return HEADLESS_USER_AGENTS[int(self.rng.integers(len(HEADLESS_USER_AGENTS)))]

    def session_token(self) -> str:
        return "sess_" + self.rng.bytes(10).hex()

    def page(self) -> str:
        return self.view.page_urls[int(self.rng.integers(len(self.view.page_urls)))]

    def query(self) -> str:
        return self.view.search_queries[int(self.rng.integers(len(self.view.search_queries)))]

    def products(self, count: int, tier: str = "any") -> list:
        """`count` distinct products (rows with id, name, price) of a price tier: cheap, mid, expensive or any."""
        pool = {"cheap": self._cheap, "mid": self._mid, "expensive": self._expensive, "any": self.view.products}[tier]
        picks = self.rng.choice(len(pool), size=min(count, len(pool)), replace=False)
        return list(pool.iloc[np.sort(picks)].itertuples(index=False))

    def shop_id(self, customer_id: int) -> int | str:
        """How the shop's files name a stored customer: its text id when its file gave one, else the number."""
        return self.view.shop_ids.get(customer_id, customer_id)

    def active_customer(self) -> tuple[int | str, str, str]:
        """A customer with a browsing history, not used by another episode of the batch: shop id, usual IP, usual UA."""
        habits = self.view.habits[~self.view.habits["customer_id"].isin(self._used_customers)]
        if habits.empty:
            raise ValueError("every active customer is already in an episode: build a bigger store")
        row = habits.iloc[int(self.rng.integers(len(habits)))]
        self._used_customers.add(int(row.customer_id))
        return self.shop_id(int(row.customer_id)), str(row.ip_address), str(row.user_agent)

    def dormant_customer(self) -> tuple[int | str, str, str | None]:
        """A customer silent for the longest time before the window (or never active), not used yet: shop id,
        email, usual user agent (None if never active)."""
        customers = self.view.customers[~self.view.customers["id"].isin(self._used_customers)]
        silent_since = customers["last_seen"].fillna(customers["created_at"])
        oldest = customers[silent_since <= silent_since.quantile(0.1)]
        row = oldest.iloc[int(self.rng.integers(len(oldest)))]
        self._used_customers.add(int(row.id))
        usual = self.view.habits.loc[self.view.habits["customer_id"] == row.id, "user_agent"]
        return self.shop_id(int(row.id)), str(row.email), (str(usual.iloc[0]) if len(usual) else None)

    def hijackable_session(self, min_actions: int = 3) -> pd.Series:
        """A customer's session in the window, of a customer not used yet, long enough to be worth stealing
        (its `customer_id` the store's; `shop_id` gives the files' name for it)."""
        sessions = self.view.sessions
        sessions = sessions[(sessions["actions"] >= min_actions) & ~sessions["customer_id"].isin(self._used_customers)]
        # The hijacker continues the session within the hour after it ends: it must end inside the window.
        sessions = sessions[sessions["ended"] < self.view.window_end - dt.timedelta(hours=2)]
        if sessions.empty:
            raise ValueError("no customer session in the attack window to hijack: simulate or land its days first")
        row = sessions.iloc[int(self.rng.integers(len(sessions)))]
        self._used_customers.add(int(row.customer_id))
        return row

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _made_up_name(self) -> str:
        return "".join(
            _SYLLABLES[int(k)] for k in self.rng.integers(0, len(_SYLLABLES), size=int(self.rng.integers(2, 4)))
        )
