"""Which features drove each flagged row: every detector's ``explain`` of the rows it flagged,
keyed by entity id, as anomaly records quote them (``details.top_features``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from anomalens_dagster.constants import (
    DEFAULT_EXPLAIN_TOP_K,
    DETECTOR_ENSEMBLE,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    ENTITY_TYPES,
)
from anomalens_dagster.core.frames import require_columns
from anomalens_dagster.core.scoring import ScoringModel

# The scores frame of `core.scoring.score_rows` names the entity's id like this.
SCORE_ID_COLUMNS: dict[str, str] = {ENTITY_ACTIVITY: "activity_id", ENTITY_ORDER: "order_id"}


def score_id_column(entity_type: str) -> str:
    if entity_type not in ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}; expected one of {list(ENTITY_TYPES)}")
    return SCORE_ID_COLUMNS[entity_type]


def explain_flagged(
    models: Mapping[str, ScoringModel],
    features: pd.DataFrame,
    scores: pd.DataFrame,
    entity_type: str,
    top_k: int = DEFAULT_EXPLAIN_TOP_K,
) -> dict[str, pd.DataFrame]:
    """The ``explanations`` argument of :func:`build_anomalies`.

    For every model, ``model.detector.explain`` of the feature rows it flagged in ``scores``,
    indexed by entity id: columns ``feature_1, contribution_1, ..., feature_k, contribution_k``.
    ``features`` is the feature frame that was scored (an ``id`` column plus the model's features).
    """
    id_column = score_id_column(entity_type)
    require_columns(scores, (id_column, "detector", "is_anomaly"), "scores")
    require_columns(features, ("id",), "features")
    by_id = features.set_index("id")
    if not by_id.index.is_unique:
        raise ValueError("features: `id` is not unique; pass one feature row per entity")
    flagged = scores.loc[scores["is_anomaly"].to_numpy(dtype=bool), [id_column, "detector"]]
    explanations = {}
    for name, model in models.items():
        ids = flagged.loc[flagged["detector"] == name, id_column].to_numpy(np.int64)
        missing = np.setdiff1d(ids, by_id.index.to_numpy())
        if len(missing):
            raise ValueError(
                f"features lack {len(missing)} {entity_type} rows flagged by {name}: {missing[:5].tolist()}"
            )
        explanations[name] = model.detector.explain(by_id.loc[ids], top_k)
    return explanations


def _explanation_pairs(frame: pd.DataFrame) -> dict[int, list[tuple[str, float]]]:
    """Entity id -> [(feature, contribution)] strongest first, from an `explain` frame."""
    ranks = 0
    while f"feature_{ranks + 1}" in frame.columns and f"contribution_{ranks + 1}" in frame.columns:
        ranks += 1
    names = [frame[f"feature_{rank}"].to_numpy(dtype=object).tolist() for rank in range(1, ranks + 1)]
    values = [frame[f"contribution_{rank}"].to_numpy(np.float64).tolist() for rank in range(1, ranks + 1)]
    rows = zip(*names, *values, strict=True) if ranks else ([] for _ in range(len(frame)))
    return {
        entity_id: [
            (name, value)
            for name, value in zip(row[:ranks], row[ranks:], strict=True)
            if isinstance(name, str) and math.isfinite(value)
        ]
        for entity_id, row in zip(frame.index.to_numpy(np.int64).tolist(), rows, strict=True)
    }


def explained_by_detector(
    flagged: pd.DataFrame, explanations: Mapping[str, pd.DataFrame], entity_type: str
) -> dict[str, dict[int, list[tuple[str, float]]]]:
    """Detector -> entity id -> its explanation, for every entity the detector flagged.

    The ensemble has no explanation of its own: its records borrow their strongest component's.
    """
    explained: dict[str, dict[int, list[tuple[str, float]]]] = {}
    for detector, ids in flagged.groupby("detector")["entity_id"]:
        if detector == DETECTOR_ENSEMBLE:
            continue
        if detector not in explanations:
            raise ValueError(
                f"explanations: none for {detector}, which flagged {len(ids)} {entity_type} rows; "
                "pass explain() of its flagged rows (see explain_flagged)"
            )
        frame = explanations[detector]
        missing = np.setdiff1d(ids.to_numpy(), frame.index.to_numpy(np.int64))
        if len(missing):
            raise ValueError(
                f"explanations[{detector!r}]: no row for {len(missing)} flagged {entity_type} rows, "
                f"e.g. {missing[:5].tolist()}; index the explain() frame by entity id"
            )
        explained[str(detector)] = _explanation_pairs(frame.loc[frame.index.isin(ids.to_numpy())])
    return explained
