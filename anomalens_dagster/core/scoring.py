"""Scoring feature rows with every trained detector, plus the ensemble that combines them.

The ensemble puts each detector's score on two scales and takes the stronger verdict:

- **Agreement**: the median of the four ratios score / threshold (each capped at
  `ENSEMBLE_RATIO_CAP`), so 1.0 is "about half the detectors at their thresholds". A detector alone
  can neither flag a row nor clear it this way: on the simulated store the mean let the detector
  with the most false alarms decide, where the median flagged about 0.1 % of normal activities.
- **One sure detector**: each detector's score as an upper-tail probability p among its training
  rows, learnt at fit time (`core/detectors/calibration.py`), and the strongest of them,
  max(-log10 p) / `SURE_DETECTOR_LOG10`: a row that one detector finds rarer than 1 in a million
  training-like rows reaches 1.0 by itself, whatever the others say.

    ensemble score = max(median_i min(score_i / threshold_i, cap), max_i(-log10 p_i) / 6)

and the ensemble flags a row above `ENSEMBLE_THRESHOLD` (1.0). The second term is unbounded, so rows
beyond the cap still rank.

Why both, measured on the merged store (README, "Detection quality"): the harmonic mean of the four
p-values alone (a threshold of 1 in 1,000) flagged 0.01-0.04 % of normal activities, but it reads a
training window's own anomalies as the tail: with nine simulated kinds (3.4 % of the activities,
above the 2 % the tail fit tolerates) out-of-time activity F1 fell to 0.16 at the demo seed. The
median keeps what agreement catches; a single detector's p below 1e-6 is 250 times rarer than what
that mean needed, so it adds evidence only where one detector is sure. The scales come from
training alone, so a day is scored the same whether it is scored alone or with others.
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
# -log10 p of one detector that flags a row by itself: rarer than 1 in a million training rows.
SURE_DETECTOR_LOG10 = 6.0


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
    parts, ratios, log_p = [], [], []
    for name, model in models.items():
        scores = model.detector.score(features)
        threshold = float(model.detector.threshold_)
        if not threshold > 0:
            raise ValueError(
                f"{name} v{model.version}: threshold {threshold} is not positive, so its severity cannot be graded"
            )
        parts.append(_score_part(ids, name, scores, scores > threshold, model.version))
        ratios.append(scores / threshold)
        log_p.append(model.detector.log_tail_probability(scores))
        logger.info("%s v%d flagged %d of %d rows", name, model.version, int((scores > threshold).sum()), len(ids))
    ensemble = ensemble_score(np.vstack(ratios), np.vstack(log_p))
    parts.append(_score_part(ids, DETECTOR_ENSEMBLE, ensemble, ensemble > ensemble_threshold, 0))
    scores = pd.concat(parts, ignore_index=True).rename(columns={"id": id_column})
    scores.insert(1, time_column, np.tile(features[time_column].to_numpy(), len(parts)))
    return scores


def ensemble_score(ratios: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    """The ensemble score of each column: the larger of the median capped ratio and the sure
    detector's evidence (module docstring).

    `ratios` holds one row per detector of score / threshold; `log_p` one row per detector of ln p
    (natural log, <= 0), in the same order.
    """
    ratios, log_p = np.asarray(ratios, dtype=np.float64), np.asarray(log_p, dtype=np.float64)
    if ratios.ndim != 2 or ratios.shape[0] == 0 or ratios.shape != log_p.shape:
        raise ValueError(
            f"ensemble_score needs one row of ratios and of log p-values per detector, got {ratios.shape} and {log_p.shape}"
        )
    if ratios.shape[1] == 0:
        return np.empty(0)
    agreement = np.median(np.minimum(ratios, ENSEMBLE_RATIO_CAP), axis=0)
    sure = -log_p.min(axis=0) / np.log(10.0) / SURE_DETECTOR_LOG10
    return np.maximum(agreement, sure)


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
