"""Text ids (``WC-1001``, UUIDs): the store keeps the source id and gives it a stable integer id.

An id or reference that is not an integer is looked up in ``ops.id_map(kind, source_id, id)``: a
row's own id not seen before gets the next free integer of its kind, from TEXT_ID_BASE upwards —
above every 18-digit id a file can give as a number, so the two never collide; a reference to a
text id resolves only to an id already given (stored, or assigned earlier in the same delivery),
and otherwise waits like any unknown reference. Assignments are written with the rows they name,
so an id is given once and for all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

TEXT_ID_BASE = 4_000_000_000_000_000_000
ID_MAP_COLUMNS = ("kind", "source_id", "id")

StoredIds = Callable[[str, list[str]], dict[str, int]]
"""`(kind, source ids) -> {source id: integer id}` for those the store's map holds."""
LargestId = Callable[[str], int | None]
"""`kind -> the largest integer id the store's map gave that kind` (None: none yet)."""


class IdMap:
    """The integer ids of text ids, as stored plus those assigned during one delivery (or retry)."""

    def __init__(self, stored: StoredIds | None = None, largest: LargestId | None = None) -> None:
        self._stored = stored or (lambda kind, source_ids: {})
        self._largest = largest or (lambda kind: None)
        self._known: dict[str, dict[str, int]] = {}
        self._assigned: dict[str, dict[str, int]] = {}
        self._next: dict[str, int] = {}

    def resolve(self, kind: str, source_ids: pd.Series, assign: bool) -> pd.Series:
        """Integer ids (Int64) of `source_ids` of `kind`; with `assign`, unseen ones get new ids, else NA."""
        known = self._known.setdefault(kind, {})
        wanted = [text for text in pd.unique(source_ids) if text not in known]
        if wanted:
            known.update(self._stored(kind, wanted))
        if assign:
            for text in pd.unique(source_ids):
                if text not in known:
                    known[text] = self._next_id(kind)
                    self._assigned.setdefault(kind, {})[text] = known[text]
        return pd.Series([known.get(text) for text in source_ids], index=source_ids.index, dtype="Int64")

    def assigned(self, kind: str, ids: Iterable[int]) -> pd.DataFrame:
        """The assignments of this delivery among `ids`, as ops.id_map rows to write with them."""
        wanted = set(np.asarray(list(ids), dtype="int64").tolist())
        rows = [(kind, text, number) for text, number in self._assigned.get(kind, {}).items() if number in wanted]
        return pd.DataFrame(rows, columns=list(ID_MAP_COLUMNS)).astype({"id": "int64"})

    def _next_id(self, kind: str) -> int:
        if kind not in self._next:
            largest = self._largest(kind)
            self._next[kind] = TEXT_ID_BASE if largest is None else largest + 1
        number = self._next[kind]
        self._next[kind] += 1
        return number
