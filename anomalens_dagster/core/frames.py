"""Small checks and constructors every pure table builder shares (no dagster import)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ValueError naming the columns of `columns` that `frame` (called `what`) lacks."""
    columns = tuple(columns)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing} (needs {list(columns)})")


def empty_frame(dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A frame with no rows and these columns and dtypes."""
    return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in dtypes.items()})
