"""Landing asset: deliveries ingested by a real Dagster run into a store in tmp DuckDB, every row accounted for."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from anomalens_dagster.assets.landing import check_ingest_conserves_rows, ingested_files
from anomalens_dagster.constants import ORDER_ITEMS, ORDERS, SIMULATOR_SOURCE, USER_ACTIVITIES
from anomalens_dagster.core.landing import (
    QUARANTINE_DIR,
    STATUS_DUPLICATE,
    STATUS_LOADED,
    STATUS_PARTIAL,
    STATUS_QUARANTINED,
    landing_file_kind,
    write_landing_sample,
)
from anomalens_dagster.resources import AnomaLensDuckDB, LandingZone
from anomalens_dagster_tests.assets.conftest import materialize_store
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS

DAY = dt.date(2026, 3, 1)
# The default seed and catalog, which write_landing_sample references; little traffic keeps it fast.
STORE_SIMULATION = {"orders_per_day": 60, "activities_per_day": 600}
STORE_TABLES = (ORDERS, ORDER_ITEMS, USER_ACTIVITIES)


@pytest.fixture(scope="module")
def store_template(tmp_path_factory) -> Path:
    """A store with the default catalog and one simulated day, built once and copied by each test."""
    path = tmp_path_factory.mktemp("store") / "anomalens.duckdb"
    assert materialize_store(AnomaLensDuckDB(database=str(path)), STORE_SIMULATION, partition_key=str(DAY)).success
    return path


@pytest.fixture(scope="module")
def sample_template(tmp_path_factory) -> list[Path]:
    return write_landing_sample(tmp_path_factory.mktemp("sample"), [DAY], orders_per_day=20, activities_per_day=200)


@pytest.fixture
def store(store_template, db_path, duckdb_resource) -> AnomaLensDuckDB:
    shutil.copy(store_template, db_path)
    return duckdb_resource


@pytest.fixture
def sample(sample_template, landing_dir) -> list[Path]:
    """The sample delivery in the test's landing zone: orders (CSV), order items (Parquet), activities (JSON Lines)."""
    return [Path(shutil.copy(path, landing_dir)) for path in sample_template]


def ingest(store: AnomaLensDuckDB, landing_dir: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ingested_files, check_ingest_conserves_rows],
        resources={"duckdb": store, "landing": LandingZone(directory=str(landing_dir)), "settings": DEFAULT_SETTINGS},
    )


def ingest_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = [
        event
        for event in result.asset_materializations_for_node(ingested_files.op.name)
        if event.asset_key == ingested_files.key
    ]
    return {key: value.value for key, value in materialization.metadata.items()}


def conservation_passed(result: dg.ExecuteInProcessResult) -> bool:
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation.passed


def query(db_path: Path, sql: str, parameters: list | None = None) -> pd.DataFrame:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(sql, parameters or []).df()


def rows_from(db_path: Path, file: str) -> int:
    """Rows the store holds from one landing file (its name is their `source`)."""
    kind = landing_file_kind(file)
    return int(query(db_path, f"SELECT count(*) AS n FROM store.{kind} WHERE source = ?", [file])["n"].iloc[0])


def rows_by_source(db_path: Path) -> dict[tuple[str, str], int]:
    counts = {}
    for table in STORE_TABLES:
        frame = query(db_path, f"SELECT source, count(*) AS n FROM store.{table} GROUP BY source")
        counts.update({(table, source): n for source, n in zip(frame["source"], frame["n"], strict=True)})
    return counts


def rows_in(path: Path) -> int:
    if path.suffix == ".csv":
        return len(pd.read_csv(path))
    if path.suffix == ".parquet":
        return len(pd.read_parquet(path))
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def ingested_file_log(db_path: Path) -> pd.DataFrame:
    return query(db_path, "SELECT * FROM ops.ingested_files ORDER BY ingested_at, file")


def test_a_sample_delivery_lands_in_the_store_under_its_file_names(store, db_path, sample):
    expected = {path.name: rows_in(path) for path in sample}

    result = ingest(store, sample[0].parent)

    metadata = ingest_metadata(result)
    assert {row["file"]: (row["status"], row["rows_in"], row["rows_loaded"]) for row in metadata["files"]} == {
        file: (STATUS_LOADED, rows, rows) for file, rows in expected.items()
    }
    assert metadata["ingested_days"] == [DAY.isoformat()]
    assert metadata["rows_in"] == metadata["rows_loaded"] == sum(expected.values())
    assert metadata["rows_rejected"] == 0
    assert {file: rows_from(db_path, file) for file in expected} == expected
    assert conservation_passed(result)


def test_a_second_ingest_of_the_same_files_is_a_no_op(store, db_path, sample):
    ingest(store, sample[0].parent)
    after_first = rows_by_source(db_path)

    second = ingest(store, sample[0].parent)

    metadata = ingest_metadata(second)
    assert [row["status"] for row in metadata["files"]] == [STATUS_DUPLICATE] * len(sample)
    assert (metadata["rows_loaded"], metadata["ingested_days"]) == (0, [])
    assert rows_by_source(db_path) == after_first
    assert conservation_passed(second)


def test_an_unreadable_file_is_quarantined_with_its_reason(store, db_path, landing_dir):
    (landing_dir / "orders-broken.csv").write_bytes(b"\x00\x01\x02 not a csv \xff\xfe")

    result = ingest(store, landing_dir)

    assert not (landing_dir / "orders-broken.csv").exists()
    assert (landing_dir / QUARANTINE_DIR / "orders-broken.csv").exists()
    assert "binary" in (landing_dir / QUARANTINE_DIR / "orders-broken.csv.reason.txt").read_text()
    (logged,) = ingested_file_log(db_path).to_dict("records")
    assert (logged["file"], logged["status"], logged["rows_loaded"]) == ("orders-broken.csv", STATUS_QUARANTINED, 0)
    assert "binary" in logged["reason"]
    assert [row["status"] for row in ingest_metadata(result)["files"]] == [STATUS_QUARANTINED]
    assert conservation_passed(result)


def test_a_file_with_bad_rows_loads_the_good_ones_and_records_the_bad_ones(
    store, db_path, sample_template, landing_dir
):
    orders = pd.read_csv(next(path for path in sample_template if landing_file_kind(path) == ORDERS), dtype=str)
    orders.loc[0, "total_amount"] = "-5"
    orders.loc[1, "status"] = "lost_in_transit"
    orders.to_csv(landing_dir / "orders-mixed.csv", index=False)

    result = ingest(store, landing_dir)

    metadata = ingest_metadata(result)
    counts = (metadata["rows_in"], metadata["rows_loaded"], metadata["rows_rejected"])
    assert counts == (len(orders), len(orders) - 1, 1)
    assert rows_from(db_path, "orders-mixed.csv") == len(orders) - 1
    rejections = query(db_path, 'SELECT file, line, "column" FROM ops.ingest_rejections ORDER BY line')
    # The CSV header is line 1, so the first record is line 2.
    assert rejections.to_dict("records") == [{"file": "orders-mixed.csv", "line": 2, "column": "total_amount"}]
    # A status outside the usual ones is free text: it loads and is counted.
    assert metadata["unknown_values"] == {ORDERS: {"status": {"lost_in_transit": 1}}}
    assert [row["status"] for row in metadata["files"]] == [STATUS_PARTIAL]
    assert conservation_passed(result)


@pytest.mark.slow
def test_rebuilding_a_simulated_day_keeps_the_rows_landed_on_it(store, db_path, sample):
    ingest(store, sample[0].parent)
    before = rows_by_source(db_path)

    assert materialize_store(store, STORE_SIMULATION, partition_key=str(DAY)).success

    assert rows_by_source(db_path) == before
    assert {source for _, source in before} == {SIMULATOR_SOURCE, *(path.name for path in sample)}


# The ingest run in a process of its own; a file's rows are written and then the write stalls before
# its transaction commits, so the parent can kill the process in the middle of that file's load.
STALLING_INGEST = textwrap.dedent(
    """
    import sys
    import time

    import dagster as dg

    from anomalens_dagster.assets.landing import ingested_files
    from anomalens_dagster.core import landing
    from anomalens_dagster.resources import AnomaLensDuckDB, LandingZone
    from anomalens_dagster.settings import settings_resource

    database, directory, stalling_kind = sys.argv[1:]
    insert_loaded = landing.delivery.insert_new_rows

    def insert_then_stall(conn, kind, loaded):
        insert_loaded(conn, kind, loaded)
        print(f"inserted {kind}", flush=True)
        if kind == stalling_kind:
            time.sleep(600)

    landing.delivery.insert_new_rows = insert_then_stall
    dg.materialize(
        [ingested_files],
        resources={"duckdb": AnomaLensDuckDB(database=database), "landing": LandingZone(directory=directory), "settings": settings_resource()},
    )
    """
)


def kill_ingest_while_loading(db_path: Path, landing_dir: Path, stalling_kind: str, log_path: Path) -> list[str]:
    """Run an ingest in a subprocess and SIGKILL it once `stalling_kind`'s rows are written, uncommitted."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", STALLING_INGEST, str(db_path), str(landing_dir), stalling_kind],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        watchdog = threading.Timer(120, process.kill)  # never hang the suite if the marker never comes
        watchdog.start()
        try:
            inserted = []
            for line in process.stdout:
                inserted.append(line.split()[-1])
                if inserted[-1] == stalling_kind:
                    process.send_signal(signal.SIGKILL)
                    break
        finally:
            watchdog.cancel()
            process.kill()
            process.wait()
            process.stdout.close()
    assert process.returncode == -signal.SIGKILL, log_path.read_text()[-3000:]
    return inserted


@pytest.mark.slow
def test_an_ingest_killed_in_the_middle_of_a_file_leaves_no_partial_load_and_a_rerun_completes_it(
    store, db_path, sample, tmp_path
):
    expected = {path.name: rows_in(path) for path in sample}
    orders, items, activities = (next(p.name for p in sample if landing_file_kind(p) == kind) for kind in STORE_TABLES)

    inserted = kill_ingest_while_loading(db_path, sample[0].parent, ORDER_ITEMS, tmp_path / "killed_ingest.log")

    assert inserted == [ORDERS, ORDER_ITEMS]
    log = ingested_file_log(db_path)
    # Every file is either wholly loaded, with its log line, or not there at all.
    assert dict(zip(log["file"], log["rows_loaded"], strict=True)) == {orders: expected[orders]}
    assert {file: rows_from(db_path, file) for file in expected} == {orders: expected[orders], items: 0, activities: 0}

    rerun = ingest(store, sample[0].parent)

    statuses = {row["file"]: row["status"] for row in ingest_metadata(rerun)["files"]}
    assert statuses == {orders: STATUS_DUPLICATE, items: STATUS_LOADED, activities: STATUS_LOADED}
    assert {file: rows_from(db_path, file) for file in expected} == expected
    assert conservation_passed(rerun)
    # The re-delivered orders file is a delivery of its own: "did you get my file?" has an answer.
    assert sorted(ingested_file_log(db_path)["file"]) == sorted([*expected, orders])


def test_ingest_config_takes_file_names_inside_the_landing_folder_not_paths(store, landing_dir):
    with pytest.raises(dg.Failure, match=r"not paths: \['../orders-elsewhere.csv'\]"):
        dg.materialize(
            [ingested_files],
            resources={
                "duckdb": store,
                "landing": LandingZone(directory=str(landing_dir)),
                "settings": DEFAULT_SETTINGS,
            },
            run_config={"ops": {"ingested_files": {"config": {"files": ["../orders-elsewhere.csv"]}}}},
        )
