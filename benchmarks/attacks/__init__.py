"""Realistic attacks on an online store that the simulator never injects, as the shop's own landing files.

The measuring instrument for generalisation (`benchmarks/generalisation.py` uses it): a seeded
generator of attack episodes on an existing store, written as the export files a shop would drop
into the landing zone, under the shop's own column names and values (`SHOP_LANDING_SETTINGS` maps
them), with the ground truth of every episode: the activities and orders it wrote.

Kinds (each described with why it is realistic in `kinds.ATTACK_KINDS`): password_spraying,
session_hijack, cart_manipulation, coupon_draining, price_tampering, dormant_reactivation,
checkout_sniping, search_spam, refund_abuse, slow_scraping, datacentre_new_account_orders. None is
one of the simulator's kinds (order_high_total, order_low_total, activity_burst, failed_login_run,
and those it may add: account_takeover, card_testing, scraping, credential_stuffing,
quantity_hoarding). Only the store's own action types and order statuses are used, and impostors
copy user agents common in the store (sniping bots announce headless Chrome), so no attack is told
apart by a word the store never saw.

    view = load_store_view(conn, first_day, last_day)       # the store before and during the window
    rows = generate_attacks(view, seed=90211, batch=1)       # episodes inside the window
    write_shop_files(rows, landing_dir, "attacks-1")         # then ingest; then:
    truth = episode_rows(conn, rows)                         # entity_type, entity_id, kind, episode_id
"""

from __future__ import annotations

import numpy as np

from benchmarks.attacks.builder import AttackBuilder, AttackRows, Episode
from benchmarks.attacks.kinds import ATTACK_KIND_NAMES, ATTACK_KINDS, AttackKind
from benchmarks.attacks.shop_files import SHOP_LANDING_SETTINGS, episode_rows, write_shop_files
from benchmarks.attacks.store import StoreView, load_store_view

DEFAULT_EPISODES_PER_KIND = 6

__all__ = [
    "ATTACK_KINDS",
    "ATTACK_KIND_NAMES",
    "DEFAULT_EPISODES_PER_KIND",
    "SHOP_LANDING_SETTINGS",
    "AttackKind",
    "AttackRows",
    "Episode",
    "StoreView",
    "episode_rows",
    "generate_attacks",
    "load_store_view",
    "write_shop_files",
]


def generate_attacks(
    view: StoreView,
    seed: int,
    batch: int,
    episodes_per_kind: int = DEFAULT_EPISODES_PER_KIND,
    kinds: tuple[str, ...] = ATTACK_KIND_NAMES,
) -> AttackRows:
    """`episodes_per_kind` episodes of each of `kinds` inside `view`'s window, a function of (store, seed, batch).

    Each kind draws from its own generator (seeded by seed, batch and the kind's position in
    ATTACK_KINDS); an account is the victim or tool of one episode only. Order ids lie in `batch`'s
    block: batches generated for one store never collide.
    """
    unknown = set(kinds) - set(ATTACK_KIND_NAMES)
    if unknown:
        raise ValueError(f"unknown attack kinds {sorted(unknown)}; known: {', '.join(ATTACK_KIND_NAMES)}")
    if episodes_per_kind < 1:
        raise ValueError(f"episodes_per_kind must be at least 1, not {episodes_per_kind}")
    builder = AttackBuilder(view, np.random.default_rng([seed, batch]), batch)
    for position, kind in enumerate(ATTACK_KINDS):
        if kind.name in kinds:
            builder.rng = np.random.default_rng([seed, batch, position])
            for _ in range(episodes_per_kind):
                kind.generate(builder)
    return builder.rows()
