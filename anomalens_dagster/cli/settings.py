"""`anomalens settings`: the settings every run reads, where each value came from, and `set` to edit the file.

The file is the deployment's (`data/settings.yaml`, or `$ANOMALENS_SETTINGS`): the `settings`
resource reads it when each run starts, so schedules, sensors and automation see what `set` wrote.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import yaml

from anomalens_dagster.cli.common import load_settings_option
from anomalens_dagster.configs import SETTINGS_SECTIONS, SettingsFileError
from anomalens_dagster.constants import DEFAULT_SETTINGS_PATH, SETTINGS_ENV_VAR
from anomalens_dagster.settings import read_settings_file, write_setting

ORIGIN_DEFAULT = "default"
ORIGIN_FILE = "file"
ORIGIN_CLI = "cli"


def settings_file_path() -> Path:
    """The deployment's settings file: `$ANOMALENS_SETTINGS`, else `data/settings.yaml` (it may not exist)."""
    return Path(os.environ.get(SETTINGS_ENV_VAR) or DEFAULT_SETTINGS_PATH)


def effective_settings(
    file_sections: dict[str, dict[str, Any]], cli_sections: dict[str, dict[str, Any]]
) -> list[tuple[str, str, Any, str]]:
    """(section, key, value, origin) of every setting: the command's `--settings` over the file over the default."""
    rows = []
    for section, config_class in SETTINGS_SECTIONS.items():
        defaults = config_class().model_dump()
        for key in config_class.model_fields:
            for origin, sections in ((ORIGIN_CLI, cli_sections), (ORIGIN_FILE, file_sections)):
                if key in sections.get(section, {}):
                    rows.append((section, key, sections[section][key], origin))
                    break
            else:
                rows.append((section, key, defaults[key], ORIGIN_DEFAULT))
    return rows


def parsed_value(section: str, key: str, text: str) -> Any:
    """`text` as YAML (4.5, null, true), kept as text for a text setting (`iforest_contamination: '0.01'`)."""
    field = SETTINGS_SECTIONS[section].model_fields[key]
    return text if field.annotation is str else yaml.safe_load(text)


def set_setting(path: Path, dotted_key: str, text: str) -> Any:
    """Write `section.key: value` into the settings file at `path` after validating the whole file.

    Raises `SettingsFileError` (naming the key or value) and leaves the file untouched when the key
    is unknown or the value invalid. Comments in the file are not kept (it is rewritten as YAML).
    """
    section, _, key = dotted_key.partition(".")
    if section not in SETTINGS_SECTIONS or not key:
        raise SettingsFileError(
            f"{dotted_key!r}: expected SECTION.KEY with SECTION one of {', '.join(sorted(SETTINGS_SECTIONS))}"
        )
    if key not in SETTINGS_SECTIONS[section].model_fields:
        known = ", ".join(sorted(SETTINGS_SECTIONS[section].model_fields))
        raise SettingsFileError(f"unknown key '{key}' in section '{section}' (known keys: {known})")
    value = parsed_value(section, key, text)
    write_setting(path, section, key, value)
    return value


@click.group(name="settings", invoke_without_command=True)
@click.option(
    "--settings",
    "settings_file",
    default=None,
    help="A settings file that overrides the deployment's for this command only (shown as 'cli').",
)
@click.pass_context
def settings(context: click.Context, settings_file: str | None) -> None:
    """Print the effective settings and where each value came from (default, file, cli)."""
    if context.invoked_subcommand is not None:
        return
    path = settings_file_path()
    try:
        file_sections = read_settings_file(path) if path.is_file() else {}
    except SettingsFileError as error:
        raise click.ClickException(str(error)) from error
    cli_sections = load_settings_option(settings_file)
    state = "" if path.is_file() else " (does not exist: defaults apply)"
    click.echo(f"Settings file: {path.resolve()}{state}")
    if settings_file:
        click.echo(f"--settings:    {Path(settings_file).resolve()}")
    for section, key, value, origin in effective_settings(file_sections, cli_sections):
        click.echo(f"  {section + '.' + key:<45} {value!s:<12} {origin}")


@settings.command(name="set")
@click.argument("key")
@click.argument("value")
def set_command(key: str, value: str) -> None:
    """Set KEY (SECTION.KEY, e.g. detection.z_threshold) to VALUE in the settings file, if valid.

    An invalid key or value is refused and the file is left as it was.
    """
    path = settings_file_path()
    try:
        written = set_setting(path, key, value)
    except SettingsFileError as error:
        raise click.ClickException(f"not written: {error}") from error
    click.echo(f"{key} = {written!r} in {path.resolve()}; every run from now on reads it.")
