"""AnomaLens: anomaly detection for online stores, as a Dagster code location."""
