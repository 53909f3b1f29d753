"""Isolation Forest detector (scikit-learn), with the sign flipped so that higher = more anomalous."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from anomalens_dagster.constants import (
    DEFAULT_IFOREST_CONTAMINATION,
    DEFAULT_IFOREST_N_ESTIMATORS,
    DEFAULT_SEED,
    DETECTOR_ISOLATION_FOREST,
)
from anomalens_dagster.core.detectors.base import Detector
from anomalens_dagster.core.detectors.preprocessing import TabularPreprocessor


class IsolationForestDetector(Detector):
    """Rows that random axis-aligned splits isolate in few steps are anomalous.

    score = -`IsolationForest.score_samples` (in (0, 1]; higher = easier to isolate).
    `threshold_ = -offset_` of the fitted forest: 0.5 for `contamination="auto"` (the original
    paper's cut-off), the training-score quantile 1 - contamination for a fraction — so `predict`
    agrees with scikit-learn's own `predict`. `n_jobs` threads score the trees in parallel.

    `explain` is a cheap marginal view, not a path attribution: a numeric feature contributes its
    |z| in the forest's input space (skewed features log-transformed, then standardised); a
    categorical feature contributes sqrt((1 - p) / p), the |z| of its category's 0/1 indicator for a
    category of training share p — large for rare categories, sqrt(n_training_rows) for a category
    never seen in training.
    Fitted: `preprocessor_`, `forest_`.
    """

    name = DETECTOR_ISOLATION_FOREST

    def __init__(
        self,
        numeric_features: Sequence[str],
        categorical_features: Sequence[str] = (),
        n_estimators: int = DEFAULT_IFOREST_N_ESTIMATORS,
        contamination: float | str = DEFAULT_IFOREST_CONTAMINATION,
        max_samples: int | float | str = "auto",
        random_state: int = DEFAULT_SEED,
        log_skewed: bool = True,
        n_jobs: int | None = None,
    ) -> None:
        self.numeric_features = numeric_features
        self.categorical_features = categorical_features
        self.n_estimators = n_estimators
        self.contamination = contamination
        self.max_samples = max_samples
        self.random_state = random_state
        self.log_skewed = log_skewed
        self.n_jobs = n_jobs

    def _fit(self, numeric: np.ndarray, categorical: pd.DataFrame) -> tuple[np.ndarray, dict[str, Any]]:
        self.preprocessor_ = TabularPreprocessor(log_skewed=self.log_skewed).fit(numeric, categorical)
        inputs = self.preprocessor_.transform(numeric, categorical)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            contamination=self.contamination,
            max_samples=self.max_samples,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(inputs)
        self.threshold_ = float(-self.forest_.offset_)
        return self._forest_scores(inputs), {}

    def _score(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        return self._forest_scores(self.preprocessor_.transform(numeric, categorical))

    def _forest_scores(self, inputs: np.ndarray) -> np.ndarray:
        # score_samples ignores the estimator's n_jobs and parallelises only under a joblib context.
        with joblib.parallel_config(backend="threading", n_jobs=self.n_jobs):
            return -self.forest_.score_samples(inputs)

    def _contributions(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        numeric_part = np.abs(self.preprocessor_.standardised_numeric(numeric))
        unseen = np.sqrt(self.preprocessor_.n_rows_)
        categorical_parts = [
            # code -1 (unseen or missing) picks the appended last entry
            np.append(np.sqrt((1.0 - frequencies) / frequencies), unseen)[codes]
            for codes, frequencies in zip(
                self.preprocessor_.category_codes(categorical), self.preprocessor_.category_frequencies_, strict=True
            )
        ]
        return np.column_stack([numeric_part, *categorical_parts])
