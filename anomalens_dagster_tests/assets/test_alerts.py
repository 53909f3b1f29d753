"""The alert outbox asset against real servers on loopback: a webhook, a fake Slack API and an SMTP server."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from anomalens_dagster.assets.alerts import NEXT_DUE_METADATA, alert_outbox
from anomalens_dagster.constants import DUCKDB_PATH_ENV_VAR, SETTINGS_ENV_VAR
from anomalens_dagster.core.alerts import message_id
from anomalens_dagster.core.warehouse import ensure_store_tables
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile
from anomalens_dagster_tests.alert_receivers import fake_slack_api, smtp_server, webhook_receiver
from anomalens_dagster_tests.incident_rows import incident, replace_incidents

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_TOKEN = "webhook-secret-4f1c"
SLACK_TOKEN = "xoxb-slack-secret-9d2e"
SMTP_PASSWORD = "smtp-secret-7a3b"
SECRETS = (WEBHOOK_TOKEN, SLACK_TOKEN, SMTP_PASSWORD)
ENV = {
    "TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    "TEST_SLACK_TOKEN": SLACK_TOKEN,
    "TEST_SMTP_USER": "alerts",
    "TEST_SMTP_PASSWORD": SMTP_PASSWORD,
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def write_settings(path: Path, webhook=None, slack=None, smtp=None, **alerts) -> Path:
    """A settings file whose `alerts` section names the loopback targets and only the secrets' variable names."""
    section: dict = {"retry_initial_seconds": 1, "retry_max_seconds": 4, **alerts}
    if webhook is not None:
        section["webhook"] = {"url": webhook.url + "/alerts", "token_env": "TEST_WEBHOOK_TOKEN"}
    if slack is not None:
        section["slack"] = {"channel": "#fraud", "token_env": "TEST_SLACK_TOKEN", "api_url": slack.api_url}
    if smtp is not None:
        section["email"] = {
            "host": "127.0.0.1",
            "port": smtp.port,
            "sender": "anomalens@shop.example",
            "recipients": ["fraud@shop.example"],
            "starttls": False,
            "user_env": "TEST_SMTP_USER",
            "password_env": "TEST_SMTP_PASSWORD",
        }
    path.write_text(yaml.safe_dump({"alerts": section}))
    return path


@pytest.fixture
def secrets_in_env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def run_outbox(duckdb_resource: AnomaLensDuckDB, settings: Path, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [alert_outbox],
        resources={"duckdb": duckdb_resource, "settings": SettingsFile(path=str(settings))},
        instance=instance,
    )


def set_incidents(duckdb_resource: AnomaLensDuckDB, rows: list[dict]) -> None:
    with duckdb_resource.get_connection() as conn:
        replace_incidents(conn, rows)


def outbox_rows(duckdb_resource: AnomaLensDuckDB) -> list[dict]:
    with duckdb_resource.read_connection() as conn:
        cursor = conn.execute("SELECT * FROM ops.alerts ORDER BY idempotency_key")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_every_target_gets_each_new_high_incident_once_and_no_secret_is_stored_logged_or_reported(
    duckdb_resource, tmp_path, secrets_in_env, caplog
):
    recent = _now() - dt.timedelta(hours=1)
    set_incidents(
        duckdb_resource,
        [
            incident("high-1", recent),
            incident("medium-1", recent, severity="Medium"),
            incident("suppressed-1", recent, suppressed=True),
        ],
    )
    instance = dg.DagsterInstance.ephemeral()
    with (
        webhook_receiver() as webhook,
        fake_slack_api(SLACK_TOKEN) as slack,
        smtp_server("alerts", SMTP_PASSWORD) as smtp,
    ):
        settings = write_settings(tmp_path / "settings.yaml", webhook, slack, smtp)
        first = run_outbox(duckdb_resource, settings, instance)
        second = run_outbox(duckdb_resource, settings, instance)

    assert first.success and second.success
    assert webhook.keys() == ["high-1:webhook"]
    assert webhook.received[0].headers["authorization"] == f"Bearer {WEBHOOK_TOKEN}"
    assert webhook.received[0].body["summary"] == "14 failed logins for jo***@example.com from 1 IP within 40 s"
    assert [message["metadata"]["event_payload"]["idempotency_key"] for message in slack.messages()] == ["high-1:slack"]
    assert [message["Message-ID"] for message in smtp.messages] == [message_id("high-1:email")]
    rows = outbox_rows(duckdb_resource)
    assert [(row["idempotency_key"], row["attempts"]) for row in rows] == [
        ("high-1:email", 1),
        ("high-1:slack", 1),
        ("high-1:webhook", 1),
    ]
    assert all(row["delivered_at"] is not None for row in rows)

    materialization = second.asset_materializations_for_node("alert_outbox")[0]
    assert materialization.metadata["alerts_added"].value == 0
    assert materialization.metadata["alerts_delivered_total"].value == 3
    stored = json.dumps(rows, default=str)
    reported = str(first.asset_materializations_for_node("alert_outbox")[0].metadata)
    logged = " ".join(str(entry.user_message) for entry in instance.all_logs(first.run_id)) + caplog.text
    for secret in SECRETS:
        assert secret not in stored and secret not in reported and secret not in logged
        assert secret not in settings.read_text()


def test_a_webhook_failing_twice_then_recovering_is_delivered_once_after_waiting_out_each_backoff(
    duckdb_resource, tmp_path, secrets_in_env
):
    set_incidents(duckdb_resource, [incident("high-1", _now() - dt.timedelta(hours=1))])
    with webhook_receiver(failures=[503, 502]) as webhook:
        # Waits long enough that the immediate re-runs below come before them, even on a busy machine.
        settings = write_settings(
            tmp_path / "settings.yaml", webhook=webhook, retry_initial_seconds=4, retry_max_seconds=8
        )
        run_outbox(duckdb_resource, settings)  # attempt 1: 503, next in 4 s
        run_outbox(duckdb_resource, settings)  # not due yet: nothing sent
        assert len(webhook.received) == 1
        (row,) = outbox_rows(duckdb_resource)
        assert row["attempts"] == 1 and "HTTP 503" in row["last_error"] and row["next_attempt_at"] > row["created_at"]
        _sleep_until(row["next_attempt_at"])
        run_outbox(duckdb_resource, settings)  # attempt 2: 502, next in 8 s
        (row,) = outbox_rows(duckdb_resource)
        assert row["attempts"] == 2 and "HTTP 502" in row["last_error"]
        run_outbox(duckdb_resource, settings)  # not due yet: nothing sent
        assert len(webhook.received) == 2
        _sleep_until(row["next_attempt_at"])
        recovered = run_outbox(duckdb_resource, settings)  # attempt 3: delivered
        run_outbox(duckdb_resource, settings)  # delivered: never again
    assert webhook.keys() == ["high-1:webhook"] * 3
    (row,) = outbox_rows(duckdb_resource)
    assert row["attempts"] == 3 and row["delivered_at"] is not None
    assert recovered.asset_materializations_for_node("alert_outbox")[0].metadata["alerts_delivered_now"].value == 1


def _sleep_until(moment: dt.datetime) -> None:
    time.sleep(max(0.0, (moment - _now()).total_seconds()) + 0.2)


def test_an_incident_suppressed_later_is_not_sent_and_one_already_notified_is_never_sent_again(
    duckdb_resource, tmp_path, secrets_in_env
):
    recent = _now() - dt.timedelta(hours=1)
    set_incidents(duckdb_resource, [incident("high-1", recent), incident("high-2", recent)])
    with webhook_receiver(failures=[503, 503]) as webhook:
        settings = write_settings(tmp_path / "settings.yaml", webhook=webhook)
        run_outbox(duckdb_resource, settings)  # both fail once
        # The analyst allows high-2's IP: it is suppressed before its retry; high-1 grows (re-scored, same id).
        set_incidents(duckdb_resource, [incident("high-1", _now()), incident("high-2", recent, suppressed=True)])
        _sleep_until(max(row["next_attempt_at"] for row in outbox_rows(duckdb_resource)))
        run_outbox(duckdb_resource, settings)
        run_outbox(duckdb_resource, settings)
    assert webhook.keys() == ["high-1:webhook", "high-2:webhook", "high-1:webhook"]
    delivered = {row["incident_id"]: row["delivered_at"] is not None for row in outbox_rows(duckdb_resource)}
    assert delivered == {"high-1": True, "high-2": False}


def test_a_store_whose_data_stopped_arriving_raises_one_alert_per_quiet_period(
    duckdb_resource, tmp_path, secrets_in_env
):
    with duckdb_resource.get_connection() as conn:
        ensure_store_tables(conn)
        conn.execute(
            "INSERT INTO store.orders VALUES (1, 7, $at, 10.0, 'pending', 'simulator')",
            {"at": _now() - dt.timedelta(hours=30)},
        )
    with webhook_receiver() as webhook:
        settings = write_settings(tmp_path / "settings.yaml", webhook=webhook, stale_after_hours=26)
        run_outbox(duckdb_resource, settings)
        run_outbox(duckdb_resource, settings)
        assert [request.body["kind"] for request in webhook.received] == ["stale_store"]
        with duckdb_resource.get_connection() as conn:  # data arrives again, then stops for 27 h
            conn.execute(
                "INSERT INTO store.orders VALUES (2, 7, $at, 10.0, 'pending', 'simulator')",
                {"at": _now() - dt.timedelta(hours=27)},
            )
        run_outbox(duckdb_resource, settings)
        fresh_settings = write_settings(tmp_path / "fresh.yaml", webhook=webhook, stale_after_hours=48)
        fresh = run_outbox(duckdb_resource, fresh_settings)
    assert len(webhook.received) == 2
    assert len(set(webhook.keys())) == 2
    assert "No landed or simulated rows have arrived for 27.0 h" in webhook.received[1].body["summary"]
    # While fresh, the run reports when the store would turn stale: the sensor comes back then.
    due = fresh.asset_materializations_for_node("alert_outbox")[0].metadata[NEXT_DUE_METADATA].value
    assert due == pytest.approx((_now() + dt.timedelta(hours=21)).replace(tzinfo=dt.UTC).timestamp(), abs=120)


def test_a_target_whose_token_variable_is_unset_fails_naming_the_variable_and_delivers_once_it_is_set(
    duckdb_resource, tmp_path, monkeypatch
):
    set_incidents(duckdb_resource, [incident("high-1", _now() - dt.timedelta(hours=1))])
    with fake_slack_api(SLACK_TOKEN) as slack:
        settings = write_settings(tmp_path / "settings.yaml", slack=slack)
        monkeypatch.delenv("TEST_SLACK_TOKEN", raising=False)
        assert run_outbox(duckdb_resource, settings).success
        (row,) = outbox_rows(duckdb_resource)
        assert "TEST_SLACK_TOKEN" in row["last_error"] and row["delivered_at"] is None
        monkeypatch.setenv("TEST_SLACK_TOKEN", SLACK_TOKEN)
        _sleep_until(row["next_attempt_at"])
        run_outbox(duckdb_resource, settings)
    assert len(slack.messages()) == 1
    assert outbox_rows(duckdb_resource)[0]["delivered_at"] is not None


def _materialize_in_a_new_process(env: dict[str, str]) -> subprocess.Popen:
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [dagster, "asset", "materialize", "-m", "anomalens_dagster.definitions", "--select", "alert_outbox"]
    return subprocess.Popen(
        command, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@pytest.mark.slow
def test_an_outbox_run_killed_while_sending_resends_once_with_the_same_key_and_never_again(
    duckdb_resource, db_path, tmp_path, secrets_in_env
):
    set_incidents(duckdb_resource, [incident("high-1", _now() - dt.timedelta(hours=1))])
    home = tmp_path / "dagster_home"
    home.mkdir()
    with webhook_receiver() as webhook:
        settings = write_settings(tmp_path / "settings.yaml", webhook=webhook)
        env = {
            **os.environ,
            DUCKDB_PATH_ENV_VAR: str(db_path),
            SETTINGS_ENV_VAR: str(settings),
            "DAGSTER_HOME": str(home),
        }
        webhook.answering.clear()  # the first request is received and never answered
        killed = _materialize_in_a_new_process(env)
        assert webhook.arrived.wait(timeout=180), killed.stderr.read().decode() if killed.poll() is not None else ""
        os.killpg(killed.pid, signal.SIGKILL)  # the run dies between sending and recording the delivery
        killed.wait(timeout=30)
        webhook.answering.set()
        (row,) = outbox_rows(duckdb_resource)
        assert row["attempts"] == 1 and row["delivered_at"] is None
        _sleep_until(row["next_attempt_at"])
        for _ in range(2):  # the restarted pipeline: two more runs, each in its own process
            finished = _materialize_in_a_new_process(env)
            _, stderr = finished.communicate(timeout=300)
            assert finished.returncode == 0, stderr.decode()[-3000:]
    # At-least-once: the alert was sent again after the crash, under the same key, and then never again.
    assert webhook.keys() == ["high-1:webhook", "high-1:webhook"]
    (row,) = outbox_rows(duckdb_resource)
    assert row["attempts"] == 2 and row["delivered_at"] is not None


def test_a_webhook_whose_url_is_the_secret_is_read_from_its_variable_and_redacted_from_errors(
    duckdb_resource, tmp_path, monkeypatch
):
    set_incidents(duckdb_resource, [incident("high-1", _now() - dt.timedelta(hours=1))])
    with webhook_receiver(failures=[503]) as webhook:
        secret_url = webhook.url + "/hooks/T000/B000/secret-path"
        monkeypatch.setenv("TEST_WEBHOOK_URL", secret_url)
        settings = tmp_path / "settings.yaml"
        settings.write_text(yaml.safe_dump({"alerts": {"webhook": {"url_env": "TEST_WEBHOOK_URL"}}}))
        run_outbox(duckdb_resource, settings)
    assert [request.path for request in webhook.received] == ["/hooks/T000/B000/secret-path"]
    (row,) = outbox_rows(duckdb_resource)
    assert "HTTP 503" in row["last_error"] and "secret-path" not in row["last_error"]


def test_with_no_target_configured_the_outbox_is_created_empty_and_nothing_is_sent(duckdb_resource, tmp_path):
    set_incidents(duckdb_resource, [incident("high-1", _now() - dt.timedelta(hours=1))])
    settings = tmp_path / "settings.yaml"
    settings.write_text("alerts: {stale_after_hours: 1}\n")
    result = run_outbox(duckdb_resource, settings)
    assert result.success
    assert outbox_rows(duckdb_resource) == []
    metadata = result.asset_materializations_for_node("alert_outbox")[0].metadata
    assert metadata["targets"].value == "none" and metadata["alerts_added"].value == 0
