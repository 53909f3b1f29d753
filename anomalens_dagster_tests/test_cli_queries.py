"""`anomalens settings` and `anomalens anomalies` against a tmp settings file and a tmp DuckDB file."""

from __future__ import annotations

import io
import json

import duckdb
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from anomalens_dagster.cli import main
from anomalens_dagster.constants import SETTINGS_ENV_VAR
from anomalens_dagster.core.anomalies import ANOMALY_DTYPES


@pytest.fixture
def settings_path(tmp_path, monkeypatch):
    path = tmp_path / "deployment" / "settings.yaml"
    monkeypatch.setenv(SETTINGS_ENV_VAR, str(path))
    return path


def setting_lines(output: str) -> dict[str, tuple[str, str]]:
    """`section.key` -> (value, origin) from the printed settings."""
    rows = [line.split() for line in output.splitlines() if line.startswith("  ")]
    return {row[0]: (row[1], row[-1]) for row in rows}


def test_settings_says_where_each_value_came_from_default_file_or_cli(tmp_path, settings_path):
    settings_path.parent.mkdir()
    settings_path.write_text(yaml.safe_dump({"detection": {"z_threshold": 4.5}, "training": {"training_days": 9}}))
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"training": {"training_days": 3}}))

    result = CliRunner().invoke(main, ["settings", "--settings", str(override)])

    assert result.exit_code == 0, result.output
    shown = setting_lines(result.output)
    assert shown["detection.z_threshold"] == ("4.5", "file")
    assert shown["training.training_days"] == ("3", "cli")
    assert shown["training.seed"] == ("42", "default")


def test_settings_set_writes_the_value_and_keeps_the_rest_of_the_file(settings_path):
    settings_path.parent.mkdir()
    settings_path.write_text(yaml.safe_dump({"training": {"training_days": 9}}))

    result = CliRunner().invoke(main, ["settings", "set", "detection.z_threshold", "4.5"])
    text_setting = CliRunner().invoke(main, ["settings", "set", "detection.iforest_contamination", "0.01"])

    assert result.exit_code == 0 and text_setting.exit_code == 0, result.output + text_setting.output
    assert yaml.safe_load(settings_path.read_text()) == {
        "training": {"training_days": 9},
        "detection": {"z_threshold": 4.5, "iforest_contamination": "0.01"},
    }
    assert setting_lines(CliRunner().invoke(main, ["settings"]).output)["detection.z_threshold"] == ("4.5", "file")


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("detection.z_threshold", "0", "greater than 0"),
        ("detection.z_threshold", "many", "z_threshold"),
        ("detection.z_treshold", "4.5", "unknown key 'z_treshold'"),
        ("detecton.z_threshold", "4.5", "SECTION.KEY"),
    ],
)
def test_settings_set_refuses_an_invalid_key_or_value_without_writing(settings_path, key, value, named):
    settings_path.parent.mkdir()
    before = yaml.safe_dump({"detection": {"z_threshold": 4.5}})
    settings_path.write_text(before)

    result = CliRunner().invoke(main, ["settings", "set", key, value])

    assert result.exit_code == 1
    assert "not written" in result.output and named in result.output
    assert settings_path.read_text() == before


def anomaly_row(entity_type: str, entity_id: int, detector: str, severity: str, day: str, **who) -> dict:
    return {
        "id": entity_id * 10 + len(detector),
        "entity_type": entity_type,
        "entity_id": entity_id,
        "detection_timestamp": pd.Timestamp("2026-03-10"),
        "description": f"{detector} on {entity_type} {entity_id}",
        "severity": severity,
        "detector_name": detector,
        "details": "{}",
        "anomaly_score": 2.0,
        "event_timestamp": pd.Timestamp(day),
        "customer_id": None,
        "ip_address": None,
        "session_id": None,
        "incident_id": None,
    } | who


@pytest.fixture
def anomalies_db(tmp_path):
    """A DuckDB file holding anomaly records of customers 320 and 7 and of an anonymous visitor."""
    path = tmp_path / "shop.duckdb"
    records = pd.DataFrame(
        [
            anomaly_row("order", 1, "zscore", "High", "2026-03-01", customer_id=320),
            anomaly_row("activity", 2, "dbscan", "Low", "2026-03-02", customer_id=320, ip_address="203.0.113.7"),
            anomaly_row("activity", 3, "zscore", "High", "2026-03-03", customer_id=7, ip_address="203.0.113.7"),
            anomaly_row("activity", 4, "ensemble", "Medium", "2026-03-04", ip_address="198.51.100.1", session_id="s4"),
        ]
    ).astype(ANOMALY_DTYPES)
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA detections")
        conn.register("records", records)
        conn.execute("CREATE TABLE detections.anomalies AS SELECT * FROM records")
    return path


def list_anomalies(db, *options: str):
    result = CliRunner().invoke(main, ["anomalies", "--db", str(db), *options])
    assert result.exit_code == 0, result.output
    return result.output


def test_anomalies_of_a_customer_as_csv_are_that_customers_records_newest_first(anomalies_db):
    listed = pd.read_csv(io.StringIO(list_anomalies(anomalies_db, "--customer", "320", "--format", "csv")))

    assert listed[["entity_type", "entity_id", "customer_id"]].values.tolist() == [
        ["activity", 2, 320],
        ["order", 1, 320],
    ]
    assert listed.loc[0, "ip_address"] == "203.0.113.7"


def test_anomalies_filter_by_ip_severity_and_since_and_limit(anomalies_db):
    def ids(*options):
        return [row["entity_id"] for row in json.loads(list_anomalies(anomalies_db, "--format", "json", *options))]

    assert ids("--ip", "203.0.113.7") == [3, 2]
    assert ids("--severity", "high") == [3, 1]
    assert ids("--since", "2026-03-03") == [4, 3]
    assert ids("--limit", "1") == [4]
    assert ids("--customer", "999") == []


def test_anomalies_as_a_table_name_the_customer_and_say_when_nothing_matches(anomalies_db):
    table = list_anomalies(anomalies_db, "--customer", "7")

    assert "zscore on activity 3" in table and "203.0.113.7" in table
    assert list_anomalies(anomalies_db, "--customer", "999").strip() == "No anomaly records match."


def test_anomalies_of_a_store_without_records_say_what_to_run(tmp_path):
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()

    result = CliRunner().invoke(main, ["anomalies", "--db", str(db)])

    assert result.exit_code == 1
    assert "no anomaly records yet" in result.output
