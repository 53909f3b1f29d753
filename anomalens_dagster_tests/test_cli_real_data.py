"""Real-data mode of the `anomalens` command: ingest --detect, run --no-simulate, and the refusal to
simulate into a store that holds landed rows (a tmp DuckDB file and DAGSTER_HOME).

Commands that run assets run in their own process, as a user runs them: the code location picks
its DuckDB file and landing folder when first imported, which in a test session happened long before.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from anomalens_dagster.assets.store import store_catalog
from anomalens_dagster.cli import main
from anomalens_dagster.core.evaluation import NOT_EVALUATED
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS


@pytest.fixture
def real_store(tmp_path, monkeypatch):
    """A fresh DAGSTER_HOME, a store holding only the default catalog (the customers and products the
    landing sample refers to), and a landing folder with three days of sample files."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("ANOMALENS_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("ANOMALENS_LANDING_DIR", raising=False)
    db = tmp_path / "shop.duckdb"
    catalog = dg.materialize(
        [store_catalog], resources={"duckdb": AnomaLensDuckDB(database=str(db)), "settings": DEFAULT_SETTINGS}
    )
    assert catalog.success
    landing = tmp_path / "landing"
    exported = CliRunner().invoke(main, ["export-sample", str(landing), "--days", "3"])
    assert exported.exit_code == 0, exported.output
    return db, landing


def invoke(*args: str):
    """`anomalens` in this process: for commands that read the file by path and run nothing."""
    return CliRunner().invoke(main, list(args))


def run_anomalens(*args: str) -> subprocess.CompletedProcess:
    """The installed console script in its own process; `.output` and `.exit_code` like CliRunner's."""
    anomalens = str(Path(sys.executable).with_name("anomalens"))
    done = subprocess.run([anomalens, *args], capture_output=True, text=True, timeout=600)
    done.output, done.exit_code = done.stdout + done.stderr, done.returncode
    return done


def test_ingest_detect_trains_and_scores_the_delivered_days_and_anomalies_name_their_customers(real_store):
    db, landing = real_store

    result = run_anomalens("ingest", "--landing", str(landing), "--db", str(db), "--detect")

    assert result.exit_code == 0, result.output
    assert "training 8 detector(s) without a model" in result.output
    assert f"detection quality {NOT_EVALUATED}" in result.output
    with duckdb.connect(str(db), read_only=True) as conn:
        delivered = {day for (day,) in conn.execute("SELECT DISTINCT created_at::DATE FROM store.orders").fetchall()}
        scored = {
            day for (day,) in conn.execute("SELECT DISTINCT created_at::DATE FROM detections.order_scores").fetchall()
        }
        assert scored == delivered and len(delivered) == 3
        ((labelled_metrics,),) = conn.execute(
            "SELECT count(*) FROM detections.detector_evaluation WHERE precision IS NOT NULL OR recall IS NOT NULL"
        ).fetchall()
        assert labelled_metrics == 0  # no labels: NULL, never a precision of 0.000
        # The sample carries the simulator's high-total orders: the ensemble flags some, naming the customer.
        flagged = conn.execute(
            """SELECT a.customer_id, o.customer_id FROM detections.anomalies AS a
               JOIN store.orders AS o ON o.id = a.entity_id
               WHERE a.entity_type = 'order' AND a.detector_name = 'ensemble'"""
        ).fetchall()
    assert flagged and all(recorded == stored for recorded, stored in flagged)

    customer = flagged[0][0]
    listed = invoke("anomalies", "--db", str(db), "--customer", str(customer), "--format", "csv")
    assert listed.exit_code == 0, listed.output
    records = pd.read_csv(io.StringIO(listed.output))
    assert len(records) > 0 and set(records["customer_id"]) == {customer}

    # The models exist now: a later run on the same days trains nothing and succeeds on the store's rows.
    again = run_anomalens("run", "--no-simulate", "--db", str(db), "--days", "3", "--end-date", str(max(delivered)))
    assert again.exit_code == 0, again.output
    assert "training 0 detector(s) without a model" in again.output

    # And simulating into this store is refused, naming the way that does not simulate.
    refused = run_anomalens("run", "--db", str(db), "--days", "1")
    assert refused.exit_code == 2
    assert "--no-simulate" in refused.output
    with duckdb.connect(str(db), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM store.orders WHERE source = 'simulator'").fetchone() == (0,)


def test_run_no_simulate_on_a_store_without_rows_in_the_range_says_so_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    db = tmp_path / "empty.duckdb"

    result = run_anomalens("run", "--no-simulate", "--db", str(db), "--days", "2", "--end-date", "2026-03-02")

    assert result.exit_code == 1
    assert "holds no orders or activities from 2026-03-01 to 2026-03-02" in result.output
    assert not (tmp_path / "dagster_home").exists() or not dg.DagsterInstance.get().get_run_records()


def test_retrain_without_no_simulate_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))

    result = run_anomalens("run", "--retrain", "--db", str(tmp_path / "x.duckdb"))

    assert result.exit_code == 2
    assert "--retrain goes with --no-simulate" in result.output
