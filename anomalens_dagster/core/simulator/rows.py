"""A day's orders and activities before they are timed and numbered, and how row sets combine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ORDER_LINES = 5  # an order lists 1-5 distinct products


@dataclass(frozen=True, eq=False)
class Orders:
    """A day's orders in draw order (index ``o``) and their lines (index ``line``)."""

    customer: np.ndarray
    status: np.ndarray  # index into constants.ORDER_STATUSES
    total: np.ndarray
    anomaly_kind: np.ndarray  # code in KIND_CODE, -1 for a normal order
    episode: np.ndarray  # episode number within its kind, -1 for a normal order
    n_lines: np.ndarray
    line_start: np.ndarray
    line_order: np.ndarray
    line_product: np.ndarray
    line_quantity: np.ndarray
    line_price_cents: np.ndarray
    line_labelled: np.ndarray  # bool: the line's add_to_cart belongs to the order's episode


def no_orders() -> Orders:
    empty = np.zeros(0, dtype=np.int64)
    return Orders(*(empty for _ in range(len(Orders.__dataclass_fields__) - 1)), np.zeros(0, dtype=bool))


def concat_orders(parts: list[Orders]) -> Orders:
    """Concatenate order sets; part ``k``'s order ``o`` becomes order ``o + sum(len of parts before k)``."""
    offsets = np.cumsum([0] + [len(part.customer) for part in parts])
    columns = {name: np.concatenate([getattr(part, name) for part in parts]) for name in Orders.__dataclass_fields__}
    line_offsets = np.cumsum([0] + [len(part.line_order) for part in parts])
    columns["line_order"] = np.concatenate([p.line_order + o for p, o in zip(parts, offsets, strict=False)])
    columns["line_start"] = np.concatenate([p.line_start + o for p, o in zip(parts, line_offsets, strict=False)])
    return Orders(**columns)


@dataclass(frozen=True, eq=False)
class Rows:
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
    episode: np.ndarray  # episode number within its kind, -1: normal
    # Sessions are the unit of timing; an injected episode is one such unit whose rows may belong to
    # several site sessions (a bot that keeps no cookies): ``part`` numbers them, 0 for normal rows.
    part: np.ndarray

    def __len__(self) -> int:
        return len(self.code)


def row_fields() -> tuple[str, ...]:
    return tuple(Rows.__dataclass_fields__)


def session_count(rows: Rows) -> int:
    return int(rows.session[-1]) + 1 if len(rows) else 0


def concat_rows(parts: list[Rows]) -> Rows:
    """Concatenate row sets, renumbering their sessions so they stay distinct and contiguous."""
    offsets = np.cumsum([0] + [session_count(p) for p in parts])
    columns = {name: np.concatenate([getattr(p, name) for p in parts]) for name in row_fields()}
    columns["session"] = np.concatenate([p.session + offset for p, offset in zip(parts, offsets, strict=False)])
    return Rows(**columns)


def take_rows(rows: Rows, index: np.ndarray) -> Rows:
    return Rows(**{name: getattr(rows, name)[index] for name in row_fields()})
