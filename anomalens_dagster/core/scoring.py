"""Scoring feature rows with every trained detector, plus the ensemble that combines them.

Each detector's score is first put on one scale: its ratio to the detector's own fitted threshold,
so 1.0 is "exactly at the threshold" for all four whatever their units (max |z|, isolation depth,
RMS distance, reconstruction error). The ensemble score is the median of those ratios (with four
detectors, the mean of the middle two), each capped at `ENSEMBLE_RATIO_CAP`; the ensemble flags a
row when it exceeds 1, which takes about half the detectors past their thresholds. One detector
alone can neither flag a row nor clear it: on the simulated store the mean let the
detector with the most false alarms decide, and flagged 1-3 % of normal activities, where the
median flags about 0.1 % (README, "Detection quality"). The scale comes from training alone, so a
day is scored the same whether it is scored alone or with others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomalens_dagster.constants import DETECTOR_ENSEMBLE, ENSEMBLE_THRESHOLD
from anomalens_dagster.core.detectors import Detector

logger = logging.getLogger(__name__)

ENSEMBLE_RATIO_CAP = 4.0


@dataclass(frozen=True)
class ScoringModel:
    """A fitted detector and the registry version it came from."""

    detector: Detector
    version: int


def score_rows(
    models: Mapping[str, ScoringModel],
    features: pd.DataFrame,
    id_column: str,
    time_column: str,
    ensemble_threshold: float = ENSEMBLE_THRESHOLD,
) -> pd.DataFrame:
    """One row per (feature row, detector) and per feature row for the ensemble.

    `features` needs `id`, `time_column` and every column the detectors were fitted on. Returns
    `id_column` (the feature row's id, int64), `time_column` (copied, so a day's scores can be
    replaced by time), detector (str), score (float64), is_anomaly (bool) and model_version
    (int64; the ensemble's is 0, it has no model of its own). The ensemble flags a row whose score
    exceeds `ensemble_threshold` (settings `detection.thresholds.<entity>.ensemble`).
    """
    if not models:
        raise ValueError("no trained detector to score with: materialise the model assets first")
    ids = features["id"].to_numpy(np.int64)
    parts, ratios = [], []
    for name, model in models.items():
        scores = model.detector.score(features)
        threshold = float(model.detector.threshold_)
        if not threshold > 0:
            raise ValueError(
                f"{name} v{model.version}: threshold {threshold} is not positive, so it cannot scale scores"
            )
        parts.append(_score_part(ids, name, scores, scores > threshold, model.version))
        ratios.append(np.minimum(scores / threshold, ENSEMBLE_RATIO_CAP))
        logger.info("%s v%d flagged %d of %d rows", name, model.version, int((scores > threshold).sum()), len(ids))
    ensemble = np.median(ratios, axis=0) if len(ids) else np.empty(0)
    parts.append(_score_part(ids, DETECTOR_ENSEMBLE, ensemble, ensemble > ensemble_threshold, 0))
    scores = pd.concat(parts, ignore_index=True).rename(columns={"id": id_column})
    scores.insert(1, time_column, np.tile(features[time_column].to_numpy(), len(parts)))
    return scores


def scores_dtypes(id_column: str, time_column: str) -> dict[str, str]:
    """The columns of a `score_rows` frame, in order, with their dtypes (features read from DuckDB
    carry their time as datetime64[us])."""
    return {
        id_column: "int64",
        time_column: "datetime64[us]",
        "detector": "str",
        "score": "float64",
        "is_anomaly": "bool",
        "model_version": "int64",
    }


def _score_part(ids: np.ndarray, detector: str, scores: np.ndarray, flags: np.ndarray, version: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ids,
            "detector": pd.array([detector] * len(ids), dtype="str"),
            "score": np.asarray(scores, dtype=np.float64),
            "is_anomaly": np.asarray(flags, dtype=bool),
            "model_version": np.full(len(ids), version, dtype=np.int64),
        }
    )
