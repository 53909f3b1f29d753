"""Model assets: one trained detector per kind and entity, versioned in `ml.model_registry`."""

import json
from typing import Any

import dagster as dg
import numpy as np

from anomalens_dagster.assets.metadata import readable_metadata, readable_number
from anomalens_dagster.automation import model_retraining
from anomalens_dagster.configs import ModelConfig
from anomalens_dagster.constants import DETECTOR_NAMES, DUCKDB_POOL, ENTITY_TYPES, MODELS_GROUP
from anomalens_dagster.core.detectors import make_detector
from anomalens_dagster.core.registry import (
    THRESHOLD_SOURCE_SETTINGS,
    ModelRecord,
    ensure_model_registry,
    load_model,
    register_model,
    with_threshold,
)
from anomalens_dagster.core.training import ENTITY_FEATURES, load_feature_sample, load_training_frame
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile

DETECTOR_TITLES = {
    "zscore": "Z-score statistics",
    "isolation_forest": "Isolation Forest",
    "dbscan": "DBSCAN (noise = anomaly)",
    "autoencoder": "Keras autoencoder",
}
DETECTOR_KINDS = {
    "zscore": {"numpy"},
    "isolation_forest": {"sklearn"},
    "dbscan": {"sklearn"},
    "autoencoder": {"keras", "tensorflow"},
}
# The training anomaly rate a healthy model shows; outside it the threshold or the data is off.
SANE_TRAINING_ANOMALY_RATE = (0.0001, 0.15)
CHECK_SAMPLE_ROWS = 10_000


def model_asset_name(detector: str, entity_type: str) -> str:
    return f"{entity_type}_{detector}"


def model_metadata(record: ModelRecord) -> dict[str, Any]:
    """What the UI shows of a model: version, window, rows, parameters, threshold, training metrics."""
    metrics = {
        f"training/{name}": value
        for name, value in record.metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    metadata = {
        "version": record.version,
        "trained_at": record.trained_at.isoformat(),
        "training_window": f"{record.training_start:%Y-%m-%d} .. {record.training_end:%Y-%m-%d} (end exclusive)",
        "training_rows": record.n_rows,
        "threshold": float(record.metrics["threshold"]),
        "params": dg.MetadataValue.json(record.params),
        "feature_schema": dg.MetadataValue.json([list(column) for column in record.feature_schema]),
        "sha256": record.sha256,
        **metrics,
    }
    return readable_metadata(metadata)


def _training_summary(record: ModelRecord) -> str:
    """One line on a newly registered model; every metric is in its metadata."""
    metrics = record.metrics
    summary = (
        f"registered {record.model_name}: threshold {readable_number(float(metrics['threshold']))}, "
        f"flags {metrics['training_anomaly_rate']:.2%} of its {record.n_rows} training rows, "
        f"fit in {metrics['fit_seconds']} s"
    )
    if "epochs_run" in metrics:
        summary += f" ({metrics['epochs_run']} epochs, final loss {readable_number(float(metrics['final_loss']))})"
    return summary


def build_model_asset(detector: str, entity_type: str) -> dg.AssetsDefinition:
    entity = ENTITY_FEATURES[entity_type]

    @dg.asset(
        name=model_asset_name(detector, entity_type),
        group_name=MODELS_GROUP,
        description=(
            f"{DETECTOR_TITLES[detector]} detector for {entity_type} rows, trained on a trailing window of "
            f"{entity.table} and registered as a new version in ml.model_registry."
        ),
        deps=[entity.table],
        kinds={"duckdb", *DETECTOR_KINDS[detector]},
        pool=DUCKDB_POOL,
        automation_condition=model_retraining,
    )
    def model(
        context: dg.AssetExecutionContext, config: ModelConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
    ) -> dg.MaterializeResult:
        # The run config's `training` / `detection` values over the settings file's over the defaults.
        effective = settings.resolve(config)
        with duckdb.read_connection() as conn:
            training = load_training_frame(
                conn,
                entity,
                effective.training.training_days,
                effective.training.max_training_rows,
                effective.training.seed,
                effective.training.holdout_days,
            )
        context.log.info(
            f"training {detector} on {len(training.frame)} of {training.rows_in_window} {entity_type} rows "
            f"in [{training.start}, {training.end})"
            + (
                f", the last {effective.training.holdout_days} day(s) held out"
                if effective.training.holdout_days
                else ""
            )
        )
        if any(training.rows_excluded.values()):
            context.log.info(
                f"left out of training: {', '.join(f'{n} {reason}' for reason, n in training.rows_excluded.items())} "
                f"{entity_type} rows (flagged High by the models in force, or confirmed by an analyst)"
            )
        if training.rows_missing_features:
            context.log.warning(
                f"skipped {training.rows_missing_features} {entity_type} rows whose detector features are missing "
                f"(their days were written before a feature column was added; `anomalens rebuild {entity.table}`)"
            )
        params = effective.detection.detector_params(detector, effective.training.seed, entity_type)
        if detector == "autoencoder":
            # Per-epoch losses stay in the run's debug log; the registered line below sums the training up.
            params["on_epoch_end"] = lambda epoch, logs: context.log.debug(
                f"epoch {epoch + 1}: {json.dumps({k: readable_number(v) for k, v in logs.items()})}"
            )
        fitted = make_detector(detector, entity.numeric, entity.categorical, **params).fit(training.frame)
        override = effective.detection.threshold_override(detector, entity_type)
        if (
            override is not None
        ):  # calibrated on analysts' verdicts (`anomalens thresholds --apply`): kept on retraining
            fitted = with_threshold(fitted, override, THRESHOLD_SOURCE_SETTINGS)
        # Recorded with the model (registry metrics, asset metadata): what its window held back and why.
        fitted.training_metrics_.update(holdout_days=effective.training.holdout_days, **training.exclusion_metrics())
        with duckdb.get_connection() as conn:
            ensure_model_registry(conn)
            record = register_model(conn, fitted, entity_type, training.start, training.end)
        context.log.info(_training_summary(record))
        return dg.MaterializeResult(metadata=model_metadata(record), data_version=dg.DataVersion(f"v{record.version}"))

    @dg.asset_check(
        asset=model,
        name="check_model_is_sane",
        description="The latest version loads (digest and schema verified), scores its training sample with "
        "finite values, and flags a sane share of it.",
        pool=DUCKDB_POOL,
    )
    def check_model_is_sane(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
        with duckdb.read_connection() as conn:
            fitted, record = load_model(conn, detector, entity_type)
            sample = load_feature_sample(
                conn, entity, record.training_start, record.training_end, CHECK_SAMPLE_ROWS, seed=0
            )
        scores = fitted.score(sample.frame)
        non_finite = int((~np.isfinite(scores)).sum())
        rate = float(np.mean(scores > fitted.threshold_))
        low, high = SANE_TRAINING_ANOMALY_RATE
        return dg.AssetCheckResult(
            passed=non_finite == 0 and low <= rate <= high,
            metadata=readable_metadata(
                {
                    "version": record.version,
                    "non_finite_scores": non_finite,
                    "sample_anomaly_rate": rate,
                    "sane_rate_band": f"[{low}, {high}]",
                }
            ),
        )

    return model, check_model_is_sane


model_assets_and_checks = [
    build_model_asset(detector, entity) for entity in ENTITY_TYPES for detector in DETECTOR_NAMES
]
model_assets = [asset for asset, _ in model_assets_and_checks]
model_checks = [check for _, check in model_assets_and_checks]
