"""Scale-out on real engines: DuckLake (catalog in PostgreSQL), Dagster on PostgreSQL, Celery with Redis.

The module starts its own PostgreSQL (Debian's binaries, as the `postgres` account when root) and
Redis on 127.0.0.1, and two dagster-celery workers, all stopped at the end. The 14-day backfill runs
one run per day, 4 at a time, and must leave the same tables as one process writing one DuckDB file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from anomalens_dagster.constants import DUCKDB_PATH_ENV_VAR, SETTINGS_ENV_VAR
from anomalens_dagster.core.warehouse import replace_window
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.scaleout import backfill as scaleout_backfill
from anomalens_dagster.scaleout.configured import days_job_name
from anomalens_dagster.scaleout.lake import AnomaLensDuckLake
from anomalens_dagster.scaleout.local import celery_workers, local_postgres, local_redis
from anomalens_dagster.scaleout.settings import DEFAULT_CATALOG_PASSWORD_ENV_VAR
from anomalens_dagster_tests.conftest import SMALL_SIMULATION

pytestmark = [pytest.mark.scaleout, pytest.mark.slow, pytest.mark.timeout(1800)]

LAKE_DATABASE = "anomalens_lake"
# Lakes of the smaller tests, so that their tables never meet the backfill's.
CONFLICT_LAKE_DATABASE = "conflict_lake"
TIMEOUT_LAKE_DATABASE = "timeout_lake"
DAGSTER_DATABASE = "dagster"
DAYS = 14
PARALLEL = 4
FIRST_DAY = dt.date(2026, 3, 2)
RUN_TIMEOUT_SECONDS = 600.0
# The single-file build and the backfill run side by side; either may wait for the other's CPU.
BUILD_TIMEOUT_SECONDS = 600.0
# A small store keeps 14 days inside the CI budget; the benchmark measures the demo size and more.
SIMULATION = {**SMALL_SIMULATION, "orders_per_day": 40, "activities_per_day": 400}
TRAINING = {
    "training_days": 30,
    "holdout_days": 0,
}  # both builds train on every day (`anomalens run` holds out 2 by default)
SCALEOUT_YAML = Path(scaleout_backfill.__file__).with_name("dagster.yaml")
# Columns that name when or by which model version a row was computed, not what was computed.
RUN_COLUMNS = (
    "model_version",
    "detection_timestamp",
    "first_detected_at",
    "last_detected_at",
    "detected_at",
    "trained_at",
    "generated_at",
)
# Text columns holding a JSON object, compared value by value.
JSON_COLUMNS = ("details",)
DAILY_TABLES = (
    ("store", "user_activities", '"timestamp"'),
    ("store", "orders", "created_at"),
    ("features", "activity_features", '"timestamp"'),
    ("features", "order_features", "created_at"),
    ("detections", "activity_scores", '"timestamp"'),
    ("detections", "order_scores", "created_at"),
    ("detections", "anomalies", "event_timestamp"),
)
AUTOENCODER_TOLERANCE = 1e-4
SCORE_TOLERANCE = 1e-6
LOOSE_DETECTORS = ("autoencoder", "ensemble")
# A ranking metric (PR-AUC) over thousands of rows moves by ~1/n when float noise within the score
# tolerance breaks a near-tie the other way; counts stay exact (they are not floats).
METRIC_TABLES = ("detector_evaluation",)
METRIC_TOLERANCE = 1e-3
LOCK_WORDS = ("could not set lock", "database is locked", "transaction conflict", "conflicted")


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Iterator[dict[str, str]]:
    """PostgreSQL with the lake's catalog and Dagster's databases, Redis, and the environment that reaches them."""
    password = secrets.token_hex(16)
    databases = [LAKE_DATABASE, CONFLICT_LAKE_DATABASE, TIMEOUT_LAKE_DATABASE, DAGSTER_DATABASE]
    with local_postgres(databases, password) as postgres, local_redis() as redis_url:
        folder = tmp_path_factory.mktemp("scaleout")
        settings = folder / "settings.yaml"
        settings.write_text(
            yaml.safe_dump(
                {
                    "simulation": SIMULATION,
                    "training": TRAINING,
                    "storage": {
                        "backend": "ducklake",
                        "catalog": postgres.dsn(LAKE_DATABASE),
                        "data_path": str(folder / "lake"),
                    },
                    "execution": {"executor": "celery", "broker": f"{redis_url}/0", "backend": f"{redis_url}/1"},
                }
            )
        )
        home = folder / "dagster_home"
        home.mkdir()
        shutil.copyfile(SCALEOUT_YAML, home / "dagster.yaml")
        yield {
            "DAGSTER_HOME": str(home),
            SETTINGS_ENV_VAR: str(settings),
            DEFAULT_CATALOG_PASSWORD_ENV_VAR: password,
            "ANOMALENS_DAGSTER_PG_HOST": postgres.host,
            "ANOMALENS_DAGSTER_PG_PORT": str(postgres.port),
            "ANOMALENS_DAGSTER_PG_USER": postgres.user,
            "ANOMALENS_DAGSTER_PG_PASSWORD": password,
            "ANOMALENS_DAGSTER_PG_DB": DAGSTER_DATABASE,
            "CATALOG_DSN": postgres.dsn(LAKE_DATABASE),
            "CONFLICT_CATALOG_DSN": postgres.dsn(CONFLICT_LAKE_DATABASE),
            "TIMEOUT_CATALOG_DSN": postgres.dsn(TIMEOUT_LAKE_DATABASE),
            "REDIS": redis_url,
            "DATA_PATH": str(folder / "lake"),
            "BROKER": f"{redis_url}/0",
            "BACKEND": f"{redis_url}/1",
            "FOLDER": str(folder),
        }


@pytest.fixture
def scaleout_env(services, monkeypatch) -> dict[str, str]:
    """This process's environment pointed at the scale-out instance and settings (spawned runs inherit it)."""
    for name, value in services.items():
        if name.isupper() and (name.startswith(("ANOMALENS", "DAGSTER")) or name == DEFAULT_CATALOG_PASSWORD_ENV_VAR):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv(SETTINGS_ENV_VAR, services[SETTINGS_ENV_VAR])
    return services


def lake(services, catalog_key: str = "CATALOG_DSN", data_path: str | None = None) -> AnomaLensDuckLake:
    data_path = data_path or services["DATA_PATH"]
    return AnomaLensDuckLake(
        database=str(Path(data_path) / "anomalens.ducklake"),
        catalog=services[catalog_key],
        catalog_password=services[DEFAULT_CATALOG_PASSWORD_ENV_VAR],
        data_path=data_path,
        write_conflict_retries=3,
    )


def start_single_file_build(folder: Path) -> tuple[subprocess.Popen, Path]:
    """`anomalens run` of the same 14 days and settings (storage and executor aside) into a DuckDB file."""
    settings = folder / "single-file-settings.yaml"
    settings.write_text(yaml.safe_dump({"simulation": SIMULATION, "training": TRAINING}))
    database = folder / "single.duckdb"
    env = {
        **os.environ,
        SETTINGS_ENV_VAR: str(settings),
        DUCKDB_PATH_ENV_VAR: str(database),
        "DAGSTER_HOME": str(folder / "single_home"),
    }
    last = FIRST_DAY + dt.timedelta(days=DAYS - 1)
    command = [
        str(Path(sys.executable).with_name("anomalens")),
        "run",
        "--days",
        str(DAYS),
        "--end-date",
        last.isoformat(),
        "--db",
        str(database),
        "--settings",
        str(settings),
    ]
    log = open(folder / "single-file-build.log", "w")  # noqa: SIM115 - closed by the process's end
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder), database


def tables_of(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY ALL"
    ).fetchall()


def frame_of(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> pd.DataFrame:
    return conn.execute(f"SELECT * FROM {schema}.{table}").fetch_df()


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows without their run columns, in one order, every column as text, a float or parsed JSON."""
    kept = frame[[column for column in frame.columns if column not in RUN_COLUMNS]]
    exact = [column for column in kept.columns if not pd.api.types.is_float_dtype(kept[column])]
    ordered = [column for column in exact if column not in JSON_COLUMNS]
    parsed = [column for column in exact if column in JSON_COLUMNS]
    # repr: a missing value reads the same on both sides (`<NA>`, `NaT`), lists as their text.
    as_text = kept.assign(
        **{column: kept[column].map(repr) for column in ordered},
        **{column: kept[column].map(lambda text: None if pd.isna(text) else json.loads(text)) for column in parsed},
    )
    return as_text.sort_values(ordered + [c for c in kept.columns if c not in exact]).reset_index(drop=True)


def close(expected: float, actual: float, tolerance: float) -> bool:
    return (math.isnan(expected) and math.isnan(actual)) or math.isclose(
        expected, actual, rel_tol=tolerance, abs_tol=tolerance
    )


def json_differences(expected: object, actual: object, tolerance: float, path: str = "") -> list[str]:
    """Where two parsed JSON values differ: numbers beyond ``tolerance``, run keys ignored."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = (set(expected) | set(actual)) - set(RUN_COLUMNS)
        return [
            d
            for key in sorted(keys)
            for d in json_differences(expected.get(key), actual.get(key), tolerance, f"{path}.{key}")
        ]
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in json_differences(e, a, tolerance, f"{path}[{i}]")
        ]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) and not isinstance(expected, bool):
        return [] if close(expected, actual, tolerance) else [f"{path}: {expected} != {actual}"]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


def row_tolerances(table: str, rows: pd.DataFrame, column: str) -> list[float]:
    """Each row's tolerance for ``column``: a metric's over many rows, the autoencoder's (and the
    ensemble's, which reads it) when the column or the row's detector names one of them, else the
    scores' own."""
    if table in METRIC_TABLES:
        return [METRIC_TOLERANCE] * len(rows)
    if any(name in column for name in LOOSE_DETECTORS):
        return [AUTOENCODER_TOLERANCE] * len(rows)
    detector_column = next((c for c in ("detector", "detector_name") if c in rows.columns), None)
    if detector_column is None:
        return [SCORE_TOLERANCE] * len(rows)
    return [
        AUTOENCODER_TOLERANCE if any(name in detector for name in LOOSE_DETECTORS) else SCORE_TOLERANCE
        for detector in rows[detector_column].astype(str)
    ]


def assert_same_rows(schema: str, table: str, single: pd.DataFrame, lake_rows: pd.DataFrame) -> None:
    assert sorted(lake_rows.columns) == sorted(single.columns), f"{schema}.{table}: columns differ"
    single_rows, lake_sorted = comparable(single), comparable(lake_rows[single.columns])
    assert len(lake_sorted) == len(single_rows), (
        f"{schema}.{table}: {len(lake_sorted)} rows, single file {len(single_rows)}"
    )
    for column in single_rows.columns:
        if pd.api.types.is_float_dtype(single_rows[column]):
            tolerances = row_tolerances(table, single_rows, column)
            expected, actual = single_rows[column].to_numpy(), lake_sorted[column].to_numpy()
            far = [
                (e, a)
                for e, a, tolerance in zip(expected, actual, tolerances, strict=True)
                if not close(e, a, tolerance)
            ]
            assert not far, f"{schema}.{table}.{column}: {len(far)} values differ beyond tolerance, e.g. {far[:3]}"
        elif column in JSON_COLUMNS:
            # A record's details carry its detector's scores: the same tolerance as the scores themselves.
            differences = [
                difference
                for expected, actual, tolerance in zip(
                    single_rows[column], lake_sorted[column], row_tolerances(table, single_rows, column), strict=True
                )
                for difference in json_differences(expected, actual, tolerance)
            ]
            assert not differences, (
                f"{schema}.{table}.{column}: {len(differences)} values differ, e.g. {differences[:3]}"
            )
        else:
            differ = int((single_rows[column] != lake_sorted[column]).sum())
            assert differ == 0, f"{schema}.{table}.{column}: {differ} values differ"


def test_a_14_day_backfill_on_ducklake_4_days_at_a_time_equals_one_process_on_one_file(scaleout_env, tmp_path):
    single_build, single_database = start_single_file_build(tmp_path)
    days = [FIRST_DAY + dt.timedelta(days=offset) for offset in range(DAYS)]
    folder = Path(scaleout_env["FOLDER"])
    workers_env = {name: value for name, value in os.environ.items()}
    try:
        with celery_workers(2, 2, scaleout_env["BROKER"], scaleout_env["BACKEND"], workers_env, folder / "celery"):
            outcomes = scaleout_backfill.backfill(days, PARALLEL, RUN_TIMEOUT_SECONDS)
        single_build.wait(timeout=BUILD_TIMEOUT_SECONDS)
    finally:
        if single_build.poll() is None:
            single_build.kill()
    assert single_build.returncode == 0, (tmp_path / "single-file-build.log").read_text()[-3000:]

    # In DuckLake mode a backfill is one run per day, each day exactly once per daily phase.
    for group in ("store", "features", "detections"):
        partitions = sorted(o.partition for o in outcomes if o.job_name == days_job_name(group))
        assert partitions == [day.isoformat() for day in days]

    with dg.DagsterInstance.get() as instance:
        for outcome in outcomes:
            run = instance.get_run_by_id(outcome.run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS
            # What each event says, its error included (a retried step's conflict, a lock it waited on).
            texts = [
                f"{record.user_message} {record.dagster_event!r}" if record.dagster_event else record.user_message
                for record in instance.all_logs(outcome.run_id)
            ]
            locked = [text for text in texts if any(word in text.lower() for word in LOCK_WORDS)]
            assert not locked, f"run {outcome.run_id} ({outcome.job_name} {outcome.partition}): {locked[:2]}"

    with duckdb.connect(str(single_database), read_only=True) as single, lake(scaleout_env).read_connection() as conn:
        single_tables = [table for table in tables_of(single) if table[0] != "ml"]
        assert single_tables == [table for table in tables_of(conn) if table[0] != "ml"]
        for schema, table in single_tables:
            assert_same_rows(schema, table, frame_of(single, schema, table), frame_of(conn, schema, table))
        # Equal and not empty: every day of every daily table holds rows.
        for schema, table, time_column in DAILY_TABLES:
            ((days_held,),) = conn.execute(
                f"SELECT count(DISTINCT CAST({time_column} AS DATE)) FROM {schema}.{table}"
            ).fetchall()
            assert days_held == DAYS, f"{schema}.{table}"


def test_a_day_rewritten_by_another_writer_meanwhile_is_written_again_by_a_retry_and_stored_once(services, tmp_path):
    resource = lake(services, "CONFLICT_CATALOG_DSN", str(tmp_path / "lake"))
    start = dt.datetime(2026, 3, 2)
    end = start + dt.timedelta(days=1)

    def day_rows(value: int) -> pd.DataFrame:
        return pd.DataFrame({"ts": [start + dt.timedelta(hours=hour) for hour in range(24)], "value": [value] * 24})

    with resource.get_connection() as conn:
        replace_window(conn, "features", "conflicted", [day_rows(0)], "ts", start, end)
    attempts = []

    def rows_while_another_writer_commits(value: int) -> Iterator[pd.DataFrame]:
        yield day_rows(value)
        if len(attempts) == 1:  # between this transaction's delete and its commit, the first time only
            with resource.get_connection() as other:
                replace_window(other, "features", "conflicted", [day_rows(-1)], "ts", start, end)

    @dg.asset
    def conflicted(duckdb: AnomaLensDuckDB) -> None:
        attempts.append(1)
        with duckdb.get_connection() as conn:
            replace_window(conn, "features", "conflicted", rows_while_another_writer_commits(1), "ts", start, end)

    result = dg.materialize([conflicted], resources={"duckdb": resource})

    assert result.success
    assert len(attempts) == 2
    retried = [event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retried) == 1
    with resource.read_connection() as conn:
        rows = conn.execute("SELECT value, count(*) FROM features.conflicted GROUP BY value").fetchall()
    assert rows == [(1, 24)]


def test_a_day_run_whose_steps_no_worker_takes_fails_the_backfill_at_its_timeout(services, monkeypatch, tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "simulation": SIMULATION,
                "storage": {
                    "backend": "ducklake",
                    "catalog": services["TIMEOUT_CATALOG_DSN"],
                    "data_path": str(tmp_path / "lake"),
                },
                # A Redis database no worker listens to: the day runs' steps wait forever.
                "execution": {
                    "executor": "celery",
                    "broker": f"{services['REDIS']}/5",
                    "backend": f"{services['REDIS']}/6",
                },
            }
        )
    )
    for name, value in services.items():
        if name.startswith(("ANOMALENS", "DAGSTER")) or name == DEFAULT_CATALOG_PASSWORD_ENV_VAR:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv(SETTINGS_ENV_VAR, str(settings))
    # Days the backfill test does not write, so the instance's runs of them are this test's.
    days = [dt.date(2026, 6, 1), dt.date(2026, 6, 2)]

    # The catalog and the first day run first, each a wave of its own (about 9 s together under the
    # suite's load), so 45 s per wave leaves room on a machine busier still.
    with pytest.raises(
        scaleout_backfill.BackfillError, match="store_days_job for 2026-06-02 did not finish within 45 s"
    ):
        scaleout_backfill.backfill(days, parallel=1, run_timeout=45)

    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(
            filters=dg.RunsFilter(job_name=days_job_name("store"), tags={"dagster/partition": days[1].isoformat()})
        )
        assert run.status == dg.DagsterRunStatus.FAILURE


DEFINITIONS_PROBE = """
import json
import dagster as dg
from anomalens_dagster.definitions import defs

repository = defs.get_repository_def()
graph = repository.asset_graph
print(json.dumps({
    "resource": type(defs.resources["duckdb"]).__name__,
    "executors": sorted({job.executor_def.name for job in repository.get_all_jobs()}),
    "daily_policies": sorted({
        str(graph.get(key).backfill_policy) for key in graph.get_all_asset_keys() if graph.get(key).is_partitioned
    }),
    "schedules": sorted(schedule.name for schedule in repository.schedule_defs),
}))
"""


def test_ducklake_settings_make_every_job_run_on_celery_and_every_day_its_own_backfill_run(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "storage": {"backend": "ducklake", "catalog": "dbname=lake host=127.0.0.1", "data_path": str(tmp_path)},
                "execution": {"executor": "celery", "broker": "redis://127.0.0.1:1/0"},
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-c", DEFINITIONS_PROBE],
        env={**os.environ, SETTINGS_ENV_VAR: str(settings)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])

    assert loaded["resource"] == "AnomaLensDuckLake"
    assert loaded["executors"] == ["celery"]
    assert loaded["daily_policies"] == [str(dg.BackfillPolicy.multi_run(1))]
    assert "lake_maintenance_schedule" in loaded["schedules"]


def test_a_catalog_that_refuses_the_connection_fails_without_its_password_in_the_error(tmp_path):
    from anomalens_dagster.scaleout.local import free_port

    resource = AnomaLensDuckLake(
        database=str(tmp_path / "anomalens.ducklake"),
        catalog=f"dbname=nowhere host=127.0.0.1 port={free_port()} user=anomalens",
        catalog_password="not-in-any-log",
        data_path=str(tmp_path / "lake"),
        write_conflict_retries=1,
    )

    with pytest.raises(duckdb.Error) as failure, resource.read_connection():
        pass

    assert "Unable to connect to Postgres" in str(failure.value)
    assert "not-in-any-log" not in "".join(traceback.format_exception(failure.value))
