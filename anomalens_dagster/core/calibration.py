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

import duckdb
import numpy as np
import pandas as pd

from anomalens_dagster.constants import (
    ACTIVITY_SCORES,
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    DETECTOR_NAMES,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    MIN_CALIBRATION_VERDICTS,
    ORDER_SCORES,
    VERDICT_CONFIRM,
)
from anomalens_dagster.core.feedback import entity_verdicts
from anomalens_dagster.core.registry import (
    MODEL_REGISTRY_TABLE,
    THRESHOLD_SOURCE_CALIBRATION,
    ModelRecord,
    register_threshold,
)
from anomalens_dagster.core.warehouse import table_exists

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


LABELS_SIMULATION = "simulation labels"
LABELS_VERDICTS = "analyst verdicts"


@dataclass(frozen=True)
class EvaluationLabels:
    """What detection quality is measured against: the scores and labels to evaluate, which labels, how many."""

    scores: pd.DataFrame
    labels: pd.DataFrame
    source: str  # LABELS_SIMULATION or LABELS_VERDICTS
    count: int  # simulation labels of scored rows, or judged rows


def evaluation_labels(
    scores: pd.DataFrame, simulation_labels: pd.DataFrame, verdicts: pd.DataFrame
) -> EvaluationLabels:
    """The simulator's labels where the scored days have any; else the analysts' verdicts, over the
    judged rows only, where there are some; else the simulator's (empty) labels: nothing to evaluate."""
    if simulation_labels.empty and not verdicts.empty:
        judged_scores, labels = verdict_evaluation_inputs(scores, verdicts)
        return EvaluationLabels(judged_scores, labels, LABELS_VERDICTS, len(verdicts))
    return EvaluationLabels(scores, simulation_labels, LABELS_SIMULATION, len(simulation_labels))


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
    # Flags above each candidate, counted from the scores sorted once: linear after the sort.
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    confirmed_at_or_below = np.concatenate([[0], np.cumsum(confirmed[order])])
    at_or_below = np.searchsorted(sorted_scores, lows, side="right")
    true_positives = confirmed.sum() - confirmed_at_or_below[at_or_below]
    false_positives = (len(scores) - at_or_below) - true_positives
    false_negatives = confirmed.sum() - true_positives
    f1s = 2 * true_positives / (2 * true_positives + false_positives + false_negatives)
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


_SCORES_TABLES = {ENTITY_ACTIVITY: (ACTIVITY_SCORES, "activity_id"), ENTITY_ORDER: (ORDER_SCORES, "order_id")}


@dataclass(frozen=True)
class StoreCalibration:
    """A calibration of the store's thresholds on its verdicts: the table, and what it was computed from."""

    calibration: pd.DataFrame  # CALIBRATION_COLUMNS
    n_verdicts: int  # judged entities (an incident's verdict judges each of its rows)
    latest_versions: dict[tuple[str, str], int]  # (entity type, detector) -> the version a proposal applies to


def calibrate_store(
    conn: duckdb.DuckDBPyConnection,
    ensemble_thresholds: Mapping[str, float],
    min_verdicts: int = MIN_CALIBRATION_VERDICTS,
) -> StoreCalibration:
    """`calibrate_thresholds` on the store's verdicts (`ops.entity_verdicts`) and the scores of the
    judged rows (`detections.<entity>_scores`), against the latest registered model of each detector
    and the ensemble thresholds in force (per entity type). Entity types without a scores table or
    a registered model are left out."""
    verdicts = entity_verdicts(conn)
    registry = _registered_thresholds(conn)
    latest = registry.sort_values("version").groupby(["entity_type", "detector"]).tail(1)
    current = {(row.entity_type, row.detector): float(row.threshold) for row in latest.itertuples(index=False)}
    latest_fitted = {
        (row.entity_type, row.detector): float(row.fitted_threshold) for row in latest.itertuples(index=False)
    }
    judged_parts = []
    for entity_type, (table, id_column) in _SCORES_TABLES.items():
        if not table_exists(conn, table, DETECTIONS_SCHEMA) or not any(key[0] == entity_type for key in current):
            continue
        current[(entity_type, DETECTOR_ENSEMBLE)] = float(ensemble_thresholds[entity_type])
        mine = verdicts[verdicts["entity_type"] == entity_type]
        keys = pd.DataFrame(
            {"entity_id": mine["entity_id"].astype("int64"), "confirmed": mine["verdict"] == VERDICT_CONFIRM}
        )
        conn.register("judged_entities", keys)
        try:
            scores = conn.execute(
                f"""SELECT s.{id_column} AS entity_id, s.detector, s.score, s.model_version, j.confirmed
                    FROM {DETECTIONS_SCHEMA}.{table} AS s JOIN judged_entities AS j ON j.entity_id = s.{id_column}"""
            ).df()
        finally:
            conn.unregister("judged_entities")
        judged_parts.append(_in_current_units(scores.assign(entity_type=entity_type), registry, latest_fitted))
    judged = (
        pd.concat(judged_parts, ignore_index=True)
        if judged_parts
        else pd.DataFrame(columns=["entity_type", "entity_id", "detector", "score", "confirmed"])
    )
    versions = {(row.entity_type, row.detector): int(row.version) for row in latest.itertuples(index=False)}
    return StoreCalibration(calibrate_thresholds(judged, current, min_verdicts), len(verdicts), versions)


def _registered_thresholds(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every registered version's threshold in force and fitted threshold (the same before calibration)."""
    columns = ["entity_type", "detector", "version", "threshold", "fitted_threshold"]
    if not table_exists(conn, MODEL_REGISTRY_TABLE.split(".")[1], MODEL_REGISTRY_TABLE.split(".")[0]):
        return pd.DataFrame(columns=columns)
    return conn.execute(
        f"""SELECT entity_type, detector, version,
                   CAST(json_extract(metrics, '$.threshold') AS DOUBLE) AS threshold,
                   coalesce(CAST(json_extract(metrics, '$.fitted_threshold') AS DOUBLE),
                            CAST(json_extract(metrics, '$.threshold') AS DOUBLE)) AS fitted_threshold
            FROM {MODEL_REGISTRY_TABLE} WHERE detector IN $detectors""",
        {"detectors": list(DETECTOR_NAMES)},
    ).df()[columns]


def _in_current_units(
    scores: pd.DataFrame, registry: pd.DataFrame, latest_fitted: Mapping[tuple[str, str], float]
) -> pd.DataFrame:
    """Scores of older model versions rescaled to the latest version's scale: divided by the fitted
    threshold of the version that scored them, times the latest one's (a version that only changed
    the threshold keeps its scale). The ensemble's score is already on one scale."""
    fitted = registry.set_index(["entity_type", "detector", "version"])["fitted_threshold"]
    factors = []
    for row in scores[["entity_type", "detector", "model_version"]].itertuples(index=False):
        if row.detector == DETECTOR_ENSEMBLE:
            factors.append(1.0)
            continue
        scored_by = fitted.get((row.entity_type, row.detector, int(row.model_version)))
        target = latest_fitted.get((row.entity_type, row.detector))
        factors.append(target / scored_by if scored_by and target else math.nan)
    rescaled = scores.assign(score=scores["score"].to_numpy(np.float64) * np.asarray(factors, dtype=np.float64))
    return rescaled.dropna(subset=["score"])[["entity_type", "entity_id", "detector", "score", "confirmed"]]


@dataclass(frozen=True)
class AppliedThresholds:
    """What applying a calibration did: the model versions registered and the settings' new thresholds."""

    records: list[ModelRecord]
    thresholds: dict[str, dict[str, float]]  # the settings' `detection.thresholds`, proposals merged in
    applied: dict[tuple[str, str], float]


def apply_calibration(
    conn: duckdb.DuckDBPyConnection, store: StoreCalibration, settings_thresholds: Mapping[str, Mapping[str, float]]
) -> AppliedThresholds:
    """Register each proposed detector threshold as a new version of the latest model (its metrics say
    `threshold_source: calibration`, `calibration_verdicts` and the version it changed), and merge
    every proposal, the ensemble's included, into `settings_thresholds` (returned; the caller writes
    it to the settings file, so the next retraining keeps them). Nothing proposed changes nothing."""
    proposed = store.calibration[store.calibration["status"] == STATUS_PROPOSED]
    # Rounded once, so that the registry and the settings file hold the same value.
    applied = {
        (str(row.entity_type), str(row.detector)): float(f"{row.proposed_threshold:.6g}")
        for row in proposed.itertuples(index=False)
    }
    verdicts = {(str(row.entity_type), str(row.detector)): int(row.n_verdicts) for row in proposed.itertuples()}
    records = []
    for (entity_type, detector), threshold in sorted(applied.items()):
        if detector == DETECTOR_ENSEMBLE:
            continue
        if store.latest_versions.get((entity_type, detector)) is None:
            raise ValueError(f"{entity_type} {detector}: no registered model to apply threshold {threshold} to")
        records.append(
            register_threshold(
                conn,
                detector,
                entity_type,
                threshold,
                THRESHOLD_SOURCE_CALIBRATION,
                calibration_verdicts=verdicts[(entity_type, detector)],
            )
        )
    merged = {entity: dict(values) for entity, values in settings_thresholds.items()}
    for (entity_type, detector), threshold in applied.items():
        merged.setdefault(entity_type, {})[detector] = threshold
    return AppliedThresholds(records, merged, applied)
