"""The persistent Dagster instance that `anomalens`, `make dev` and the tests share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DAGSTER_HOME_ENV_VAR = "DAGSTER_HOME"
DEFAULT_DAGSTER_HOME = "data/dagster_home"
# The instance configuration, checked in beside this module (pools, run queue, run retries).
INSTANCE_YAML = Path(__file__).with_name("dagster.yaml")


def ensure_dagster_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Create DAGSTER_HOME (default `data/dagster_home`) with the project's `dagster.yaml`, and export it.

    An existing `dagster.yaml` is kept as the user left it.
    """
    path = Path(home or os.environ.get(DAGSTER_HOME_ENV_VAR) or DEFAULT_DAGSTER_HOME).resolve()
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(INSTANCE_YAML, config)
    os.environ[DAGSTER_HOME_ENV_VAR] = str(path)
    return path
