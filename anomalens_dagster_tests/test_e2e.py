"""End to end: the real webserver and daemon load the code location, run jobs, score a landed file and show the graph.

Run alone with `.venv/bin/pytest -m e2e`. Screenshots land in the test's tmp folder and, when
`ANOMALENS_SCREENSHOT_DIR` is set, are copied there too.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster_graphql import DagsterGraphQLClient
from playwright.sync_api import Page, sync_playwright

from anomalens_dagster.assets.landing import ingested_files
from anomalens_dagster.cli import RANGE_END_TAG, RANGE_START_TAG, run_config_for
from anomalens_dagster.constants import (
    ANOMALIES,
    CATEGORIES,
    CUSTOMERS,
    DUCKDB_PATH_ENV_VAR,
    LANDING_DIR_ENV_VAR,
    ORDER_ITEMS,
    ORDERS,
    PRODUCTS,
    SIMULATION_LABELS,
    STORE_GROUP,
    STORE_SCHEMA,
    UNATTENDED_RUN_TAGS,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.landing import write_landing_sample
from anomalens_dagster.definitions import defs
from anomalens_dagster.instance import DAGSTER_HOME_ENV_VAR, ensure_dagster_home
from anomalens_dagster.jobs import detect_job, full_pipeline_job, ingest_job
from anomalens_dagster_tests.conftest import SMALL_SIMULATION
from anomalens_dagster_tests.e2e_support import (
    CHROMIUM_ARGS,
    Webserver,
    chromium_path,
    dagster_service,
    free_loopback_port,
    poll,
)

pytestmark = [
    pytest.mark.e2e,
    # A hang anywhere fails the test (pytest-timeout), and the fixtures still stop every process.
    pytest.mark.timeout(300),
    # dagster_graphql's client calls gql with arguments gql has deprecated; not ours to fix.
    pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning"),
]

LOCATION_NAME = "anomalens"  # workspace.yaml
DAYS = (dt.date(2026, 3, 1), dt.date(2026, 3, 2))
STARTUP_TIMEOUT_S = 90
RUN_TIMEOUT_S = 120
SCREENSHOT_DIR_ENV_VAR = "ANOMALENS_SCREENSHOT_DIR"
# After a delivery, the runs automation launches (ingest, then each day) end within this.
SETTLE_TIMEOUT_S = 240
ACTIVE_STATUSES = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
}
UI_TIMEOUT_MS = 45_000
GRAPH_NODES = "svg foreignObject"  # the lineage graph draws each node as HTML inside its SVG
STORE_ASSETS = [CATEGORIES, PRODUCTS, CUSTOMERS, ORDERS, ORDER_ITEMS, USER_ACTIVITIES, SIMULATION_LABELS]
TERMINAL_STATUSES = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@pytest.fixture(scope="module")
def e2e_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def db_file(e2e_dir) -> Path:
    return e2e_dir / "anomalens.duckdb"


@pytest.fixture(scope="module")
def dagster_home(e2e_dir) -> Path:
    return e2e_dir / "dagster_home"


@pytest.fixture(scope="module")
def webserver(e2e_dir, db_file, dagster_home):
    """`dagster-webserver` and `dagster-daemon` on a fresh instance, stopped whatever the tests do."""
    with pytest.MonkeyPatch.context() as patch:  # ensure_dagster_home exports DAGSTER_HOME: undo that here
        patch.delenv(DAGSTER_HOME_ENV_VAR, raising=False)
        home = ensure_dagster_home(dagster_home)
    # Create the instance's storage once here: the webserver and daemon initialising a fresh SQLite
    # storage at the same moment both stamp its schema version, and it then fails to load
    # ("Version table 'alembic_version' has more than one head"). `dagster dev` also creates it before starting them.
    DagsterInstance.from_config(str(home)).dispose()
    # The landing sensor runs in the daemon: give it an empty folder of its own, not the checkout's data/landing.
    (e2e_dir / "landing").mkdir()
    env = {
        **os.environ,
        DAGSTER_HOME_ENV_VAR: str(home),
        DUCKDB_PATH_ENV_VAR: str(db_file),
        LANDING_DIR_ENV_VAR: str(e2e_dir / "landing"),
    }
    server = Webserver(free_loopback_port())
    web_args = ["-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(server.port)]
    with (
        dagster_service("dagster-daemon", ["run", "-w", "workspace.yaml"], env, e2e_dir) as daemon,
        dagster_service("dagster-webserver", web_args, env, e2e_dir) as web,
    ):
        server.services = (web, daemon)
        try:
            poll("the webserver's /server_info", server.server_info, STARTUP_TIMEOUT_S)
            poll("the code location to load", server.loaded_locations, STARTUP_TIMEOUT_S)
        except (TimeoutError, AssertionError) as error:
            pytest.fail(f"{error}\n{web.log_tail()}\n{daemon.log_tail()}")
        yield server


@pytest.fixture(scope="module")
def simulated_run(webserver) -> str:
    """Id of a `full_pipeline_job` run over DAYS (store, features, models, detections, reports), launched
    through GraphQL and finished successfully."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port)
    run_id = client.submit_job_execution(
        full_pipeline_job.name,
        run_config=run_config_for({"simulation": SMALL_SIMULATION}),
        tags={RANGE_START_TAG: DAYS[0].isoformat(), RANGE_END_TAG: DAYS[-1].isoformat()},
    )
    statuses: list[DagsterRunStatus] = []

    def finished() -> DagsterRunStatus | None:
        statuses.append(client.get_run_status(run_id))
        return statuses[-1] if statuses[-1] in TERMINAL_STATUSES else None

    try:
        status = poll(f"run {run_id} to finish", finished, RUN_TIMEOUT_S, interval=1)
    except TimeoutError as error:
        logs = "\n".join(service.log_tail() for service in webserver.services)
        pytest.fail(f"{error}; last status {statuses[-1]}\n{webserver.run_errors(run_id)}\n{logs}")
    assert status == DagsterRunStatus.SUCCESS, f"run {run_id} ended {status}:\n{webserver.run_errors(run_id)}"
    return run_id


def test_the_webserver_loads_the_code_location_without_errors(webserver):
    entries = webserver.location_entries()

    assert [entry["name"] for entry in entries] == [LOCATION_NAME]
    location = entries[0]["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location


AUTOMATION_QUERY = """
query {
  repositoriesOrError {
    ... on RepositoryConnection { nodes { schedules { name } sensors { name } } }
  }
}
"""


def test_the_ui_lists_every_schedule_and_sensor_of_the_code_location(webserver):
    (repository,) = webserver.graphql(AUTOMATION_QUERY)["repositoriesOrError"]["nodes"]

    assert {schedule["name"] for schedule in repository["schedules"]} == {"daily_simulation_schedule"}
    assert {sensor["name"] for sensor in repository["sensors"]} == {
        "landing_zone_sensor",
        "automation_condition_sensor",
        "run_failure_log_sensor",
        "alert_delivery_sensor",
    }


def test_a_run_launched_through_graphql_simulates_the_store_for_each_day(simulated_run, db_file):
    with duckdb.connect(str(db_file), read_only=True) as conn:

        def count(sql: str, params: dict | None = None) -> int:
            return int(conn.execute(sql, params or {}).fetchone()[0])

        for table in (CATEGORIES, PRODUCTS, CUSTOMERS):
            assert count(f"SELECT count(*) FROM {STORE_SCHEMA}.{table}") > 0, table
        for day in DAYS:
            day_params = {"day": day}
            orders = count(f"SELECT count(*) FROM {STORE_SCHEMA}.{ORDERS} WHERE created_at::DATE = $day", day_params)
            items = count(
                f"""SELECT count(*) FROM {STORE_SCHEMA}.{ORDER_ITEMS} i
                    JOIN {STORE_SCHEMA}.{ORDERS} o ON o.id = i.order_id WHERE o.created_at::DATE = $day""",
                day_params,
            )
            activities = count(
                f"SELECT count(*) FROM {STORE_SCHEMA}.{USER_ACTIVITIES} WHERE timestamp::DATE = $day", day_params
            )
            labelled_activities = count(
                f"""SELECT count(*) FROM {STORE_SCHEMA}.{SIMULATION_LABELS} l
                    JOIN {STORE_SCHEMA}.{USER_ACTIVITIES} a ON l.entity_type = 'activity' AND l.entity_id = a.id
                    WHERE a.timestamp::DATE = $day""",
                day_params,
            )
            # Account takeovers and card testing add their orders on top of the day's normal ones.
            assert orders >= SMALL_SIMULATION["orders_per_day"], day
            assert activities >= SMALL_SIMULATION["activities_per_day"], day
            assert items >= orders, day
            assert labelled_activities > 0, day
        outside = count(
            f"SELECT count(*) FROM {STORE_SCHEMA}.{USER_ACTIVITIES} WHERE timestamp::DATE NOT IN ($first, $last)",
            {"first": DAYS[0], "last": DAYS[-1]},
        )
        assert outside == 0


def test_the_daemon_retries_a_failed_ingest_run(webserver, dagster_home):
    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port)
    never_landed = {"ops": {ingested_files.op.name: {"config": {"files": ["never-landed.jsonl"]}}}}
    root_run_id = client.submit_job_execution(ingest_job.name, run_config=never_landed)
    retries_allowed = int(UNATTENDED_RUN_TAGS["dagster/max_retries"])
    instance = DagsterInstance.from_config(str(dagster_home))
    try:

        def every_attempt_failed() -> list | None:
            runs = [instance.get_run_by_id(root_run_id)] + instance.get_runs(
                filters=RunsFilter(tags={"dagster/root_run_id": root_run_id})
            )
            done = len(runs) == retries_allowed + 1 and all(run.status in TERMINAL_STATUSES for run in runs)
            return runs if done else None

        runs = poll("the daemon to retry the failed ingest run", every_attempt_failed, 2 * RUN_TIMEOUT_S, interval=1)
    finally:
        instance.dispose()

    assert [run.status for run in runs] == [DagsterRunStatus.FAILURE] * (retries_allowed + 1)
    assert sorted(run.tags.get("dagster/retry_number", "0") for run in runs) == [
        str(n) for n in range(retries_allowed + 1)
    ]
    assert "landing files not found" in webserver.run_errors(runs[-1].run_id)


class SettledRuns:
    """A poll probe: every run, once none has been queued or in progress for `quiet_seconds`
    (automation ticks every 5 s, so a quiet spell shorter than that proves nothing)."""

    def __init__(self, instance: DagsterInstance, quiet_seconds: float = 8) -> None:
        self.instance = instance
        self.quiet_seconds = quiet_seconds
        self.quiet_since: float | None = None

    def __call__(self) -> list | None:
        runs = self.instance.get_runs()
        now = time.monotonic()
        if any(run.status in ACTIVE_STATUSES for run in runs):
            self.quiet_since = None
            return None
        self.quiet_since = self.quiet_since or now
        return runs if now - self.quiet_since >= self.quiet_seconds else None


def check_failures(instance: DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [record.event_log_entry.dagster_event.event_specific_data for record in records]
    return [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed]


@dataclass
class Delivery:
    """A delivery of landing files for today, dropped while the daemon runs, and the runs that followed."""

    day: dt.date
    activities_file: str
    runs: list  # every run started after the drop, settled
    failed_checks: dict[str, list[str]]
    anomalies_written: bool


@pytest.fixture(scope="module")
def landed_delivery(webserver, simulated_run, dagster_home, e2e_dir) -> Delivery:
    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        # The full pipeline wrote every asset in its own run, so automation has nothing left to refresh.
        before = poll("the runs after the simulation to settle", SettledRuns(instance), SETTLE_TIMEOUT_S, 1)
        today = dt.datetime.now(dt.UTC).date()
        paths = write_landing_sample(e2e_dir / "staging", [today])
        for path in paths:
            path.rename(e2e_dir / "landing" / path.name)  # whole files appear at once, as a delivery should

        after = poll("the runs after the delivery to settle", SettledRuns(instance), SETTLE_TIMEOUT_S, 1)
        runs = [run for run in after if run.run_id not in {old.run_id for old in before}]
        scored = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(ANOMALIES), asset_partitions=[today.isoformat()]), limit=1
        ).records
        return Delivery(
            day=today,
            activities_file=next(path.name for path in paths if path.name.startswith(USER_ACTIVITIES)),
            runs=runs,
            failed_checks={run.run_id: check_failures(instance, run.run_id) for run in runs},
            anomalies_written=bool(scored),
        )
    finally:
        instance.dispose()


@pytest.mark.timeout(2 * SETTLE_TIMEOUT_S + 60)
def test_a_file_dropped_in_the_landing_zone_is_ingested_and_scored_by_successful_runs_only(
    webserver, landed_delivery, db_file
):
    runs = landed_delivery.runs
    jobs = sorted({run.job_name for run in runs})

    assert ingest_job.name in jobs and len(runs) >= 2, jobs
    assert [run.status for run in runs] == [DagsterRunStatus.SUCCESS] * len(runs), "\n".join(
        webserver.run_errors(run.run_id) for run in runs if run.status != DagsterRunStatus.SUCCESS
    )
    assert not any(landed_delivery.failed_checks.values()), landed_delivery.failed_checks
    assert landed_delivery.anomalies_written, f"no anomaly records written for {landed_delivery.day} by {jobs}"
    with duckdb.connect(str(db_file), read_only=True) as conn:
        (scored_rows,) = conn.execute(
            "SELECT count(*) FROM detections.activity_scores WHERE CAST(timestamp AS DATE) = $day",
            {"day": landed_delivery.day},
        ).fetchone()
    assert scored_rows > 0


def test_a_one_day_detect_job_launched_through_graphql_succeeds_in_one_process(webserver, simulated_run, dagster_home):
    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port)
    run_id = client.submit_job_execution(detect_job.name, tags={"dagster/partition": DAYS[-1].isoformat()})

    status = poll(
        f"detect run {run_id}", lambda: s if (s := client.get_run_status(run_id)) in TERMINAL_STATUSES else None, 180, 1
    )

    assert status == DagsterRunStatus.SUCCESS, webserver.run_errors(run_id)
    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        texts = [event.user_message for event in instance.all_logs(run_id)]
    finally:
        instance.dispose()
    assert any(text.startswith("Executing steps in process") for text in texts)


def test_the_asset_graph_and_an_asset_page_render_in_headless_chromium(webserver, landed_delivery, e2e_dir):
    executable = chromium_path()
    shots = e2e_dir / "screenshots"
    shots.mkdir()
    copies = Path(os.environ[SCREENSHOT_DIR_ENV_VAR]) if os.environ.get(SCREENSHOT_DIR_ENV_VAR) else None
    webserver.dismiss_community_nux()

    def screenshot(page: Page, name: str) -> None:
        page.screenshot(path=shots / f"{name}.png")
        if copies:
            copies.mkdir(parents=True, exist_ok=True)
            shutil.copy2(shots / f"{name}.png", copies / f"{name}.png")

    def capture(page: Page, path: str, name: str, wait_for_texts: list[str], within: str = "body") -> str:
        """Open `path`, wait until every text shows in `within` and the page is idle, save `name`.png.

        Returns the text of `within`. On a timeout the page is saved as `name`_failed.png.
        """
        page.goto(webserver.url + path, wait_until="domcontentloaded")
        try:
            for text in wait_for_texts:
                page.locator(within).get_by_text(text, exact=True).first.wait_for(timeout=UI_TIMEOUT_MS)
            page.wait_for_load_state("networkidle", timeout=UI_TIMEOUT_MS)
        except Exception:
            screenshot(page, f"{name}_failed")
            raise
        screenshot(page, name)
        return "\n".join(page.locator(within).all_text_contents())

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # Global lineage with every group collapsed: one node per group, which always fits the view.
            capture(page, "/asset-groups", "asset_graph", asset_groups(), within=GRAPH_NODES)
            # The same page with the store group open: the UI keeps open groups in `expanded`, as
            # `global@global:<group>` while groups are not split by code location (a feature flag, off).
            capture(
                page, f"/asset-groups?expanded=global@global:{STORE_GROUP}", "store_lineage", STORE_ASSETS, GRAPH_NODES
            )
            # The latest change of the activities is today's, by the landed file: the page names it.
            asset_text = capture(
                page,
                f"/assets/{USER_ACTIVITIES}",
                USER_ACTIVITIES,
                ["Latest materialization", "rows_loaded_from_file", landed_delivery.activities_file],
            )
        finally:
            browser.close()

    assert "Every user action on the site" in asset_text
    assert "Never materialized" not in asset_text


def asset_groups() -> list[str]:
    """Every group of the code location, so a new group must show in the graph too."""
    asset_graph = defs.get_repository_def().asset_graph
    return sorted({asset_graph.get(key).group_name for key in asset_graph.get_all_asset_keys()})
