"""Thresholds calibrated on verdicts: misses lower them, dismissed flags raise them; verdicts as evaluation labels."""

from __future__ import annotations

import datetime as dt
import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from anomalens_dagster.core.calibration import (
    STATUS_PROPOSED,
    STATUS_UNCHANGED,
    best_f1_threshold,
    calibrate_store,
    calibrate_thresholds,
    proposed_thresholds,
    verdict_evaluation_inputs,
)
from anomalens_dagster.core.evaluation import evaluate_detections
from anomalens_dagster.core.feedback import Verdict, record_verdicts
from anomalens_dagster.core.registry import MODEL_REGISTRY_DDL
from anomalens_dagster.core.warehouse import ensure_store_tables


def judged(scores: list[float], confirmed: list[bool], detector: str = "zscore") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "entity_type": "order",
            "entity_id": np.arange(len(scores), dtype="int64"),
            "detector": detector,
            "score": scores,
            "confirmed": confirmed,
        }
    )


def test_confirmed_rows_below_the_threshold_misses_lower_it():
    # Threshold 5: ten dismissed rows score 1-2, ten confirmed rows 6-9 (flagged) and four at 3.5-4 (missed).
    scores = (
        [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0]
        + [6, 7, 8, 9, 6.5, 7.5, 8.5, 9.5, 6.2, 7.2]
        + [3.5, 3.6, 3.8, 4.0]
    )
    confirmed = [False] * 10 + [True] * 14
    (row,) = calibrate_thresholds(judged(scores, confirmed), {("order", "zscore"): 5.0}).to_dict("records")
    assert row["n_missed"] == 4
    assert row["status"] == STATUS_PROPOSED
    assert 2.0 < row["proposed_threshold"] < 3.5  # between the highest dismissed and the lowest confirmed
    assert row["proposed_threshold"] == pytest.approx(2.75)
    assert row["recall_before"] == pytest.approx(10 / 14)
    assert (row["recall_after"], row["precision_after"], row["f1_after"]) == (1.0, 1.0, 1.0)
    assert row["f1_after"] > row["f1_before"]


def test_dismissed_rows_above_the_threshold_raise_it():
    # Threshold 1: confirmed rows score 3-6, dismissed ones 1.2-1.6 (flagged: false alarms) and 0.2-0.5.
    scores = [3, 3.5, 4, 4.5, 5, 5.5, 6, 3.2, 3.7, 4.2] + [1.2, 1.3, 1.4, 1.5, 1.6] + [0.2, 0.3, 0.4, 0.5, 0.45]
    confirmed = [True] * 10 + [False] * 10
    (row,) = calibrate_thresholds(judged(scores, confirmed), {("order", "zscore"): 1.0}).to_dict("records")
    assert row["n_missed"] == 0
    assert row["precision_before"] == pytest.approx(10 / 15)
    assert 1.6 < row["proposed_threshold"] < 3.0
    assert row["precision_after"] == 1.0 and row["recall_after"] == 1.0
    assert proposed_thresholds(pd.DataFrame([row])) == {("order", "zscore"): row["proposed_threshold"]}


def test_a_threshold_that_already_maximises_f1_stays():
    scores = [0.1 * i for i in range(10)] + [5 + i for i in range(10)]
    confirmed = [False] * 10 + [True] * 10
    (row,) = calibrate_thresholds(judged(scores, confirmed), {("order", "zscore"): 3.0}).to_dict("records")
    assert row["status"] == STATUS_UNCHANGED
    assert row["proposed_threshold"] == 3.0


def test_fewer_than_twenty_verdicts_propose_nothing_and_say_so():
    (row,) = calibrate_thresholds(judged([1.0, 9.0] * 9, [False, True] * 9), {("order", "zscore"): 5.0}).to_dict(
        "records"
    )
    assert math.isnan(row["proposed_threshold"])
    assert row["status"].startswith("too few verdicts: 18 judged order rows, at least 20 needed")
    assert proposed_thresholds(pd.DataFrame([row])) == {}


def test_verdicts_of_one_kind_only_propose_nothing():
    (row,) = calibrate_thresholds(
        judged([float(i) for i in range(25)], [True] * 25), {("order", "zscore"): 5.0}
    ).to_dict("records")
    assert row["status"].startswith("needs both confirmed and dismissed")


def test_when_every_row_must_be_flagged_the_threshold_goes_below_the_lowest_score_and_stays_positive():
    threshold = best_f1_threshold(np.array([0.4, 0.6, 0.9]), np.array([True, True, True]), current=1.0)
    assert 0 < threshold < 0.4


def test_verdicts_become_evaluation_labels_of_the_judged_rows_only():
    scores = pd.DataFrame(
        {
            "entity_type": "activity",
            "entity_id": [1, 2, 3, 4],
            "detector": "ensemble",
            "score": [3.0, 2.0, 0.5, 0.1],
            "is_anomaly": [True, True, False, False],
        }
    )
    verdicts = pd.DataFrame(
        {
            "entity_type": "activity",
            "entity_id": [1, 2, 3],
            "verdict": ["confirm", "dismiss", "confirm"],  # 3 is a miss; 4 was never judged
            "incident_id": ["inc-1", "inc-1", None],
        }
    )
    judged_scores, labels = verdict_evaluation_inputs(scores, verdicts)
    assert sorted(judged_scores["entity_id"]) == [1, 2, 3]
    assert list(labels["episode_id"]) == ["inc-1", "activity:3"]
    (pooled, _kind) = evaluate_detections(judged_scores, labels).to_dict("records")
    assert (pooled["true_positives"], pooled["false_positives"], pooled["false_negatives"]) == (1, 1, 1)
    assert pooled["precision"] == 0.5 and pooled["recall"] == 0.5


def test_the_chosen_threshold_reaches_the_best_f1_any_threshold_reaches():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=300), 2)  # rounded: ties between rows
    confirmed = scores + rng.normal(scale=0.8, size=300) > 1.0

    def f1_at(threshold: float) -> float:
        flagged = scores > threshold
        tp = int((flagged & confirmed).sum())
        return 2 * tp / (tp + int(flagged.sum()) + int(confirmed.sum()))

    best = max(f1_at(threshold) for threshold in np.concatenate([[-np.inf], np.unique(scores)]))
    assert f1_at(best_f1_threshold(scores, confirmed, current=2.5)) == pytest.approx(best)


def test_scores_of_an_older_model_version_are_rescaled_to_the_latest_before_calibrating():
    """v1 fitted a threshold of 2, the retrained v2 one of 4 on a scale twice as wide: a confirmed row
    scored 3 by v1 is 6 in v2's units, above v2's threshold, not a miss."""
    with duckdb.connect() as conn:
        ensure_store_tables(conn)
        conn.execute(MODEL_REGISTRY_DDL)
        for version, threshold in ((1, 2.0), (2, 4.0)):
            conn.execute(
                "INSERT INTO ml.model_registry VALUES ('zscore', 'order', ?, '2026-03-01', NULL, NULL, 10, '{}', ?, "
                "'[]', ''::BLOB, '')",
                [version, json.dumps({"threshold": threshold})],
            )
        conn.execute(
            "CREATE SCHEMA detections; CREATE TABLE detections.order_scores (order_id BIGINT, created_at TIMESTAMP, "
            "detector VARCHAR, score DOUBLE, is_anomaly BOOLEAN, model_version BIGINT)"
        )
        verdicts = []
        for order_id in range(1, 25):
            confirmed, by_v1 = order_id <= 12, order_id % 12 < 6
            conn.execute("INSERT INTO store.orders VALUES (?, 1, '2026-03-01', 10.0, 'pending', 'landed')", [order_id])
            score = (3.0 if confirmed else 1.0) * (1 if by_v1 else 2)
            conn.execute(
                "INSERT INTO detections.order_scores VALUES (?, '2026-03-01', 'zscore', ?, ?, ?)",
                [order_id, score, score > (2.0 if by_v1 else 4.0), 1 if by_v1 else 2],
            )
            verdicts.append(Verdict("confirm" if confirmed else "dismiss", entity_type="order", entity_id=order_id))
        record_verdicts(conn, verdicts, "cli", dt.datetime(2026, 3, 2))

        store = calibrate_store(conn, {"order": 1.0, "activity": 1.0})

    rows = {row["detector"]: row for row in store.calibration.to_dict("records")}
    assert (rows["zscore"]["n_verdicts"], rows["zscore"]["n_missed"]) == (24, 0)
    assert rows["zscore"]["current_threshold"] == 4.0
    assert rows["zscore"]["status"] == STATUS_UNCHANGED
    assert store.latest_versions == {("order", "zscore"): 2}
