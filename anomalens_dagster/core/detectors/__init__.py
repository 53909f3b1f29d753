"""Anomaly detectors behind one interface, and the factory that builds them by name.

    detector = make_detector("isolation_forest", numeric_features, ["action_type"], n_estimators=200)
    detector.fit(training_frame)
    scores, flags = detector.score(day_frame), detector.predict(day_frame)
    reasons = detector.explain(day_frame[flags == 1], top_k=3)

See `base.Detector` for the contract. Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anomalens_dagster.core.detectors.autoencoder import AutoencoderDetector
from anomalens_dagster.core.detectors.base import CATEGORICAL, NUMERIC, Detector, FeatureSchema, feature_schema
from anomalens_dagster.core.detectors.dbscan import DBSCANDetector
from anomalens_dagster.core.detectors.isolation_forest import IsolationForestDetector
from anomalens_dagster.core.detectors.zscore import ZScoreDetector

DETECTOR_CLASSES: dict[str, type[Detector]] = {
    cls.name: cls for cls in (ZScoreDetector, IsolationForestDetector, DBSCANDetector, AutoencoderDetector)
}


def make_detector(
    name: str, numeric_features: Sequence[str], categorical_features: Sequence[str] = (), **params: Any
) -> Detector:
    """An unfitted detector of kind `name` (one of `DETECTOR_CLASSES`) with the given hyperparameters."""
    try:
        cls = DETECTOR_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known detectors: {sorted(DETECTOR_CLASSES)}") from None
    known = set(cls._get_param_names()) - {"numeric_features", "categorical_features"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{name} detector has no parameters {unknown}; its parameters are {sorted(known)}")
    return cls(numeric_features, categorical_features, **params)


__all__ = [
    "CATEGORICAL",
    "DETECTOR_CLASSES",
    "NUMERIC",
    "AutoencoderDetector",
    "DBSCANDetector",
    "Detector",
    "FeatureSchema",
    "IsolationForestDetector",
    "ZScoreDetector",
    "feature_schema",
    "make_detector",
]
