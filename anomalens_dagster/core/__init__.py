"""Pure core: simulator, features, detectors and evaluation. Never imports dagster."""
