"""DBSCAN detector: a row is noise — an anomaly — when no core sample lies within `eps` of it.

scikit-learn's `DBSCAN` materialises every point's neighbour list, which grows quadratically in
dense regions (100k dense rows took 19 GB here), and it clusters the data it is given, so scoring a
new day would re-cluster it alone. Only DBSCAN's noise rule matters for anomaly detection: a point
is noise unless it is within `eps` of a core sample, a point with at least `min_samples` training
rows (itself included) within `eps`. This detector applies that rule in bounded memory:

1. the candidates are the distinct (preprocessed) training rows — at most `max_fit_rows` of them,
   drawn reproducibly with `random_state` when there are more;
2. each candidate's neighbours within `eps` are *counted* over the whole training set (duplicates
   included, which is what DBSCAN's sample weights would express) with a KD-tree count-only query,
   which never builds neighbour lists; candidates with at least `min_samples` are core samples;
3. score(X) = Euclidean distance to the nearest core sample, `threshold_ = eps`.

When the training set has at most `max_fit_rows` distinct rows every row is a candidate and
`predict` on the training set equals scikit-learn's DBSCAN noise labels. With more, the core samples
are a sample of the true ones, so a few border rows next to unsampled core rows become noise.
Scoring never re-clusters: it is one nearest-neighbour query per row against the core samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.neighbors import KDTree, NearestNeighbors
from sklearn.utils import gen_even_slices

from anomalens_dagster.constants import (
    DEFAULT_DBSCAN_EPS,
    DEFAULT_DBSCAN_MAX_FIT_ROWS,
    DEFAULT_DBSCAN_MIN_SAMPLES,
    DEFAULT_SEED,
    DETECTOR_DBSCAN,
)
from anomalens_dagster.core.detectors.base import Detector
from anomalens_dagster.core.detectors.preprocessing import TabularPreprocessor


class DBSCANDetector(Detector):
    """DBSCAN noise = anomaly, fitted and scored in bounded memory (see the module docstring).

    `explain` contributions are each feature's squared difference to the nearest core sample in the
    preprocessed space (a categorical feature sums its one-hot columns); they add up to score².
    Fitted: `preprocessor_`, `core_samples_` (preprocessed core rows), `nearest_core_`.
    `n_jobs` threads count neighbours at fit and query nearest core samples at scoring.
    """

    name = DETECTOR_DBSCAN

    def __init__(
        self,
        numeric_features: Sequence[str],
        categorical_features: Sequence[str] = (),
        eps: float = DEFAULT_DBSCAN_EPS,
        min_samples: int = DEFAULT_DBSCAN_MIN_SAMPLES,
        max_fit_rows: int = DEFAULT_DBSCAN_MAX_FIT_ROWS,
        random_state: int = DEFAULT_SEED,
        log_skewed: bool = True,
        n_jobs: int | None = None,
    ) -> None:
        self.numeric_features = numeric_features
        self.categorical_features = categorical_features
        self.eps = eps
        self.min_samples = min_samples
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state
        self.log_skewed = log_skewed
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        if not self.eps > 0:
            raise ValueError(f"dbscan detector: eps must be positive, got {self.eps}")
        if self.min_samples < 1:
            raise ValueError(f"dbscan detector: min_samples must be at least 1, got {self.min_samples}")
        if self.max_fit_rows < 1:
            raise ValueError(f"dbscan detector: max_fit_rows must be at least 1, got {self.max_fit_rows}")

    def _fit(self, numeric: np.ndarray, categorical: pd.DataFrame) -> tuple[np.ndarray, dict[str, Any]]:
        self.preprocessor_ = TabularPreprocessor(log_skewed=self.log_skewed).fit(numeric, categorical)
        inputs = self.preprocessor_.transform(numeric, categorical)
        distinct = np.flatnonzero(~pd.DataFrame(inputs).duplicated().to_numpy())
        candidates = distinct
        if len(distinct) > self.max_fit_rows:
            rng = np.random.default_rng(self.random_state)
            candidates = np.sort(rng.choice(distinct, size=self.max_fit_rows, replace=False))
        neighbour_counts = self._count_neighbours(KDTree(inputs), inputs[candidates])
        core = candidates[neighbour_counts >= self.min_samples]
        if len(core) == 0:
            raise ValueError(
                f"dbscan detector: no core samples with eps={self.eps} and min_samples={self.min_samples} "
                f"among {len(candidates)} candidate rows, so every row would be noise; "
                "increase eps or lower min_samples"
            )
        self.core_samples_ = inputs[core]
        self.nearest_core_ = NearestNeighbors(n_neighbors=1, n_jobs=self.n_jobs).fit(self.core_samples_)
        self.threshold_ = float(self.eps)
        metrics = {"n_distinct_rows": len(distinct), "n_candidate_rows": len(candidates), "n_core_samples": len(core)}
        return self._nearest_core(inputs)[0], metrics

    def _count_neighbours(self, tree: KDTree, points: np.ndarray) -> np.ndarray:
        """Training rows within eps of each point, counted in threads (the query releases the GIL)."""
        n_chunks = max(1, min(len(points) // 1_000, 4 * effective_n_jobs(self.n_jobs)))
        counts = Parallel(n_jobs=self.n_jobs, backend="threading")(
            delayed(tree.query_radius)(points[chunk], r=self.eps, count_only=True)
            for chunk in gen_even_slices(len(points), n_chunks)
        )
        return np.concatenate(counts)

    def _nearest_core(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances, indices = self.nearest_core_.kneighbors(inputs, return_distance=True)
        return distances[:, 0], indices[:, 0]

    def _score(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        return self._nearest_core(self.preprocessor_.transform(numeric, categorical))[0]

    def _contributions(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        inputs = self.preprocessor_.transform(numeric, categorical)
        _, nearest = self._nearest_core(inputs)
        return self.preprocessor_.per_feature((inputs - self.core_samples_[nearest]) ** 2)
