"""Scoring with several detectors and the ensemble of their tail probabilities, on hand-made detectors."""

import numpy as np
import pandas as pd
import pytest

from anomalens_dagster.constants import ENSEMBLE_THRESHOLD
from anomalens_dagster.core.detectors import make_detector
from anomalens_dagster.core.scoring import ScoringModel, ensemble_score, score_rows, scores_dtypes


@pytest.fixture
def zscore_models():
    training = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [10.0, 10.0, 10.0, 10.0, 11.0]})
    # x: mean 2, population std sqrt(2); y: mean 10.2, std 0.4.
    strict = make_detector("zscore", ["x", "y"], z_threshold=2.0, log_skewed=False).fit(training)
    lenient = make_detector("zscore", ["x", "y"], z_threshold=4.0, log_skewed=False).fit(training)
    return {"strict": ScoringModel(strict, 3), "lenient": ScoringModel(lenient, 7)}


def day(xs, ys):
    return pd.DataFrame({"id": np.arange(1, len(xs) + 1), "timestamp": pd.Timestamp("2026-03-01"), "x": xs, "y": ys})


def test_every_row_gets_one_score_per_detector_and_one_for_the_ensemble(zscore_models):
    scores = score_rows(zscore_models, day([2.0, 2.0], [10.2, 10.2]), "activity_id", "timestamp")

    assert list(scores.columns) == ["activity_id", "timestamp", "detector", "score", "is_anomaly", "model_version"]
    assert scores.groupby("detector").size().to_dict() == {"ensemble": 2, "lenient": 2, "strict": 2}
    assert scores.set_index("detector")["model_version"].groupby(level=0).first().to_dict() == {
        "ensemble": 0,
        "lenient": 7,
        "strict": 3,
    }


def test_the_scores_have_the_dtypes_their_tables_shape_version_is_derived_from(zscore_models):
    features = day([2.0, 9.0], [10.2, 10.2]).astype({"timestamp": "datetime64[us]"})

    scores = score_rows(zscore_models, features, "activity_id", "timestamp")

    assert scores.dtypes.astype(str).to_dict() == scores_dtypes("activity_id", "timestamp")


def test_the_ensemble_is_the_median_capped_ratio_unless_one_detector_is_sure():
    ordinary = np.log(np.full((4, 3), 0.5))
    ratios = np.array([[0.5, 9.0, 0.5], [1.2, 9.0, 0.5], [1.6, 9.0, 0.5], [3.0, 9.0, 0.5]])
    sure = ordinary.copy()
    sure[2, 2] = np.log(1e-9)  # one detector: rarer than 1 in 1e9 training rows

    ensemble = ensemble_score(ratios, sure)

    # Median of the ratios (capped at 4): (1.2 + 1.6) / 2, then 4; the third column is the sure detector's 9 / 6.
    assert ensemble == pytest.approx([1.4, 4.0, 1.5])
    assert ensemble_score(ratios, ordinary)[2] == pytest.approx(0.5)


def test_one_detector_merely_past_its_threshold_does_not_flag_a_row_alone():
    ratios = np.array([[2.0], [0.3], [0.3], [0.3]])
    log_p = np.log(np.array([[1e-3], [0.4], [0.4], [0.4]]))

    assert ensemble_score(ratios, log_p)[0] < ENSEMBLE_THRESHOLD


def test_the_sure_detectors_evidence_orders_probabilities_far_below_the_smallest_float():
    ensemble = ensemble_score(np.ones((2, 2)), np.array([[-2000.0, -1000.0], [0.0, 0.0]]))

    assert np.isfinite(ensemble).all()
    assert ensemble[0] == pytest.approx(2000 / np.log(10) / 6)
    assert ensemble[0] > ensemble[1] > ENSEMBLE_THRESHOLD


@pytest.fixture
def calibrated_models():
    """Two z-score detectors on 4,000 Gaussian rows, one watching x, the other y."""
    rng = np.random.default_rng(0)
    training = pd.DataFrame({"x": rng.normal(size=4_000), "y": rng.normal(size=4_000)})
    watch_x = make_detector("zscore", ["x"], z_threshold=2.0, log_skewed=False).fit(training)
    watch_y = make_detector("zscore", ["y"], z_threshold=2.0, log_skewed=False).fit(training)
    return {"watch_x": ScoringModel(watch_x, 1), "watch_y": ScoringModel(watch_y, 1)}


def test_one_sure_detector_flags_a_row_the_others_find_ordinary(calibrated_models):
    scores = score_rows(calibrated_models, day([10.0], [0.0]), "activity_id", "timestamp").set_index("detector")

    assert bool(scores.loc["watch_x", "is_anomaly"]) and not bool(scores.loc["watch_y", "is_anomaly"])
    assert bool(scores.loc["ensemble", "is_anomaly"])


def test_a_detector_merely_past_its_threshold_does_not_flag_the_row_alone(calibrated_models):
    # |z| = 2.5 passes the hair-trigger threshold of 2, but one normal row in about 80 is as far out.
    scores = score_rows(calibrated_models, day([2.5], [0.0]), "activity_id", "timestamp").set_index("detector")

    assert bool(scores.loc["watch_x", "is_anomaly"])
    assert not bool(scores.loc["ensemble", "is_anomaly"])


def test_the_ensemble_score_keeps_ranking_rows_beyond_anything_seen_in_training(calibrated_models):
    scores = score_rows(calibrated_models, day([8.0, 12.0, 40.0], [0.0, 0.0, 0.0]), "activity_id", "timestamp")

    ensemble = scores.loc[scores["detector"] == "ensemble", "score"].to_numpy()
    assert ensemble[0] < ensemble[1] < ensemble[2]


def test_scoring_with_a_model_fitted_before_calibration_says_to_retrain_it(calibrated_models):
    old = calibrated_models["watch_x"].detector
    del old.tail_calibration_

    with pytest.raises(ValueError, match="retrain it"):
        score_rows(calibrated_models, day([1.0], [1.0]), "activity_id", "timestamp")


def test_scoring_without_models_says_what_to_materialise():
    with pytest.raises(ValueError, match="materialise the model assets"):
        score_rows({}, day([1.0], [1.0]), "activity_id", "timestamp")


def test_the_ensemble_flags_above_the_threshold_it_is_given(zscore_models):
    features = day([2.0], [11.4])
    score = (
        score_rows(zscore_models, features, "activity_id", "timestamp").set_index("detector").loc["ensemble", "score"]
    )
    below = score_rows(zscore_models, features, "activity_id", "timestamp", score * 0.9).set_index("detector")
    above = score_rows(zscore_models, features, "activity_id", "timestamp", score * 1.1).set_index("detector")

    assert score > 0
    assert bool(below.loc["ensemble", "is_anomaly"])
    assert not bool(above.loc["ensemble", "is_anomaly"])
    assert below.loc["ensemble", "score"] == above.loc["ensemble", "score"] == score
