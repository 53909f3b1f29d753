"""The alert outbox under the real daemon: due retries launched by `alert_delivery_sensor`, and a daemon
restart that delivers what still waited without sending anything twice."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import pytest
import yaml

from anomalens_dagster.assets.alerts import alert_outbox
from anomalens_dagster.constants import DUCKDB_PATH_ENV_VAR, LANDING_DIR_ENV_VAR, SETTINGS_ENV_VAR
from anomalens_dagster.instance import DAGSTER_HOME_ENV_VAR, ensure_dagster_home
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile
from anomalens_dagster_tests.alert_receivers import webhook_receiver
from anomalens_dagster_tests.e2e_support import dagster_service, poll
from anomalens_dagster_tests.incident_rows import incident, replace_incidents

# Not `e2e` (no webserver): its deadlines are minutes, so it runs in `make test`'s two-worker pass.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _delivered(duckdb_resource: AnomaLensDuckDB, key: str) -> bool | None:
    with duckdb_resource.read_connection() as conn:
        row = conn.execute("SELECT delivered_at FROM ops.alerts WHERE idempotency_key = $key", {"key": key}).fetchone()
    return True if row and row[0] is not None else None


def test_the_daemon_retries_due_alerts_and_after_a_restart_delivers_what_waited_and_nothing_twice(tmp_path):
    db = AnomaLensDuckDB(database=str(tmp_path / "anomalens.duckdb"))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with db.get_connection() as conn:
        replace_incidents(conn, [incident("first", now), incident("second", now)])
    (tmp_path / "landing").mkdir()
    with pytest.MonkeyPatch.context() as patch:  # ensure_dagster_home exports DAGSTER_HOME: undo that here
        home = ensure_dagster_home(tmp_path / "dagster_home")
        patch.undo()
    with webhook_receiver() as webhook:
        settings = tmp_path / "settings.yaml"
        alerts = {"webhook": {"url": webhook.url}, "retry_initial_seconds": 2, "retry_max_seconds": 4}
        settings.write_text(yaml.safe_dump({"alerts": alerts}))
        env = {
            **os.environ,
            DAGSTER_HOME_ENV_VAR: str(home),
            DUCKDB_PATH_ENV_VAR: db.database,
            SETTINGS_ENV_VAR: str(settings),
            LANDING_DIR_ENV_VAR: str(tmp_path / "landing"),
        }
        webhook.refused_keys = {"first:webhook", "second:webhook"}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # The incidents' run: both alerts fail; the materialisation reports when they are due again.
            result = dg.materialize(
                [alert_outbox],
                instance=instance,
                resources={"duckdb": db, "settings": SettingsFile(path=str(settings))},
            )
            assert result.success and webhook.accepted() == []
            webhook.refused_keys = {"second:webhook"}  # the target is back for the first alert only
            with dagster_service("dagster-daemon", ["run", "-w", "workspace.yaml"], env, tmp_path) as daemon:
                poll("the first alert's delivery by a daemon run", lambda: _delivered(db, "first:webhook"), 300)
                assert daemon.process.poll() is None
            retried_before_restart = webhook.keys().count("second:webhook")
            webhook.refused_keys = set()  # the target is back for every alert while the daemon is down
            (tmp_path / "restarted").mkdir()
            with dagster_service("dagster-daemon", ["run", "-w", "workspace.yaml"], env, tmp_path / "restarted"):
                poll("the second alert's delivery after the restart", lambda: _delivered(db, "second:webhook"), 300)
                # Two more sensor intervals: nothing delivered is sent again.
                poll("two quiet sensor ticks", lambda: True if _quiet_for(instance, 35) else None, 120, interval=5)
            runs = instance.get_runs(dg.RunsFilter(job_name="deliver_alerts_job"))
    assert retried_before_restart >= 1  # retried under backoff while down, then delivered after the restart
    assert webhook.accepted() == ["first:webhook", "second:webhook"]
    # Stopping the daemon may kill a run it launched mid-way (same process group); whatever was claimed then
    # is retried by the restarted one, and its last run succeeds.
    assert runs[0].status == dg.DagsterRunStatus.SUCCESS


def _quiet_for(instance: dg.DagsterInstance, seconds: float) -> bool:
    """Whether no run started in the last `seconds` and none is in progress."""
    runs = instance.get_runs(limit=5)
    active = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}
    if any(run.status in active for run in runs):
        return False
    records = instance.get_run_records(limit=1)
    started = records[0].create_timestamp.timestamp() if records else 0
    return dt.datetime.now(dt.UTC).timestamp() - started >= seconds
