"""Detection quality against analysts' verdicts, and the thresholds those verdicts call for (no dagster import).

Verdicts label the entities they judge (`ops.entity_verdicts`): confirm is an anomaly, dismiss is
normal; every other row is unknown and takes no part. Two uses:

- `verdict_evaluation_inputs` turns verdicts into the `scores` and `labels` of
  `core.evaluation.evaluate_detections`, restricted to the judged rows: a store without simulation
  labels is evaluated against its analysts (precision: flagged rows that were confirmed; recall:
  confirmed rows that were flagged, misses included).
- `calibrate_thresholds` proposes, per entity type and detector (and the ensemble), the threshold
  that maximises F1 on the judged rows. A row confirmed below the threshold (a miss) can only be
  caught by a lower one; a flagged row dismissed, only by a higher one. Where the threshold in
  force already maximises F1 it stays; otherwise the proposal is the middle of the best interval
  between two judged scores, so that it does not sit on one verdict's score. With fewer than
  `MIN_CALIBRATION_VERDICTS` judged rows of an entity type, or without both verdicts among them,
  nothing is proposed and the status says why.

Scores are compared in the units of the threshold in force: each row's score is divided by the
threshold of the model version that scored it and multiplied by the current one (the caller does
this), so rows scored by older versions count too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomalens_dagster.constants import MIN_CALIBRATION_VERDICTS, VERDICT_CONFIRM

logger = logging.getLogger(__name__)

ANALYST_CONFIRMED = "analyst_confirmed"  # the anomaly kind of confirmed rows in a verdict evaluation

CALIBRATION_DTYPES: dict[str, str] = {
    "entity_type": "str",
    "detector": "str",
    "n_verdicts": "int64",  # judged rows with a score from this detector
    "n_confirmed": "int64",
    "n_dismissed": "int64",
    "n_missed": "int64",  # confirmed rows this detector did not flag at the threshold in force
    "current_threshold": "float64",
    "proposed_threshold": "float64",  # NaN when nothing is proposed
    "precision_before": "float64",
    "recall_before": "float64",
    "f1_before": "float64",
    "precision_after": "float64",
    "recall_after": "float64",
    "f1_after": "float64",
    "status": "str",  # STATUS_* below, or why nothing was proposed
}
CALIBRATION_COLUMNS = tuple(CALIBRATION_DTYPES)
STATUS_PROPOSED = "proposed"
STATUS_UNCHANGED = "unchanged: the threshold in force already maximises F1"


def verdict_evaluation_inputs(scores: pd.DataFrame, verdicts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`scores` (evaluation's SCORE_COLUMNS) of the judged rows only, and `labels` (LABEL_COLUMNS) of the
    confirmed ones: anomaly kind `analyst_confirmed`, episode = the incident (or the row) judged."""
    judged = verdicts[["entity_type", "entity_id", "verdict"]].astype({"entity_id": "int64"})
    keys = judged[["entity_type", "entity_id"]]
    judged_scores = scores.merge(keys, on=["entity_type", "entity_id"], how="inner")
    confirmed = verdicts[verdicts["verdict"] == VERDICT_CONFIRM]
    episodes = (
        confirmed["incident_id"].where(confirmed["incident_id"].notna(), None)
        if "incident_id" in confirmed
        else pd.Series(None, index=confirmed.index, dtype="object")
    )
    own = confirmed["entity_type"] + ":" + confirmed["entity_id"].astype("int64").astype(str)
    labels = pd.DataFrame(
        {
            "entity_type": confirmed["entity_type"].astype("str").to_numpy(),
            "entity_id": confirmed["entity_id"].astype("int64").to_numpy(),
            "anomaly_kind": ANALYST_CONFIRMED,
            "episode_id": episodes.fillna(own).astype("str").to_numpy(),
        }
    )
    return judged_scores.reset_index(drop=True), labels


@dataclass(frozen=True)
class _Figures:
    precision: float
    recall: float
    f1: float


def _figures(scores: np.ndarray, confirmed: np.ndarray, threshold: float) -> _Figures:
    flagged = scores > threshold
    tp = int((flagged & confirmed).sum())
    fp = int((flagged & ~confirmed).sum())
    fn = int((~flagged & confirmed).sum())
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return _Figures(precision, recall, f1)


def best_f1_threshold(scores: np.ndarray, confirmed: np.ndarray, current: float) -> float:
    """The threshold (a row is flagged when its score exceeds it) with the highest F1 on these rows.

    Every threshold between two neighbouring distinct scores flags the same rows, so the candidates
    are those intervals. `current` is kept when its interval is among the best; otherwise the middle
    of the best interval nearest to it (below the lowest score: half way to it from below; thresholds
    stay positive where the scores are). Needs at least one confirmed row.
    """
    scores = np.asarray(scores, dtype=np.float64)
    confirmed = np.asarray(confirmed, dtype=bool)
    if not confirmed.any():
        raise ValueError("calibration needs at least one confirmed row")
    distinct = np.unique(scores)
    # Interval i flags the rows with a score above distinct[i - 1]: i = 0 flags all, i = len flags none.
    lows = np.concatenate([[-np.inf], distinct])
    highs = np.concatenate([distinct, [np.inf]])
    f1s = np.array([_figures(scores, confirmed, low if np.isfinite(low) else -np.inf).f1 for low in lows])
    f1s = np.nan_to_num(f1s, nan=0.0)
    best = np.flatnonzero(np.isclose(f1s, f1s.max(), rtol=0, atol=1e-12))
    for index in best:
        if lows[index] <= current < highs[index]:
            return float(current)
    nearest = min(best, key=lambda i: min(abs(current - lows[i]), abs(current - highs[i])))
    low, high = lows[nearest], highs[nearest]
    if not np.isfinite(low):
        gap = (distinct[1] - distinct[0]) if len(distinct) > 1 else abs(high)
        low = high - gap if high - gap > 0 or high <= 0 else 0.0
    return float((low + high) / 2)


def calibrate_thresholds(
    judged_scores: pd.DataFrame,
    current_thresholds: Mapping[tuple[str, str], float],
    min_verdicts: int = MIN_CALIBRATION_VERDICTS,
) -> pd.DataFrame:
    """One row per (entity type, detector) of `current_thresholds` (CALIBRATION_COLUMNS).

    `judged_scores` holds one row per judged entity and detector: entity_type, entity_id, detector,
    score (in the units of the current threshold: flagged when above it) and confirmed (bool).
    """
    rows = []
    for (entity_type, detector), current in sorted(current_thresholds.items()):
        mine = judged_scores[(judged_scores["entity_type"] == entity_type) & (judged_scores["detector"] == detector)]
        scores = mine["score"].to_numpy(np.float64)
        confirmed = mine["confirmed"].to_numpy(bool)
        before = _figures(scores, confirmed, current)
        row = {
            "entity_type": entity_type,
            "detector": detector,
            "n_verdicts": len(mine),
            "n_confirmed": int(confirmed.sum()),
            "n_dismissed": int((~confirmed).sum()),
            "n_missed": int((confirmed & ~(scores > current)).sum()),
            "current_threshold": float(current),
            "proposed_threshold": math.nan,
            "precision_before": before.precision,
            "recall_before": before.recall,
            "f1_before": before.f1,
            "precision_after": math.nan,
            "recall_after": math.nan,
            "f1_after": math.nan,
        }
        if len(mine) < min_verdicts:
            row["status"] = f"too few verdicts: {len(mine)} judged {entity_type} rows, at least {min_verdicts} needed"
        elif not confirmed.any() or confirmed.all():
            row["status"] = "needs both confirmed and dismissed rows to place a threshold between them"
        else:
            proposed = best_f1_threshold(scores, confirmed, current)
            after = _figures(scores, confirmed, proposed)
            row.update(
                proposed_threshold=proposed,
                precision_after=after.precision,
                recall_after=after.recall,
                f1_after=after.f1,
                status=STATUS_UNCHANGED if proposed == current else STATUS_PROPOSED,
            )
            logger.info(
                "%s %s: threshold %.4g -> %.4g (F1 %.3f -> %.3f on %d judged rows)",
                entity_type,
                detector,
                current,
                proposed,
                before.f1,
                after.f1,
                len(mine),
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(CALIBRATION_COLUMNS)).astype(CALIBRATION_DTYPES)


def proposed_thresholds(calibration: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(entity type, detector) -> proposed threshold, for the rows whose status is `proposed`."""
    proposed = calibration[calibration["status"] == STATUS_PROPOSED]
    return {
        (str(row.entity_type), str(row.detector)): float(row.proposed_threshold)
        for row in proposed.itertuples(index=False)
    }
