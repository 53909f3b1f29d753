"""Tail calibration: a detector's score turned into how rare it is among the training rows."""

import numpy as np
import pytest

from anomalens_dagster.core.detectors.calibration import TAIL_START_QUANTILE, TailCalibration


def test_the_bulk_follows_the_empirical_share_of_training_scores_at_or_above():
    training = np.arange(1_000, dtype=float)  # uniform 0..999

    calibration = TailCalibration.fit(training)

    assert np.exp(calibration.log_p(np.array([-5.0, 0.0]))) == pytest.approx([1.0, 1.0])
    assert np.exp(calibration.log_p(np.array([499.5]))) == pytest.approx(0.5, abs=0.01)
    assert np.exp(calibration.log_p(np.array([899.1]))) == pytest.approx(0.1, abs=0.01)


def test_beyond_the_bulk_the_probability_falls_exponentially_with_the_quantile_matched_scale():
    rng = np.random.default_rng(1)
    training = rng.exponential(scale=2.0, size=200_000)

    calibration = TailCalibration.fit(training)

    start = calibration.tail_start
    assert start == pytest.approx(np.quantile(training, TAIL_START_QUANTILE))
    assert calibration.tail_scale == pytest.approx(2.0, rel=0.05)
    # An exponential's survival at 30 is exp(-15), far beyond the 200k training rows.
    assert calibration.log_p(np.array([30.0]))[0] == pytest.approx(-15.0, abs=0.6)


def test_the_probability_never_rises_with_the_score_and_never_ties_beyond_the_training_data():
    rng = np.random.default_rng(2)
    calibration = TailCalibration.fit(rng.normal(size=5_000) ** 2)

    grid = np.linspace(-1, 200, 5_000)
    log_p = calibration.log_p(grid)

    assert (np.diff(log_p) <= 1e-12).all()
    assert (np.diff(log_p[grid > calibration.tail_start]) < 0).all()


def test_a_power_calibrates_on_the_powered_scale():
    rng = np.random.default_rng(3)
    z = np.abs(rng.normal(size=50_000))

    squared = TailCalibration.fit(z, power=2.0)

    # P(|Z| >= 4) = 6.3e-5; on z itself an exponential tail says about 1e-3, on z squared about 1e-4.
    assert squared.log_p(np.array([4.0]))[0] / np.log(10) == pytest.approx(-4.2, abs=0.5)


def test_training_scores_without_any_spread_above_the_bulk_make_anything_above_it_very_rare():
    calibration = TailCalibration.fit(np.zeros(100))

    assert calibration.log_p(np.array([0.0]))[0] == pytest.approx(0.0)
    assert calibration.log_p(np.array([0.001]))[0] < -1_000


def test_non_finite_training_scores_are_refused():
    with pytest.raises(ValueError, match="finite"):
        TailCalibration.fit(np.array([1.0, np.nan]))
