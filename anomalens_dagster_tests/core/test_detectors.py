"""Detectors on tiny seeded frames: planted outliers, sign convention, determinism, explanations."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from anomalens_dagster.constants import DEFAULT_DBSCAN_EPS
from anomalens_dagster.core.detectors import (
    DETECTOR_CLASSES,
    AutoencoderDetector,
    DBSCANDetector,
    Detector,
    IsolationForestDetector,
    ZScoreDetector,
    feature_schema,
    make_detector,
)

NUMERIC = ["amount", "count", "hour"]
CATEGORICAL = ["action_type"]
DETECTORS = sorted(DETECTOR_CLASSES)

# The autoencoder needs only a few quick epochs to reconstruct typical rows far better than planted
# outliers. In so few dimensions the forest's "auto" cut-off flags about half the rows, so the tests
# set a rate.
TEST_PARAMS = {
    "zscore": {},
    "isolation_forest": {"n_estimators": 100, "contamination": 0.02},
    "dbscan": {},
    "autoencoder": {"epochs": 8, "batch_size": 64},
}


def normal_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 0.3, n),
            "count": rng.poisson(3.0, n),
            "hour": rng.integers(8, 20, n),
            "action_type": rng.choice(["view", "search", "login"], n, p=[0.4, 0.3, 0.3]),
        }
    )


def typical_rows() -> pd.DataFrame:
    """Rows at the centre of the training distribution, one per category."""
    return pd.DataFrame(
        {
            "amount": [20.0, 20.0, 20.0],
            "count": [3, 3, 3],
            "hour": [13, 13, 13],
            "action_type": ["view", "search", "login"],
        }
    )


def planted_outliers() -> pd.DataFrame:
    """Row 0 has a huge amount, row 1 a huge count, both at an hour never seen in training.

    Like the store's real anomalies they are off in more than one feature: a single extreme column
    among several barely shortens an isolation tree's path on 1,000 training rows.
    """
    return pd.DataFrame({"amount": [5_000.0, 20.0], "count": [3, 60], "hour": [2, 2], "action_type": ["view", "view"]})


def build(name: str, **overrides) -> Detector:
    return make_detector(name, NUMERIC, CATEGORICAL, **{**TEST_PARAMS[name], **overrides})


@pytest.fixture(scope="module")
def training() -> pd.DataFrame:
    return normal_rows(1_000, seed=1)


@pytest.fixture(scope="module", params=DETECTORS)
def fitted(request, training):
    return build(request.param).fit(training)


def test_each_detector_flags_planted_outliers_and_not_typical_rows(fitted):
    assert fitted.predict(planted_outliers()).tolist() == [1, 1]
    assert fitted.predict(typical_rows()).tolist() == [0, 0, 0]


def test_outliers_score_higher_than_inliers_for_every_detector(fitted):
    inlier_scores = fitted.score(typical_rows())
    outlier_scores = fitted.score(planted_outliers())
    assert outlier_scores.min() > inlier_scores.max()


def test_scores_are_one_float64_per_row(fitted):
    scores = fitted.score(normal_rows(50, seed=2))
    assert scores.dtype == np.float64
    assert scores.shape == (50,)
    assert np.isfinite(scores).all()


def test_predict_equals_score_above_threshold(fitted):
    rows = pd.concat([normal_rows(300, seed=3), planted_outliers()], ignore_index=True)
    expected = (fitted.score(rows) > fitted.threshold_).astype(np.int8)
    predicted = fitted.predict(rows)
    assert predicted.dtype == np.int8
    np.testing.assert_array_equal(predicted, expected)
    assert 0 < predicted.sum() < len(rows)


def test_same_seed_gives_identical_scores(fitted, training):
    refitted = build(fitted.name).fit(training)
    rows = pd.concat([normal_rows(200, seed=4), planted_outliers()], ignore_index=True)
    np.testing.assert_array_equal(refitted.score(rows), fitted.score(rows))
    assert refitted.threshold_ == fitted.threshold_


def test_unseen_category_at_scoring_is_scored_not_rejected(fitted):
    rows = typical_rows().assign(action_type=["brand_new_action", "view", None])
    scores = fitted.score(rows)
    assert np.isfinite(scores).all()
    assert fitted.predict(rows).shape == (3,)


def test_missing_feature_column_raises_an_error_naming_it(fitted):
    with pytest.raises(ValueError, match=r"missing from the input: \['count'\]"):
        fitted.score(typical_rows().drop(columns=["count"]))


def test_non_finite_feature_values_raise_an_error_naming_the_column(fitted):
    rows = typical_rows().assign(amount=[np.nan, 1.0, np.inf])
    with pytest.raises(ValueError, match=r"NaN or infinite.*'amount': 2"):
        fitted.score(rows)


def test_explain_puts_the_planted_feature_first(fitted):
    explanation = fitted.explain(planted_outliers(), top_k=2)
    assert list(explanation.columns) == ["feature_1", "contribution_1", "feature_2", "contribution_2"]
    assert explanation["feature_1"].tolist() == ["amount", "count"]
    assert (explanation["contribution_1"].abs() >= explanation["contribution_2"].abs()).all()


def test_explain_keeps_the_input_index_and_caps_top_k_at_the_number_of_features(fitted):
    rows = planted_outliers().set_axis([10, 20])
    explanation = fitted.explain(rows, top_k=99)
    assert explanation.index.tolist() == [10, 20]
    n_explained = 3 if fitted.name == "zscore" else 4  # zscore does not score the categorical feature
    assert list(explanation.columns)[-1] == f"contribution_{n_explained}"


def test_pickle_round_trip_gives_identical_scores(fitted):
    restored = pickle.loads(pickle.dumps(fitted))
    rows = pd.concat([normal_rows(100, seed=5), planted_outliers()], ignore_index=True)
    np.testing.assert_array_equal(restored.score(rows), fitted.score(rows))
    assert restored.threshold_ == fitted.threshold_
    assert restored.feature_schema_ == fitted.feature_schema_


def test_empty_frame_scores_and_explains_to_empty_results(fitted):
    empty = typical_rows().iloc[:0]
    assert fitted.score(empty).shape == (0,)
    assert fitted.predict(empty).shape == (0,)
    assert len(fitted.explain(empty)) == 0


def test_fitted_detector_records_its_feature_schema_and_training_metrics(fitted, training):
    assert fitted.feature_schema_ == feature_schema(NUMERIC, CATEGORICAL)
    metrics = fitted.training_metrics_
    assert metrics["n_rows"] == len(training)
    assert metrics["threshold"] == fitted.threshold_
    assert metrics["score_p50"] <= metrics["score_p90"] <= metrics["score_p99"] <= metrics["score_max"]
    assert metrics["training_anomaly_rate"] == pytest.approx(np.mean(fitted.score(training) > fitted.threshold_))


def test_importing_the_detectors_does_not_import_tensorflow():
    code = (
        "import sys, anomalens_dagster.core.detectors, anomalens_dagster.core.registry; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_make_detector_builds_each_detector_by_name():
    for name, cls in DETECTOR_CLASSES.items():
        detector = make_detector(name, NUMERIC, CATEGORICAL)
        assert type(detector) is cls
        assert detector.name == name
    assert set(DETECTOR_CLASSES) == {"zscore", "isolation_forest", "dbscan", "autoencoder"}


def test_make_detector_rejects_unknown_names_and_parameters():
    with pytest.raises(ValueError, match=r"unknown detector 'lof'"):
        make_detector("lof", NUMERIC)
    with pytest.raises(ValueError, match=r"zscore detector has no parameters \['eps'\]"):
        make_detector("zscore", NUMERIC, eps=0.5)


def test_fitting_without_a_required_column_names_it(training):
    with pytest.raises(ValueError, match=r"missing from the input: \['hour'\]"):
        ZScoreDetector(NUMERIC).fit(training.drop(columns=["hour"]))


def test_scoring_before_fitting_fails():
    with pytest.raises(Exception, match="not fitted"):
        ZScoreDetector(NUMERIC).score(typical_rows())


# --- z-score ---------------------------------------------------------------------------------------


def test_zscore_uses_hand_computed_z_and_skips_a_zero_variance_feature():
    training = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [5, 5, 5, 5]})
    detector = ZScoreDetector(["a", "b"], z_threshold=2.0).fit(training)
    # mean(a) = 2.5, population std(a) = sqrt(1.25); b is constant, so it is skipped, not divided by.
    assert detector.skipped_features_ == ["b"]
    assert detector.training_metrics_["skipped_features"] == ["b"]
    rows = pd.DataFrame({"a": [2.5, 5.0, 0.0], "b": [5, 1_000, 5]})
    expected_z = [0.0, 2.5 / np.sqrt(1.25), -2.5 / np.sqrt(1.25)]
    np.testing.assert_allclose(detector.z_scores(rows)["a"], expected_z)
    assert list(detector.z_scores(rows).columns) == ["a"]
    np.testing.assert_allclose(detector.score(rows), np.abs(expected_z))
    assert detector.predict(rows).tolist() == [0, 1, 1]
    assert detector.threshold_ == 2.0


def test_zscore_explanation_is_the_signed_z_of_the_top_features():
    training = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 20.0, 30.0, 40.0]})
    detector = ZScoreDetector(["a", "b"]).fit(training)
    explanation = detector.explain(pd.DataFrame({"a": [2.5], "b": [-5.0]}), top_k=2)
    assert explanation.loc[0, "feature_1"] == "b"
    assert explanation.loc[0, "contribution_1"] == pytest.approx(-30.0 / np.sqrt(125.0))
    assert explanation.loc[0, "feature_2"] == "a"
    assert explanation.loc[0, "contribution_2"] == pytest.approx(0.0)


def test_zscore_refuses_training_data_where_every_feature_is_constant():
    with pytest.raises(ValueError, match="every numeric feature is constant"):
        ZScoreDetector(["a"]).fit(pd.DataFrame({"a": [3.0, 3.0, 3.0]}))


# --- isolation forest ------------------------------------------------------------------------------


def test_isolation_forest_auto_threshold_follows_the_sklearn_offset(training):
    detector = IsolationForestDetector(NUMERIC, CATEGORICAL, n_estimators=50, contamination="auto").fit(training)
    assert detector.threshold_ == pytest.approx(0.5)
    assert detector.threshold_ == -detector.forest_.offset_
    # sklearn's own predict (-1 = outlier) agrees with ours after the sign flip.
    inputs = detector.preprocessor_.transform(training[NUMERIC].to_numpy(np.float64), training[CATEGORICAL])
    np.testing.assert_array_equal(detector.predict(training), (detector.forest_.predict(inputs) == -1).astype(np.int8))


def test_isolation_forest_contamination_fraction_flags_that_share_of_training_rows(training):
    detector = IsolationForestDetector(NUMERIC, CATEGORICAL, n_estimators=50, contamination=0.05).fit(training)
    assert detector.training_metrics_["training_anomaly_rate"] == pytest.approx(0.05, abs=0.002)
    assert detector.threshold_ == pytest.approx(np.quantile(detector.score(training), 0.95), rel=1e-3)


def test_isolation_forest_explains_an_unseen_category_as_the_top_feature(training):
    detector = IsolationForestDetector(NUMERIC, CATEGORICAL, n_estimators=50).fit(training)
    explanation = detector.explain(typical_rows().assign(action_type="never_seen"), top_k=1)
    assert explanation["feature_1"].tolist() == ["action_type"] * 3
    np.testing.assert_allclose(explanation["contribution_1"], np.sqrt(len(training)))


# --- DBSCAN ----------------------------------------------------------------------------------------


def rms_scaled(inputs: np.ndarray) -> np.ndarray:
    """DBSCAN's distances are RMS per preprocessed column: Euclidean on inputs / sqrt(width)."""
    return inputs / np.sqrt(inputs.shape[1])


def test_dbscan_noise_equals_sklearn_dbscan_noise_when_it_fits_on_every_row(training):
    detector = DBSCANDetector(NUMERIC, CATEGORICAL, eps=0.25, min_samples=6, max_fit_rows=len(training)).fit(training)
    assert detector.training_metrics_["n_sampled_rows"] == len(training)
    inputs = rms_scaled(detector.preprocessor_.transform(training[NUMERIC].to_numpy(np.float64), training[CATEGORICAL]))
    sklearn_noise = DBSCAN(eps=0.25, min_samples=6).fit(inputs).labels_ == -1
    assert 0 < sklearn_noise.sum() < len(training)
    np.testing.assert_array_equal(detector.predict(training), sklearn_noise.astype(np.int8))


def test_dbscan_counts_duplicate_rows_towards_core_samples_and_keeps_each_core_once():
    # Five identical rows form a core sample (min_samples=5); a sixth distinct row far away is noise.
    training = pd.DataFrame({"x": [0.0] * 5 + [10.0], "y": [1.0] * 5 + [1.0]})
    detector = DBSCANDetector(["x", "y"], eps=0.5, min_samples=5, log_skewed=False).fit(training)
    assert detector.training_metrics_["n_core_samples"] == 1
    assert detector.predict(training).tolist() == [0, 0, 0, 0, 0, 1]


def test_dbscan_fits_on_a_reproducible_sample_of_max_fit_rows(training):
    first = DBSCANDetector(NUMERIC, CATEGORICAL, max_fit_rows=300, random_state=3).fit(training)
    second = DBSCANDetector(NUMERIC, CATEGORICAL, max_fit_rows=300, random_state=3).fit(training)
    other_seed = DBSCANDetector(NUMERIC, CATEGORICAL, max_fit_rows=300, random_state=4).fit(training)
    assert first.training_metrics_["n_sampled_rows"] == 300
    assert 0 < first.training_metrics_["n_core_samples"] <= 300
    np.testing.assert_array_equal(first.core_samples_, second.core_samples_)
    assert not np.array_equal(first.core_samples_, other_seed.core_samples_)


def test_dbscan_default_min_samples_keeps_a_percent_or_two_of_alike_anomalies_noise():
    # 1.5 % of the rows are near copies of one another, as the bursts of all episodes are: the
    # default 2,000-row fit sample holds about 30 of them, a core sample for min_samples 20.
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(10_000, 2))
    alike = np.array([6.0, 6.0]) + rng.normal(scale=0.01, size=(150, 2))
    training = pd.DataFrame(np.vstack([normal, alike]), columns=["x", "y"])
    default = DBSCANDetector(["x", "y"], eps=DEFAULT_DBSCAN_EPS, log_skewed=False).fit(training)
    lower = DBSCANDetector(["x", "y"], eps=DEFAULT_DBSCAN_EPS, min_samples=20, log_skewed=False).fit(training)
    assert default.predict(training)[-150:].all()
    assert not lower.predict(training)[-150:].any()
    assert default.predict(training)[:-150].mean() < 0.01


def test_dbscan_derives_eps_from_the_k_distance_quantile_when_unset(training):
    detector = DBSCANDetector(
        NUMERIC, CATEGORICAL, eps=None, eps_quantile=0.9, min_samples=5, max_fit_rows=len(training)
    ).fit(training)
    inputs = rms_scaled(detector.preprocessor_.transform(training[NUMERIC].to_numpy(np.float64), training[CATEGORICAL]))
    fifth_neighbour = NearestNeighbors(n_neighbors=5).fit(inputs).kneighbors(inputs)[0][:, -1]
    assert detector.eps_ == pytest.approx(np.quantile(fifth_neighbour, 0.9))
    assert detector.threshold_ == detector.eps_
    assert detector.training_metrics_["n_core_samples"] == np.sum(fifth_neighbour <= detector.eps_)
    sklearn_noise = DBSCAN(eps=detector.eps_, min_samples=5).fit(inputs).labels_ == -1
    np.testing.assert_array_equal(detector.predict(training), sklearn_noise.astype(np.int8))


def test_dbscan_without_core_samples_fails_with_advice():
    training = pd.DataFrame({"x": [0.0, 10.0, 20.0, 30.0]})
    with pytest.raises(ValueError, match="no core samples with eps=0.1 .*increase eps"):
        DBSCANDetector(["x"], eps=0.1, min_samples=2).fit(training)


def test_dbscan_needs_at_least_min_samples_training_rows():
    with pytest.raises(ValueError, match="3 training rows cannot hold a core sample of min_samples=5"):
        DBSCANDetector(["x"], min_samples=5).fit(pd.DataFrame({"x": [0.0, 1.0, 2.0]}))


def test_dbscan_explanation_adds_up_to_the_squared_distance(training):
    detector = DBSCANDetector(NUMERIC, CATEGORICAL, eps=1.0).fit(training)
    rows = pd.concat([planted_outliers(), typical_rows()], ignore_index=True)
    explanation = detector.explain(rows, top_k=4)
    total = explanation[[f"contribution_{rank}" for rank in range(1, 5)]].sum(axis=1)
    np.testing.assert_allclose(total, detector.score(rows) ** 2)


# --- autoencoder -----------------------------------------------------------------------------------


def test_autoencoder_reports_epochs_to_the_callback_and_drops_it_when_pickled(training):
    seen: list[tuple[int, float]] = []
    detector = AutoencoderDetector(
        NUMERIC,
        CATEGORICAL,
        epochs=3,
        batch_size=256,
        on_epoch_end=lambda epoch, logs: seen.append((epoch, logs["loss"])),
    ).fit(training)
    assert [epoch for epoch, _ in seen] == list(range(detector.training_metrics_["epochs_run"]))
    assert detector.training_metrics_["final_loss"] == pytest.approx(seen[-1][1])
    assert pickle.loads(pickle.dumps(detector)).on_epoch_end is None
    assert detector.on_epoch_end is not None


def test_autoencoder_threshold_is_the_configured_quantile_of_training_errors(training):
    detector = AutoencoderDetector(NUMERIC, CATEGORICAL, epochs=2, threshold_quantile=0.9).fit(training)
    assert detector.threshold_ == pytest.approx(np.quantile(detector.score(training), 0.9))
    assert detector.training_metrics_["training_anomaly_rate"] == pytest.approx(0.1, abs=0.002)


@pytest.mark.parametrize("fitted", ["autoencoder"], indirect=True)
def test_autoencoder_explanation_adds_up_to_the_score(fitted):
    rows = planted_outliers()
    explanation = fitted.explain(rows, top_k=4)
    total = explanation[[f"contribution_{rank}" for rank in range(1, 5)]].sum(axis=1)
    np.testing.assert_allclose(total, fitted.score(rows))


@pytest.mark.parametrize("fitted", ["autoencoder"], indirect=True)
def test_autoencoder_scores_with_numpy_what_its_keras_model_reconstructs(fitted):
    rows = typical_rows()
    inputs = fitted.preprocessor_.transform(rows[list(NUMERIC)].to_numpy(np.float64), rows[list(CATEGORICAL)]).astype(
        np.float32
    )

    keras_errors = ((inputs - fitted.keras_model().predict(inputs, verbose=0)) ** 2).mean(axis=1)

    np.testing.assert_allclose(fitted.score(rows), keras_errors, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("fitted", ["autoencoder"], indirect=True)
def test_loading_and_scoring_a_trained_autoencoder_does_not_import_tensorflow(fitted, tmp_path):
    artifact = tmp_path / "autoencoder.pickle"
    artifact.write_bytes(pickle.dumps((fitted, typical_rows())))
    code = (
        "import pickle, sys; "
        f"detector, rows = pickle.loads(open({str(artifact)!r}, 'rb').read()); "
        "assert len(detector.score(rows)) == len(rows); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
