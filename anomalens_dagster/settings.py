"""The deployment's settings file, read by every run when it starts (no dagster run config needed).

Runs that schedules, sensors and declarative automation start carry no run config, so a value set
only in launchpad config would never reach them. Every asset with settings therefore reads the
settings file through this resource at run time; what a run's own config sets explicitly (the
launchpad, `anomalens run --settings FILE`) overrides the file for that run only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import yaml
from pydantic import Field

from anomalens_dagster.configs import SettingsFileError, validate_settings
from anomalens_dagster.constants import DEFAULT_SETTINGS_PATH, SETTINGS_ENV_VAR

ConfigT = TypeVar("ConfigT", bound=dg.Config)


def read_settings_file(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The validated sections of a YAML settings file; raises `SettingsFileError` naming what is wrong."""
    try:
        parsed = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SettingsFileError(f"{path}: cannot read settings file: {error}") from error
    return validate_settings(parsed, source=str(path))


def write_setting(path: str | os.PathLike[str], section: str, key: str, value: Any) -> None:
    """Set `section.key` to `value` in the settings file at `path` (created when missing), after
    validating the whole file; raises `SettingsFileError` and leaves the file untouched otherwise.

    The file is written beside and renamed over, so a run reading it meanwhile sees the old or the
    new one, never half. Comments in the file are not kept (it is rewritten as YAML).
    """
    path = Path(path)
    sections = read_settings_file(path) if path.is_file() else {}
    sections.setdefault(section, {})[key] = value
    validate_settings(sections, source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(yaml.safe_dump(sections, sort_keys=False))
    partial.replace(path)


def with_settings(config: ConfigT, values: Mapping[str, Any]) -> ConfigT:
    """`config` with every field its run config did not set taken from `values` (where given there).

    A field holding a nested config (a model's `training`, `detection`) takes the section of the same
    name. Dagster builds a run's config object from the keys the run config gave, so pydantic's
    `model_fields_set` tells an explicit value from a default.
    """
    merged: dict[str, Any] = {}
    for name in type(config).model_fields:
        current = getattr(config, name)
        if isinstance(current, dg.Config):
            merged[name] = with_settings(current, values.get(name) or {})
        elif name in config.model_fields_set or name not in values:
            merged[name] = current
        else:
            merged[name] = values[name]
    return type(config)(**merged)


class SettingsFile(dg.ConfigurableResource):
    """The settings file (YAML sections `simulation`, `training`, `detection`) that every run reads.

    A missing file means the built-in defaults; a file with an unknown section, key or a bad value
    fails the run with a message naming it.
    """

    path: str = Field(description=f"YAML settings file (default {DEFAULT_SETTINGS_PATH}, or ${SETTINGS_ENV_VAR}).")

    def sections(self) -> dict[str, dict[str, Any]]:
        return read_settings_file(self.path) if Path(self.path).is_file() else {}

    def resolve(self, config: ConfigT, section: str | None = None) -> ConfigT:
        """The run's effective settings: its explicit config over this file's `section` (None: the
        whole file, whose sections fill the config's nested fields) over the built-in defaults."""
        sections = self.sections()
        return with_settings(config, (sections.get(section) or {}) if section else sections)


def settings_resource() -> SettingsFile:
    """The settings file as the code location configures it: `ANOMALENS_SETTINGS`, else `data/settings.yaml`."""
    path = dg.EnvVar(SETTINGS_ENV_VAR) if os.environ.get(SETTINGS_ENV_VAR) else DEFAULT_SETTINGS_PATH
    return SettingsFile(path=path)
