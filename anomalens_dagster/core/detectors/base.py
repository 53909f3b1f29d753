"""The one interface every detector implements, and the input checks they share.

A detector is a scikit-learn style estimator over a feature DataFrame: hyperparameters and the
feature lists are stored by the constructor, `fit(X)` learns everything else (attributes ending in
`_`, preprocessing included) and returns the detector, `score(X)` is one float per row where higher
means more anomalous, `predict(X)` is `score(X) > threshold_` as 0/1, and `explain(X, top_k)` names
the features that drove each row's score. Subclasses implement `_fit`, `_score` and
`_contributions` on validated arrays; sign conventions of the underlying libraries stay inside them.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from anomalens_dagster.constants import DEFAULT_EXPLAIN_TOP_K
from anomalens_dagster.core.detectors.calibration import TailCalibration

logger = logging.getLogger(__name__)

NUMERIC = "numeric"
CATEGORICAL = "categorical"

# Ordered (column name, kind) pairs, kind being NUMERIC or CATEGORICAL. Kinds are coarse on purpose:
# a numeric column read as int64 one day and float64 the next is the same feature to every detector.
FeatureSchema = list[tuple[str, str]]

TRAINING_SCORE_QUANTILES = (0.5, 0.9, 0.99)


def feature_schema(numeric_features: Sequence[str], categorical_features: Sequence[str] = ()) -> FeatureSchema:
    """The schema a detector built with these feature lists is fitted on (numeric first)."""
    return [(name, NUMERIC) for name in numeric_features] + [(name, CATEGORICAL) for name in categorical_features]


class Detector(BaseEstimator, ABC):
    """Base class of the four detectors; see the module docstring for the contract.

    Fitted attributes common to all detectors:
    - `feature_schema_`: the `FeatureSchema` the detector was fitted on; scoring needs these columns.
    - `threshold_`: rows with `score > threshold_` are anomalies.
    - `tail_calibration_`: how rare each score is among the training rows the detector calls normal
      (`calibration.TailCalibration`), which puts every detector on one scale for the ensemble.
    - `training_metrics_`: JSON-ready dict with `n_rows`, `n_features`, `threshold`,
      `training_anomaly_rate`, `score_p50`, `score_p90`, `score_p99`, `score_max`, `fit_seconds`,
      plus detector-specific keys.
    """

    name: ClassVar[str]
    # The scale on which the score's upper tail is exponential (calibration.py): score ** tail_power.
    tail_power: ClassVar[float] = 1.0

    numeric_features: Sequence[str]
    categorical_features: Sequence[str]

    # --- public API ---------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame) -> Self:
        """Learn preprocessing, model and threshold from the training frame `X`."""
        schema = self._checked_schema()
        self._check_params()
        numeric, categorical = _validated_inputs(X, schema, self.name)
        if len(numeric) == 0:
            raise ValueError(f"{self.name} detector: cannot fit on an empty frame; the training window has no rows")
        started = time.perf_counter()
        training_scores, extra_metrics = self._fit(numeric, categorical)
        self.feature_schema_ = schema
        self.tail_calibration_ = TailCalibration.fit(training_scores, self.tail_power)
        self.training_metrics_ = {
            "n_rows": len(numeric),
            "n_features": len(schema),
            "threshold": float(self.threshold_),
            "training_anomaly_rate": float(np.mean(training_scores > self.threshold_)),
            **{
                f"score_p{round(q * 100)}": float(value)
                for q, value in zip(
                    TRAINING_SCORE_QUANTILES, np.quantile(training_scores, TRAINING_SCORE_QUANTILES), strict=True
                )
            },
            "score_max": float(training_scores.max()),
            "fit_seconds": round(time.perf_counter() - started, 3),
            **self.tail_calibration_.summary(),
            **extra_metrics,
        }
        logger.info("Fitted %s detector: %s", self.name, self.training_metrics_)
        return self

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """Anomaly score per row of `X` (float64, higher = more anomalous)."""
        numeric, categorical = self._fitted_inputs(X)
        if len(numeric) == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self._score(numeric, categorical), dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where a row is anomalous (`score > threshold_`), else 0, as int8."""
        return (self.score(X) > self.threshold_).astype(np.int8)

    def log_tail_probability(self, scores: np.ndarray) -> np.ndarray:
        """ln P(S >= score) among the normal training rows, for scores this detector gave."""
        if not hasattr(self, "tail_calibration_"):
            raise ValueError(
                f"this {self.name} model was fitted before detectors learnt their score calibration, so the "
                "ensemble cannot use it: retrain it (materialise its model asset)"
            )
        return self.tail_calibration_.log_p(scores)

    def explain(self, X: pd.DataFrame, top_k: int = DEFAULT_EXPLAIN_TOP_K) -> pd.DataFrame:
        """The `top_k` features that drove each row's score, strongest first.

        Returns a frame indexed like `X` with columns `feature_1, contribution_1, …, feature_k,
        contribution_k` (k = min(top_k, number of explained features)). Features are ranked by the
        absolute value of their contribution; what a contribution is (a signed z, a squared error, …)
        is documented on each detector class.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        numeric, categorical = self._fitted_inputs(X)
        names = self._explained_features()
        contributions = np.empty((0, len(names))) if len(numeric) == 0 else self._contributions(numeric, categorical)
        k = min(top_k, len(names))
        order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
        top_names = np.asarray(names, dtype=object)[order]
        top_values = np.take_along_axis(contributions, order, axis=1)
        columns: dict[str, Any] = {}
        for rank in range(k):
            columns[f"feature_{rank + 1}"] = pd.array(top_names[:, rank], dtype="str")
            columns[f"contribution_{rank + 1}"] = top_values[:, rank].astype(np.float64)
        return pd.DataFrame(columns, index=X.index)

    # --- subclass hooks -----------------------------------------------------------------------

    def _check_params(self) -> None:
        """Raise ValueError for out-of-range hyperparameters (sklearn validates in fit, not __init__)."""

    @abstractmethod
    def _fit(self, numeric: np.ndarray, categorical: pd.DataFrame) -> tuple[np.ndarray, dict[str, Any]]:
        """Learn the model and `threshold_`; return the training scores and extra training metrics."""

    @abstractmethod
    def _score(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        """Scores of validated, non-empty inputs."""

    @abstractmethod
    def _contributions(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        """Per-row contribution of each of `_explained_features()` (shape rows × features)."""

    def _explained_features(self) -> list[str]:
        return [name for name, _ in self.feature_schema_]

    # --- helpers ------------------------------------------------------------------------------

    def _checked_schema(self) -> FeatureSchema:
        numeric = list(self.numeric_features)
        categorical = list(self.categorical_features)
        if not numeric:
            raise ValueError(f"{self.name} detector needs at least one numeric feature")
        names = numeric + categorical
        if not all(isinstance(name, str) for name in names):
            raise TypeError(f"{self.name} detector: feature names must be strings, got {names}")
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"{self.name} detector: features listed more than once: {duplicated}")
        return feature_schema(numeric, categorical)

    def _fitted_inputs(self, X: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        check_is_fitted(self, "feature_schema_")
        return _validated_inputs(X, self.feature_schema_, self.name)


def _validated_inputs(X: pd.DataFrame, schema: FeatureSchema, detector: str) -> tuple[np.ndarray, pd.DataFrame]:
    """The numeric block as a float64 matrix and the categorical columns, after checking both."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{detector} detector expects a pandas DataFrame, got {type(X).__name__}")
    missing = [name for name, _ in schema if name not in X.columns]
    if missing:
        raise ValueError(
            f"{detector} detector: feature columns missing from the input: {missing} "
            f"(the detector was fitted on {[name for name, _ in schema]})"
        )
    numeric_names = [name for name, kind in schema if kind == NUMERIC]
    not_numeric = {name: str(X[name].dtype) for name in numeric_names if not pd.api.types.is_numeric_dtype(X[name])}
    if not_numeric:
        raise ValueError(f"{detector} detector: numeric features with a non-numeric dtype: {not_numeric}")
    numeric = X[numeric_names].to_numpy(dtype=np.float64, na_value=np.nan)
    not_finite = ~np.isfinite(numeric)
    if not_finite.any():
        counts = dict(zip(numeric_names, not_finite.sum(axis=0).tolist(), strict=True))
        raise ValueError(
            f"{detector} detector: numeric features contain NaN or infinite values "
            f"(rows per column: { {name: n for name, n in counts.items() if n} }); fill or drop them first"
        )
    categorical = X[[name for name, kind in schema if kind == CATEGORICAL]]
    return numeric, categorical
