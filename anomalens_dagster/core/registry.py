"""Versioned storage of fitted detectors in `ml.model_registry` (DuckDB; no dagster import).

An artifact is the pickled detector; its SHA-256 is stored beside it and checked before anything
is unpickled, so a corrupted or substituted blob never runs. Loading also checks the detector's
feature schema against the one expected, so a model never scores columns it was not trained on.
Pickle executes code from the artifact: only load artifacts this registry wrote.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from anomalens_dagster.constants import ENTITY_TYPES, ML_SCHEMA, MODEL_REGISTRY
from anomalens_dagster.core.detectors import Detector, FeatureSchema
from anomalens_dagster.core.warehouse import is_ducklake, transaction

logger = logging.getLogger(__name__)

MODEL_REGISTRY_TABLE = f"{ML_SCHEMA}.{MODEL_REGISTRY}"

MODEL_REGISTRY_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {ML_SCHEMA};
CREATE TABLE IF NOT EXISTS {MODEL_REGISTRY_TABLE} (
    detector VARCHAR NOT NULL, entity_type VARCHAR NOT NULL, version INTEGER NOT NULL,
    trained_at TIMESTAMP NOT NULL, training_start TIMESTAMP, training_end TIMESTAMP, n_rows BIGINT NOT NULL,
    params JSON, metrics JSON, feature_schema JSON NOT NULL, artifact BLOB NOT NULL, sha256 VARCHAR NOT NULL,
    PRIMARY KEY (detector, entity_type, version));
"""
# DuckLake has no PRIMARY KEY: there a version stays unique because one run at a time trains a detector.
DUCKLAKE_MODEL_REGISTRY_DDL = MODEL_REGISTRY_DDL.replace(",\n    PRIMARY KEY (detector, entity_type, version)", "")

_RECORD_COLUMNS = (
    "detector, entity_type, version, trained_at, training_start, training_end, n_rows, params, metrics, "
    "feature_schema, sha256"
)


# Where a model version's threshold came from, when not from fitting (`threshold_source` in its metrics).
THRESHOLD_SOURCE_CALIBRATION = "calibration"  # proposed by calibration on verdicts and applied
THRESHOLD_SOURCE_SETTINGS = "settings"  # the settings' detection.thresholds, at training


class ModelNotFoundError(LookupError):
    """No registered model matches the request."""


class ArtifactIntegrityError(ValueError):
    """The stored artifact's SHA-256 differs from the registered digest."""


class FeatureSchemaMismatchError(ValueError):
    """The detector was fitted on other features than the caller expects."""


@dataclass(frozen=True)
class ModelRecord:
    """One row of `ml.model_registry`, without the artifact bytes. Timestamps are naive UTC."""

    detector: str
    entity_type: str
    version: int
    trained_at: dt.datetime
    training_start: dt.datetime | None
    training_end: dt.datetime | None
    n_rows: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    feature_schema: FeatureSchema
    sha256: str

    @property
    def model_name(self) -> str:
        return f"{self.entity_type} {self.detector} v{self.version}"


def ensure_model_registry(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the `ml` schema and the registry table when missing (idempotent)."""
    conn.execute(DUCKLAKE_MODEL_REGISTRY_DDL if is_ducklake(conn) else MODEL_REGISTRY_DDL)


def serialize(detector: Detector) -> tuple[bytes, str]:
    """The pickled detector and its SHA-256 hex digest."""
    artifact = pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)
    return artifact, hashlib.sha256(artifact).hexdigest()


def deserialize(
    artifact: bytes,
    expected_sha256: str,
    expected_feature_schema: Sequence[Sequence[str]],
    model_name: str = "model",
) -> Detector:
    """Unpickle a detector after verifying its digest, then check its feature schema.

    Raises `ArtifactIntegrityError` (before unpickling) when the digest differs and
    `FeatureSchemaMismatchError` listing the differences when the schema does.
    """
    digest = hashlib.sha256(artifact).hexdigest()
    if digest != expected_sha256:
        raise ArtifactIntegrityError(
            f"artifact of {model_name} failed its integrity check: SHA-256 is {digest}, the registry expects "
            f"{expected_sha256}; the stored model is corrupted or was replaced — retrain it by materialising "
            "its model asset"
        )
    detector = pickle.loads(artifact)  # noqa: S301 - digest verified above; only registry-written artifacts
    if not isinstance(detector, Detector):
        raise TypeError(f"artifact of {model_name} holds a {type(detector).__name__}, not a detector")
    differences = schema_differences(expected_feature_schema, detector.feature_schema_)
    if differences:
        raise FeatureSchemaMismatchError(
            f"{model_name} was fitted on other features than expected: {'; '.join(differences)}. "
            "Retrain the model on the current features by materialising its model asset"
        )
    return detector


def schema_differences(expected: Sequence[Sequence[str]], actual: Sequence[Sequence[str]]) -> list[str]:
    """Human-readable differences between two feature schemas (empty when they agree).

    Order is not compared: detectors select their columns by name.
    """
    expected_kinds = {name: kind for name, kind in expected}
    actual_kinds = {name: kind for name, kind in actual}
    differences = []
    missing = [name for name in expected_kinds if name not in actual_kinds]
    if missing:
        differences.append(f"expected features the model lacks: {missing}")
    extra = [name for name in actual_kinds if name not in expected_kinds]
    if extra:
        differences.append(f"model features not expected: {extra}")
    differences.extend(
        f"feature '{name}' is {actual_kinds[name]} in the model but {kind} expected"
        for name, kind in expected_kinds.items()
        if name in actual_kinds and actual_kinds[name] != kind
    )
    return differences


def register_model(
    conn: duckdb.DuckDBPyConnection,
    detector: Detector,
    entity_type: str,
    training_start: dt.datetime | dt.date | None,
    training_end: dt.datetime | dt.date | None,
    trained_at: dt.datetime | None = None,
) -> ModelRecord:
    """Store a fitted detector as the next version for (detector, entity type); return its record.

    Serialises first, then numbers and inserts in one short transaction (do not call inside an open
    transaction). Timestamps may be naive or aware; aware ones are stored as naive UTC, and
    `trained_at` defaults to now.
    """
    if entity_type not in ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}; expected one of {list(ENTITY_TYPES)}")
    if not hasattr(detector, "feature_schema_"):
        raise ValueError(f"the {detector.name} detector is not fitted; fit it before registering it")
    artifact, sha256 = serialize(detector)
    params = {key: value for key, value in detector.get_params().items() if not callable(value)}
    values = {
        "detector": detector.name,
        "entity_type": entity_type,
        "trained_at": _naive_utc(trained_at or dt.datetime.now(dt.UTC)),
        "training_start": _naive_utc(training_start),
        "training_end": _naive_utc(training_end),
        "n_rows": int(detector.training_metrics_["n_rows"]),
        "params": _to_json(params),
        "metrics": _to_json(detector.training_metrics_),
        "feature_schema": _to_json(detector.feature_schema_),
        "artifact": artifact,
        "sha256": sha256,
    }
    ensure_model_registry(conn)
    with transaction(conn):
        (version,) = conn.execute(
            f"SELECT coalesce(max(version), 0) + 1 FROM {MODEL_REGISTRY_TABLE} WHERE detector = ? AND entity_type = ?",
            [detector.name, entity_type],
        ).fetchone()
        conn.execute(
            f"INSERT INTO {MODEL_REGISTRY_TABLE} (version, {', '.join(values)}) "
            f"VALUES (?, {', '.join('?' for _ in values)})",
            [version, *values.values()],
        )
    logger.info(
        "Registered %s %s v%d (%d training rows, %d artifact bytes)",
        entity_type,
        detector.name,
        version,
        values["n_rows"],
        len(artifact),
    )
    return _record(dict(values, version=version))


def with_threshold(detector: Detector, threshold: float, source: str, **facts: Any) -> Detector:
    """A copy of a fitted detector that flags above `threshold` instead of its own, its training
    metrics saying so: `threshold` (in force), `fitted_threshold` (what fitting learned, kept across
    copies), `threshold_source` and any `facts` (the verdicts a calibration used). The input is unchanged."""
    if not threshold > 0:
        raise ValueError(f"{detector.name}: threshold {threshold} is not positive, so it cannot scale scores")
    metrics = detector.training_metrics_
    changed = copy.copy(detector)
    changed.threshold_ = float(threshold)
    changed.training_metrics_ = {
        **metrics,
        "threshold": float(threshold),
        "fitted_threshold": float(metrics.get("fitted_threshold", metrics["threshold"])),
        "threshold_source": source,
        **facts,
    }
    return changed


def register_threshold(
    conn: duckdb.DuckDBPyConnection, detector_name: str, entity_type: str, threshold: float, source: str, **facts: Any
) -> ModelRecord:
    """Register the latest model of (detector, entity type) again as a new version that flags above
    `threshold` (see `with_threshold`), with the same artifact otherwise and the same training window."""
    detector, record = load_model(conn, detector_name, entity_type)
    changed = with_threshold(detector, threshold, source, previous_version=record.version, **facts)
    return register_model(conn, changed, entity_type, record.training_start, record.training_end)


def load_model(
    conn: duckdb.DuckDBPyConnection,
    detector_name: str,
    entity_type: str,
    version: int | None = None,
    expected_feature_schema: Sequence[Sequence[str]] | None = None,
) -> tuple[Detector, ModelRecord]:
    """The registered detector (latest version when `version` is None) and its record.

    The artifact's digest is verified before unpickling; its feature schema is checked against
    `expected_feature_schema` (the columns the caller will score), or, when that is None, against
    the schema registered with it. Raises `ModelNotFoundError` when nothing matches.
    """
    where = "detector = ? AND entity_type = ?" + ("" if version is None else " AND version = ?")
    parameters = [detector_name, entity_type] + ([] if version is None else [version])
    try:
        # fetchall, not fetchone: a result left half-read blocks the connection for the caller's
        # next statement (DuckDB refuses to register a frame while one is pending).
        rows = conn.execute(
            f"SELECT {_RECORD_COLUMNS}, artifact FROM {MODEL_REGISTRY_TABLE} WHERE {where} "
            "ORDER BY version DESC LIMIT 1",
            parameters,
        ).fetchall()
    except duckdb.CatalogException:
        rows = []  # the registry table does not exist yet: nothing was ever registered
    row = rows[0] if rows else None
    if row is None:
        wanted = f"{detector_name} model" if version is None else f"version {version} of the {detector_name} model"
        raise ModelNotFoundError(
            f"no {wanted} is registered for entity type {entity_type!r} in {MODEL_REGISTRY_TABLE}; "
            f"materialise the model asset {entity_type}_{detector_name} to train and register one"
        )
    *fields, artifact = row
    record = _record(dict(zip(_RECORD_COLUMNS.split(", "), fields, strict=True)))
    detector = deserialize(
        artifact,
        record.sha256,
        record.feature_schema if expected_feature_schema is None else expected_feature_schema,
        model_name=record.model_name,
    )
    return detector, record


def _record(values: dict[str, Any]) -> ModelRecord:
    def parsed(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return ModelRecord(
        detector=values["detector"],
        entity_type=values["entity_type"],
        version=int(values["version"]),
        trained_at=values["trained_at"],
        training_start=values["training_start"],
        training_end=values["training_end"],
        n_rows=int(values["n_rows"]),
        params=parsed(values["params"]),
        metrics=parsed(values["metrics"]),
        feature_schema=[(name, kind) for name, kind in parsed(values["feature_schema"])],
        sha256=values["sha256"],
    )


def _naive_utc(value: dt.datetime | dt.date | None) -> dt.datetime | None:
    """DuckDB TIMESTAMP parameters must be naive: convert aware values to UTC first."""
    if value is None:
        return None
    timestamp = pd.Timestamp(value)
    if timestamp.tzinfo is not None:
        timestamp = timestamp.tz_convert("UTC").tz_localize(None)
    return timestamp.to_pydatetime()


def _to_json(value: Any) -> str:
    def default(item: Any) -> Any:
        if isinstance(item, np.generic):
            return item.item()
        if isinstance(item, np.ndarray):
            return item.tolist()
        raise TypeError(f"cannot store {type(item).__name__} as JSON")

    return json.dumps(value, default=default, allow_nan=False)
