"""DBSCAN detector: a row is noise — an anomaly — when no core sample lies within `eps` of it.

scikit-learn's `DBSCAN` materialises every point's neighbour list, which grows quadratically in
dense regions (100k dense rows took 19 GB here), and it clusters the data it is given, so scoring a
new day would re-cluster it alone. Only DBSCAN's noise rule matters for anomaly detection: a point
is noise unless it lies within `eps` of a core sample, a training row with at least `min_samples`
training rows (itself and its duplicates included) within `eps`. This detector learns that rule on
a bounded sample and applies it to new rows without re-clustering:

1. fit on at most `max_fit_rows` training rows, drawn uniformly and reproducibly (`random_state`)
   from all rows, duplicates included, so that density keeps its meaning;
2. a sampled row is a core sample when its `min_samples`-th nearest sampled row (itself included)
   lies within eps — one chunked nearest-neighbour query, never a neighbour list; identical core
   rows are kept once;
3. score(X) = RMS distance (below) to the nearest core sample, `threshold_ = eps_`.

Distances are root-mean-square per preprocessed (standardised, one-hot) column — the Euclidean
distance divided by sqrt(number of columns) — so one eps means the same closeness whatever the
number of features. In plain Euclidean terms a fixed eps of 0.5 left almost no core samples among
the simulator's 25 activity columns and flagged about 40 % of its 8-column orders; an RMS eps of
0.5 flags about 5 % of either. `eps=None` derives the radius from the sample instead: `eps_` is
the `eps_quantile` quantile of those `min_samples`-th neighbour distances (DBSCAN's k-distance
heuristic), so about that share of the sample are core samples.

With at most `max_fit_rows` training rows this is exactly DBSCAN: `predict` on the training set
equals scikit-learn's noise labels. Scoring costs one nearest-neighbour query per row against the
core samples — brute force above about 15 preprocessed columns, where trees stop pruning — so
`max_fit_rows` also bounds the scoring cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from anomalens_dagster.constants import (
    DEFAULT_DBSCAN_EPS_QUANTILE,
    DEFAULT_DBSCAN_MAX_FIT_ROWS,
    DEFAULT_DBSCAN_MIN_SAMPLES,
    DEFAULT_SEED,
    DETECTOR_DBSCAN,
)
from anomalens_dagster.core.detectors.base import Detector
from anomalens_dagster.core.detectors.preprocessing import TabularPreprocessor


class DBSCANDetector(Detector):
    """DBSCAN noise = anomaly, fitted on a bounded sample and scored without re-clustering.

    See the module docstring for the method and for choosing eps.

    `explain` contributions are each feature's squared difference to the nearest core sample in the
    preprocessed space (a categorical feature sums its one-hot columns); they add up to score².
    Fitted: `preprocessor_`, `eps_`, `core_samples_` (preprocessed core rows), `nearest_core_`.
    `n_jobs` is passed to scikit-learn's nearest-neighbour queries.
    """

    name = DETECTOR_DBSCAN

    def __init__(
        self,
        numeric_features: Sequence[str],
        categorical_features: Sequence[str] = (),
        eps: float | None = None,
        eps_quantile: float = DEFAULT_DBSCAN_EPS_QUANTILE,
        min_samples: int = DEFAULT_DBSCAN_MIN_SAMPLES,
        max_fit_rows: int = DEFAULT_DBSCAN_MAX_FIT_ROWS,
        random_state: int = DEFAULT_SEED,
        log_skewed: bool = True,
        n_jobs: int | None = None,
    ) -> None:
        self.numeric_features = numeric_features
        self.categorical_features = categorical_features
        self.eps = eps
        self.eps_quantile = eps_quantile
        self.min_samples = min_samples
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state
        self.log_skewed = log_skewed
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        if self.eps is not None and not self.eps > 0:
            raise ValueError(f"dbscan detector: eps must be positive (or None to derive it), got {self.eps}")
        if not 0 < self.eps_quantile <= 1:
            raise ValueError(f"dbscan detector: eps_quantile must be in (0, 1], got {self.eps_quantile}")
        if self.min_samples < 1:
            raise ValueError(f"dbscan detector: min_samples must be at least 1, got {self.min_samples}")
        if self.max_fit_rows < 1:
            raise ValueError(f"dbscan detector: max_fit_rows must be at least 1, got {self.max_fit_rows}")

    def _fit(self, numeric: np.ndarray, categorical: pd.DataFrame) -> tuple[np.ndarray, dict[str, Any]]:
        self.preprocessor_ = TabularPreprocessor(log_skewed=self.log_skewed).fit(numeric, categorical)
        inputs = self._inputs(numeric, categorical)
        if len(inputs) < self.min_samples:
            raise ValueError(
                f"dbscan detector: {len(inputs)} training rows cannot hold a core sample of min_samples="
                f"{self.min_samples}; train on a longer window"
            )
        sample = inputs
        if len(inputs) > self.max_fit_rows:
            rng = np.random.default_rng(self.random_state)
            sample = inputs[np.sort(rng.choice(len(inputs), size=self.max_fit_rows, replace=False))]
        neighbours = NearestNeighbors(n_neighbors=self.min_samples, n_jobs=self.n_jobs).fit(sample)
        kth_distance = neighbours.kneighbors(sample, return_distance=True)[0][:, -1]
        self.eps_ = float(self.eps if self.eps is not None else np.quantile(kth_distance, self.eps_quantile))
        core = pd.DataFrame(sample[kth_distance <= self.eps_]).drop_duplicates().to_numpy()
        if len(core) == 0:
            raise ValueError(
                f"dbscan detector: no core samples with eps={self.eps_:.4g} and min_samples={self.min_samples} "
                f"among {len(sample)} sampled rows, so every row would be noise; "
                "increase eps (or leave it unset to derive it from the data) or lower min_samples"
            )
        self.core_samples_ = core
        self.nearest_core_ = NearestNeighbors(n_neighbors=1, n_jobs=self.n_jobs).fit(core)
        self.threshold_ = self.eps_
        return self._nearest_core(inputs)[0], {"n_sampled_rows": len(sample), "n_core_samples": len(core)}

    def _nearest_core(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances, indices = self.nearest_core_.kneighbors(inputs, return_distance=True)
        return distances[:, 0], indices[:, 0]

    def _inputs(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        """Preprocessed rows scaled by 1/sqrt(width): Euclidean distances become RMS distances per column."""
        inputs = self.preprocessor_.transform(numeric, categorical)
        return inputs / np.sqrt(inputs.shape[1])

    def _score(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        return self._nearest_core(self._inputs(numeric, categorical))[0]

    def _contributions(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        inputs = self._inputs(numeric, categorical)
        _, nearest = self._nearest_core(inputs)
        return self.preprocessor_.per_feature((inputs - self.core_samples_[nearest]) ** 2)
