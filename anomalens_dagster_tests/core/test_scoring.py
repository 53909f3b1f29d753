"""Scoring with several detectors and the threshold-scaled ensemble, on hand-made detectors."""

import numpy as np
import pandas as pd
import pytest

from anomalens_dagster.core.detectors import make_detector
from anomalens_dagster.core.scoring import ENSEMBLE_RATIO_CAP, ScoringModel, score_rows, scores_dtypes


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


def test_the_ensemble_of_two_detectors_is_the_mean_of_their_threshold_ratios(zscore_models):
    # y = 11.4 is |z| = 3 for both: ratio 1.5 for the strict model (threshold 2), 0.75 for the lenient one (4).
    scores = score_rows(zscore_models, day([2.0], [11.4]), "activity_id", "timestamp").set_index("detector")

    assert scores.loc["strict", "score"] == pytest.approx(3.0)
    assert bool(scores.loc["strict", "is_anomaly"]) and not bool(scores.loc["lenient", "is_anomaly"])
    assert scores.loc["ensemble", "score"] == pytest.approx((1.5 + 0.75) / 2)
    assert bool(scores.loc["ensemble", "is_anomaly"])


def test_the_ensemble_is_the_median_ratio_so_one_detector_alone_cannot_flag_a_row(zscore_models):
    training = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [10.0, 10.0, 10.0, 10.0, 11.0]})
    hair_trigger = make_detector("zscore", ["x", "y"], z_threshold=0.5, log_skewed=False).fit(training)
    models = {**zscore_models, "hair_trigger": ScoringModel(hair_trigger, 1)}
    # y = 10.6 is |z| = 1: ratios 0.5 (strict), 0.25 (lenient) and 2.0 (hair trigger).
    scores = score_rows(models, day([2.0], [10.6]), "activity_id", "timestamp").set_index("detector")

    assert bool(scores.loc["hair_trigger", "is_anomaly"])
    assert scores.loc["ensemble", "score"] == pytest.approx(0.5)
    assert not bool(scores.loc["ensemble", "is_anomaly"])


def test_one_extreme_detector_is_capped_in_the_ensemble(zscore_models):
    # |z| = 100 on y: strict ratio 50 and lenient 25, both capped.
    scores = score_rows(zscore_models, day([2.0], [50.2]), "activity_id", "timestamp").set_index("detector")

    assert scores.loc["ensemble", "score"] == pytest.approx(ENSEMBLE_RATIO_CAP)


def test_scoring_without_models_says_what_to_materialise():
    with pytest.raises(ValueError, match="materialise the model assets"):
        score_rows({}, day([1.0], [1.0]), "activity_id", "timestamp")


def test_the_ensemble_flags_above_the_threshold_it_is_given(zscore_models):
    # Ensemble score 1.125 (see above): flagged at the default 1, not at a calibrated 1.2.
    features = day([2.0], [11.4])
    default = score_rows(zscore_models, features, "activity_id", "timestamp").set_index("detector")
    calibrated = score_rows(zscore_models, features, "activity_id", "timestamp", 1.2).set_index("detector")

    assert bool(default.loc["ensemble", "is_anomaly"])
    assert not bool(calibrated.loc["ensemble", "is_anomaly"])
    assert calibrated.loc["ensemble", "score"] == default.loc["ensemble", "score"]
