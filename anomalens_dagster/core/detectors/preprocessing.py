"""The preprocessing fitted inside the model-based detectors (isolation forest, DBSCAN, autoencoder).

Numeric features whose training distribution is strongly right-skewed (amounts, counts, gaps in
seconds) go through a signed log1p, so one huge order does not squeeze every normal value into a
sliver of the scale; then every numeric column is standardised with the training mean and standard
deviation. Each categorical feature becomes one 0/1 column per category seen in training; a
category never seen in training encodes as all zeros (scikit-learn's `handle_unknown="ignore"`).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

# Sample skewness above which a numeric column is log-transformed. An exponential distribution has
# skewness 2, a uniform one 0; hour-of-day and day-of-week stay linear.
SKEW_THRESHOLD = 1.0


def signed_log1p(values: np.ndarray) -> np.ndarray:
    """log1p of the magnitude, keeping the sign, so that -1 (anonymous customer) stays defined."""
    return np.sign(values) * np.log1p(np.abs(values))


def skewness(values: np.ndarray) -> np.ndarray:
    """Per-column sample skewness (0 for constant columns)."""
    centred = values - values.mean(axis=0)
    variance = np.mean(centred**2, axis=0)
    third = np.mean(centred**3, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variance > 0, third / variance**1.5, 0.0)


class TabularPreprocessor:
    """Signed log1p of skewed numeric columns, standardisation, one-hot categoricals.

    Fitted attributes: `log_columns_` (bool per numeric column), `mean_` and `scale_` (in the
    transformed space; constant columns get scale 1), `categories_` (one `pd.Index` of strings per
    categorical column), `category_frequencies_` (training share of each category), `n_rows_`,
    `n_features_` (numeric + categorical inputs) and `column_feature_`, the input-feature index of
    every output column.
    """

    def __init__(self, log_skewed: bool = True) -> None:
        self.log_skewed = log_skewed

    def fit(self, numeric: np.ndarray, categorical: pd.DataFrame) -> Self:
        skewed = skewness(numeric) > SKEW_THRESHOLD
        self.log_columns_ = skewed if self.log_skewed else np.zeros_like(skewed)
        transformed = self._log(numeric)
        self.mean_ = transformed.mean(axis=0)
        std = transformed.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.categories_ = []
        self.category_frequencies_ = []
        for column in categorical.columns:
            counts = categorical[column].astype("str").value_counts(dropna=True).sort_index()
            self.categories_.append(pd.Index(counts.index, dtype="str"))
            self.category_frequencies_.append(counts.to_numpy(dtype=np.float64) / len(categorical))
        self.n_rows_ = len(numeric)
        n_numeric = numeric.shape[1]
        self.n_features_ = n_numeric + len(self.categories_)
        self.column_feature_ = np.concatenate(
            [np.arange(n_numeric)]
            + [np.full(len(categories), n_numeric + j) for j, categories in enumerate(self.categories_)]
        ).astype(np.intp)
        return self

    @property
    def n_outputs(self) -> int:
        return len(self.column_feature_)

    def standardised_numeric(self, numeric: np.ndarray) -> np.ndarray:
        return (self._log(numeric) - self.mean_) / self.scale_

    def category_codes(self, categorical: pd.DataFrame) -> list[np.ndarray]:
        """Per categorical column, each row's category index (-1 for unseen or missing)."""
        return [
            categories.get_indexer(categorical[column].astype("str"))
            for column, categories in zip(categorical.columns, self.categories_, strict=True)
        ]

    def transform(self, numeric: np.ndarray, categorical: pd.DataFrame) -> np.ndarray:
        """The model input matrix (rows × `n_outputs`, float64)."""
        out = np.zeros((len(numeric), self.n_outputs), dtype=np.float64)
        n_numeric = numeric.shape[1]
        out[:, :n_numeric] = self.standardised_numeric(numeric)
        offset = n_numeric
        rows = np.arange(len(numeric))
        for codes, categories in zip(self.category_codes(categorical), self.categories_, strict=True):
            seen = codes >= 0
            out[rows[seen], offset + codes[seen]] = 1.0
            offset += len(categories)
        return out

    def per_feature(self, column_values: np.ndarray) -> np.ndarray:
        """Sum per-output-column values (rows × n_outputs) into per-input-feature values."""
        return column_values @ np.eye(self.n_features_)[self.column_feature_]

    def _log(self, numeric: np.ndarray) -> np.ndarray:
        return np.where(self.log_columns_, signed_log1p(numeric), numeric)
