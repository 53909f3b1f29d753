"""The persistent Dagster instance that `anomalens`, `make dev` and the tests share."""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_HOME_ENV_VAR = "DAGSTER_HOME"
DEFAULT_DAGSTER_HOME = "data/dagster_home"

# DuckDB allows one writing process per file: every DuckDB-touching asset is in the `duckdb`
# pool, and a limit of 1 serialises them across runs (7 of 7 concurrent runs succeed, versus
# 2 of 7 failing on the file lock with connect retries alone — see DESIGN.md). Run retries are
# on, with none by default: the jobs that sensors and schedules launch unattended set their own
# `dagster/max_retries` tag (jobs.py), and the daemon re-executes their failed runs.
INSTANCE_YAML = """\
concurrency:
  pools:
    default_limit: 1
run_retries:
  enabled: true
  max_retries: 0
telemetry:
  enabled: false
"""


def ensure_dagster_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Create DAGSTER_HOME (default `data/dagster_home`) with the pool limit, and export it.

    An existing `dagster.yaml` is kept as the user left it.
    """
    path = Path(home or os.environ.get(DAGSTER_HOME_ENV_VAR) or DEFAULT_DAGSTER_HOME).resolve()
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    os.environ[DAGSTER_HOME_ENV_VAR] = str(path)
    return path
