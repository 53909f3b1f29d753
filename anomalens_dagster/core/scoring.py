"""Scoring feature rows with every trained detector, plus the ensemble that combines them.

Each detector's score is first put on one scale: how rare it is among its training rows, an
upper-tail probability p learnt at fit time (`core/detectors/calibration.py`; 0.5 is an ordinary
row, 1e-6 one rarer than anything in training). The ensemble combines the four with the harmonic mean of their p-values,

    ensemble score = -log10( k / sum_i (1 / p_i) ) = log10( mean_i (1 / p_i) ),

and flags a row when it exceeds `ENSEMBLE_THRESHOLD` (3: a combined probability of 1 in 1,000).
The harmonic mean is dominated by the smallest p: one detector that is sure (p = 1e-6) flags the
row by itself (score >= 5.4 whatever the others say), while one that is merely past its own
threshold does not; several detectors that each find the row somewhat rare add up. It stays valid
when the detectors are correlated (they see the same features), unlike Fisher's product, which
would count four views of one oddity as four independent pieces of evidence.

This replaced the median of the four score / threshold ratios (capped at 4), which needed about
half the detectors past their thresholds: a row seen only by the detector that understands it was
never flagged, and rows beyond the cap all tied. The score here is unbounded (ln p keeps falling
beyond the training data), so it ranks every flagged row. Measured out of time (README, "Detection
quality"): 0.01-0.04 % of normal activities flagged where the median flagged 0.10-0.13 %, kinds left
out of training caught whole; the price is the smallest bursts, 1 % of every training window, of
which 13-16 % fall under the threshold until a retraining leaves the High rows out. The scale comes
from training alone, so a day is scored the same whether it is scored alone or with others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from anomalens_dagster.constants import DETECTOR_ENSEMBLE, ENSEMBLE_THRESHOLD
from anomalens_dagster.core.detectors import Detector

logger = logging.getLogger(__name__)


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
    parts, log_p = [], []
    for name, model in models.items():
        scores = model.detector.score(features)
        threshold = float(model.detector.threshold_)
        if not threshold > 0:
            raise ValueError(
                f"{name} v{model.version}: threshold {threshold} is not positive, so its severity cannot be graded"
            )
        parts.append(_score_part(ids, name, scores, scores > threshold, model.version))
        log_p.append(model.detector.log_tail_probability(scores))
        logger.info("%s v%d flagged %d of %d rows", name, model.version, int((scores > threshold).sum()), len(ids))
    ensemble = ensemble_score(np.vstack(log_p))
    parts.append(_score_part(ids, DETECTOR_ENSEMBLE, ensemble, ensemble > ensemble_threshold, 0))
    scores = pd.concat(parts, ignore_index=True).rename(columns={"id": id_column})
    scores.insert(1, time_column, np.tile(features[time_column].to_numpy(), len(parts)))
    return scores


def ensemble_score(log_p: np.ndarray) -> np.ndarray:
    """-log10 of the harmonic mean of the detectors' tail probabilities, per column of `log_p`.

    `log_p` holds one row per detector of ln p (natural log, <= 0). Computed in log space, so
    probabilities far below the smallest float still order correctly.
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    if log_p.ndim != 2 or log_p.shape[0] == 0:
        raise ValueError(f"ensemble_score needs one row of log p-values per detector, got shape {log_p.shape}")
    if log_p.shape[1] == 0:
        return np.empty(0)
    mean_inverse = logsumexp(-log_p, axis=0) - np.log(log_p.shape[0])
    return mean_inverse / np.log(10.0)


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
