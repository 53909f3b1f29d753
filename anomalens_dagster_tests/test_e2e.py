"""End to end: the real webserver and daemon load the code location, run `simulate_job` and show the graph.

Run alone with `.venv/bin/pytest -m e2e`. Screenshots land in the test's tmp folder and, when
`ANOMALENS_SCREENSHOT_DIR` is set, are copied there too.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster_graphql import DagsterGraphQLClient
from playwright.sync_api import Page, sync_playwright

from anomalens_dagster.assets.landing import ingested_files
from anomalens_dagster.cli import RANGE_END_TAG, RANGE_START_TAG, run_config_for
from anomalens_dagster.constants import (
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
    USER_ACTIVITIES,
)
from anomalens_dagster.definitions import defs
from anomalens_dagster.instance import DAGSTER_HOME_ENV_VAR, ensure_dagster_home
from anomalens_dagster.jobs import UNATTENDED_RUN_RETRIES, ingest_job, simulate_job
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
# The default multiprocess executor starts each of simulate_job's 13 steps (2 assets, 11 checks) in
# its own process, one at a time on the `duckdb` pool: over 2 minutes here. In process it takes seconds,
# and the run still goes through the daemon's queue and a run worker like any launched run.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
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
    """Id of a `simulate_job` run over DAYS, launched through GraphQL and finished successfully."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=webserver.port)
    run_id = client.submit_job_execution(
        simulate_job.name,
        run_config=IN_PROCESS | run_config_for({"simulation": SMALL_SIMULATION}),
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

    assert {schedule["name"] for schedule in repository["schedules"]} == {
        "daily_simulation_schedule",
        "daily_detection_schedule",
        "weekly_training_schedule",
    }
    assert {sensor["name"] for sensor in repository["sensors"]} >= {
        "landing_zone_sensor",
        "refresh_after_ingest_sensor",
        "rescore_after_new_model_sensor",
        "run_failure_log_sensor",
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
            assert orders == SMALL_SIMULATION["orders_per_day"], day
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
    root_run_id = client.submit_job_execution(ingest_job.name, run_config=IN_PROCESS | never_landed)
    retries_allowed = int(UNATTENDED_RUN_RETRIES["dagster/max_retries"])
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


def test_the_asset_graph_and_an_asset_page_render_in_headless_chromium(webserver, simulated_run, e2e_dir):
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
            # The run covered two days, so its row count is the range's (`rows_in_range`, see assets/metadata.py).
            asset_text = capture(
                page, f"/assets/{USER_ACTIVITIES}", USER_ACTIVITIES, ["Latest materialization", "rows_in_range"]
            )
        finally:
            browser.close()

    assert "Every user action on the site" in asset_text
    assert "Never materialized" not in asset_text


def asset_groups() -> list[str]:
    """Every group of the code location, so a new group must show in the graph too."""
    asset_graph = defs.get_repository_def().asset_graph
    return sorted({asset_graph.get(key).group_name for key in asset_graph.get_all_asset_keys()})
