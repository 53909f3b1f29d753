"""The `anomalens` command: settings files and a real run against a persistent instance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from click.testing import CliRunner

from anomalens_dagster.cli import main
from anomalens_dagster.configs import SettingsFileError, validate_settings
from anomalens_dagster_tests.conftest import SMALL_SIMULATION


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """A fresh DAGSTER_HOME and no inherited DuckDB path, like a new user's shell."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("ANOMALENS_DUCKDB_PATH", raising=False)
    return tmp_path


def write_settings(path, settings: dict):
    path.write_text(yaml.safe_dump(settings))
    return path


def test_an_unknown_settings_key_is_an_error_that_names_the_key_and_section(tmp_path, isolated_env):
    settings = write_settings(tmp_path / "settings.yaml", {"simulation": {"seed": 1, "num_custmers": 10}})

    result = CliRunner().invoke(main, ["run", "--settings", str(settings), "--db", str(tmp_path / "x.duckdb")])

    assert result.exit_code == 2
    assert "unknown key 'num_custmers' in section 'simulation'" in result.output
    assert not (tmp_path / "x.duckdb").exists()


def test_an_unknown_settings_section_is_an_error_that_names_it():
    with pytest.raises(SettingsFileError, match="unknown section 'simulaton'"):
        validate_settings({"simulaton": {"seed": 1}}, source="s.yaml")


def test_a_settings_value_of_the_wrong_type_is_an_error_that_names_the_section():
    with pytest.raises(SettingsFileError, match="section 'simulation'"):
        validate_settings({"simulation": {"orders_per_day": "many"}}, source="s.yaml")


def run_anomalens(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, in its own process, as a user runs it."""
    anomalens = str(Path(sys.executable).with_name("anomalens"))
    return subprocess.run([anomalens, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_run_prints_its_progress_without_noise_and_twice_materialises_the_same_store_recording_both_runs(
    tmp_path, isolated_env, monkeypatch
):
    settings = write_settings(tmp_path / "settings.yaml", {"simulation": SMALL_SIMULATION})
    db = tmp_path / "shop.duckdb"
    args = ["run", "--days", "2", "--end-date", "2026-03-02", "--db", str(db), "--settings", str(settings)]
    monkeypatch.setenv("ANOMALENS_LANDING_DIR", str(tmp_path / "landing"))

    first = run_anomalens(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "landing").is_dir()  # ready for the store's own files
    snapshot = dump_store(db)
    second = run_anomalens(*args)

    assert second.returncode == 0, second.stdout + second.stderr
    assert "store.user_activities" in second.stdout
    assert dump_store(db) == snapshot
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    assert len(runs) == 2
    assert all(run.tags["dagster/asset_partition_range_start"] == "2026-03-01" for run in runs)
    assert_progress_without_noise(first)


def assert_progress_without_noise(run: subprocess.CompletedProcess) -> None:
    """`anomalens run` prints its steps, its incidents and the evaluation once, and nothing of TensorFlow
    or Dagster's own logging."""
    output = run.stdout + run.stderr
    assert "[ 1/25] store_catalog" in run.stdout and "[25/25] " in run.stdout
    assert "incidents (most severe, then highest ensemble score" in run.stdout
    assert "scored 3000 activity rows of 2026-03-01..2026-03-02" in run.stdout
    assert output.count("detection quality against the simulator's labels") == 1
    # Keras' epoch bars and per-epoch losses, TensorFlow's start-up and retracing lines, Dagster's
    # warnings and its console logger's lines.
    for noise in ("Epoch 1/", "epoch 1:", "retracing", "tensorflow", "oneDNN", "absl", "Warning", " - INFO - "):
        assert noise.lower() not in output.lower(), f"{noise!r} in the output:\n{output}"


def dump_store(db) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = [
            name
            for (name,) in conn.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name='store'").fetchall()
        ]
        return {table: conn.execute(f"SELECT * FROM store.{table} ORDER BY ALL").fetchall() for table in tables}


def test_a_database_file_named_like_a_schema_is_refused_with_the_reason(tmp_path, isolated_env):
    result = CliRunner().invoke(main, ["run", "--db", str(tmp_path / "store.duckdb")])

    assert result.exit_code == 2
    assert "named like the schema 'store'" in result.output


def test_export_sample_then_ingest_prints_every_file_with_rows_in_loaded_rejected_and_status(tmp_path, isolated_env):
    landing = tmp_path / "landing"
    exported = run_anomalens("export-sample", str(landing))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    files = sorted(path.name for path in landing.iterdir())
    kinds = ["categories", "customers", "order_items", "orders", "products", "user_activities"]
    assert [name.split("-")[0] for name in files] == kinds
    names = set(files)

    # The delivery holds a whole store: into an empty one every row loads, in dependency order, and
    # none is lost. The landing folder is created on first use.
    ingested = run_anomalens("ingest", "--landing", str(landing), "--db", str(tmp_path / "shop.duckdb"))
    first_use = run_anomalens("ingest", "--landing", str(tmp_path / "new"), "--db", str(tmp_path / "other.duckdb"))

    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    lines = {
        fields[0]: fields for fields in map(str.split, ingested.stdout.splitlines()) if fields and fields[0] in names
    }
    assert set(lines) == names
    for file, (_, rows_in, loaded, *_others, status) in lines.items():
        assert int(rows_in) == int(loaded) > 0, file
        assert status == "loaded"
    assert first_use.returncode == 0 and (tmp_path / "new").is_dir(), first_use.stdout + first_use.stderr
    with duckdb.connect(str(tmp_path / "shop.duckdb"), read_only=True) as conn:
        logged = conn.execute("SELECT count(*) FROM ops.ingested_files").fetchone()[0]
    assert logged == len(files)


def test_rebuild_of_an_unknown_asset_lists_the_rebuildable_ones(tmp_path, isolated_env):
    result = CliRunner().invoke(main, ["rebuild", "order_featurs", "--db", str(tmp_path / "shop.duckdb")])

    assert result.exit_code == 2
    assert "unknown asset 'order_featurs'" in result.output
    assert "activity_features, activity_scores, anomalies, customer_access_day_summaries" in result.output
    assert "order_features, order_scores, product_day_summaries, store_day_summaries" in result.output


def test_rebuild_of_an_asset_without_daily_columns_to_go_stale_says_how_to_rebuild_it(tmp_path, isolated_env):
    result = CliRunner().invoke(main, ["rebuild", "consolidated_anomalies", "--db", str(tmp_path / "shop.duckdb")])

    assert result.exit_code == 2
    assert "consolidated_anomalies is not a daily asset whose code version follows its columns" in result.output
