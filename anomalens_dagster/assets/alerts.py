"""The alert outbox asset: new High incidents (and a store gone quiet) told to the settings' targets, once.

Runs after the incidents are written (declarative automation, in the same run when both are due),
and again whenever a failed delivery is due (`alert_delivery_sensor` reads the due time from this
asset's last materialisation, never from DuckDB). Secrets are read from the environment variables
the settings name, when a run sends, and are never written to the outbox, the logs or the metadata.
"""

import datetime as dt
from typing import Any

import dagster as dg
from dagster_slack import SlackResource
from pydantic import Field
from slack_sdk import WebClient

from anomalens_dagster.assets.metadata import table_metadata
from anomalens_dagster.automation import alert_outbox_refresh
from anomalens_dagster.configs import ALERTS_SECTION, AlertsConfig
from anomalens_dagster.constants import (
    ALERT_OUTBOX,
    ALERTS,
    DEFAULT_SLACK_API_URL,
    DETECTIONS_GROUP,
    DUCKDB_POOL,
    INCIDENTS,
    OPS_SCHEMA,
)
from anomalens_dagster.core.alert_delivery import EmailSender, SlackSender, UnusableSender, WebhookSender
from anomalens_dagster.core.alert_outbox import (
    ALERT_COLUMNS,
    OUTBOX,
    Sender,
    alerts_for,
    claim_due,
    enqueue,
    ensure_alerts_table,
    incidents_to_notify,
    last_arrival,
    next_due,
    outbox_counts,
    outbox_keys,
    record_outcomes,
    send_claimed,
)
from anomalens_dagster.core.alerts import RetryPolicy, severities_at_least, stale_since, stale_store_payload
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile

# Metadata key of the moment the next run is due (a failed delivery's retry, or the store turning
# stale if nothing arrives): the delivery sensor reads it from the event log.
NEXT_DUE_METADATA = "next_due_at"
# Metadata key of the targets the run sent to, NO_TARGETS when the settings name none (the sensor then rests).
TARGETS_METADATA = "targets"
NO_TARGETS = "none"


class SlackAlerts(SlackResource):
    """dagster-slack's Slack resource with Slack's API base URL and a timeout settable (a proxy, a test's fake)."""

    api_url: str = Field(default=DEFAULT_SLACK_API_URL, description="Base URL of Slack's Web API.")
    timeout_seconds: int = Field(default=10, ge=1, description="Timeout of one API call.")

    def get_client(self) -> WebClient:
        return WebClient(self.token, base_url=self.api_url, timeout=self.timeout_seconds)


def build_senders(alerts: AlertsConfig) -> tuple[dict[str, Sender], list[str]]:
    """A sender per configured target, and the secret values read for them (to redact from errors).

    A target whose environment variable is not set still gets a sender: each of its attempts fails
    naming the variable, and is retried, so setting the variable later delivers what waited.
    """
    senders: dict[str, Sender] = {}
    secrets: list[str] = []

    def secret(env: str | None) -> str | None:
        value = dg.EnvVar(env).get_value() if env else None
        if value:
            secrets.append(value)
        return value

    timeout = alerts.send_timeout_seconds
    if alerts.webhook is not None:
        target = alerts.webhook
        token = secret(target.token_env)
        url = secret(target.url_env) if target.url_env else target.url
        missing = [env for env, value in ((target.token_env, token), (target.url_env, url)) if env and not value]
        if missing:
            senders["webhook"] = UnusableSender(f"environment variable(s) {', '.join(missing)} (webhook) not set")
        else:
            value = f"{target.auth_scheme} {token}".strip() if token else None
            headers = {target.auth_header: value} if value else {}
            senders["webhook"] = WebhookSender(url=url, timeout_seconds=timeout, headers=headers)
    if alerts.slack is not None:
        target = alerts.slack
        token = secret(target.token_env)
        if not token:
            senders["slack"] = UnusableSender(f"environment variable {target.token_env} (Slack token) is not set")
        else:
            client = SlackAlerts(token=token, api_url=target.api_url, timeout_seconds=max(1, round(timeout)))
            senders["slack"] = SlackSender(client=client.get_client(), channel=target.channel)
    if alerts.email is not None:
        target = alerts.email
        user, password = secret(target.user_env), secret(target.password_env)
        missing = [
            env for env, value in ((target.user_env, user), (target.password_env, password)) if env and not value
        ]
        if missing:
            senders["email"] = UnusableSender(f"environment variable(s) {', '.join(missing)} (SMTP login) not set")
        else:
            senders["email"] = EmailSender(
                host=target.host,
                port=target.port,
                sender=target.sender,
                recipients=tuple(target.recipients),
                starttls=target.starttls,
                timeout_seconds=timeout,
                user=user,
                password=password,
            )
    return senders, secrets


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dg.asset(
    name=ALERT_OUTBOX,
    group_name=DETECTIONS_GROUP,
    description=(
        "Alerts about new High incidents and about a store whose data stopped arriving (table ops.alerts): one row "
        "per incident and target, sent at least once with an idempotency key, retried with backoff until delivered."
    ),
    deps=[INCIDENTS],
    kinds={"duckdb", "slack", "email"},
    pool=DUCKDB_POOL,
    automation_condition=alert_outbox_refresh,
    # Once the incidents are written, the alerts go before the reports that the same run refreshes.
    op_tags={"dagster/priority": "10"},
)
def alert_outbox(
    context: dg.AssetExecutionContext, config: AlertsConfig, duckdb: AnomaLensDuckDB, settings: SettingsFile
) -> dg.MaterializeResult:
    alerts = settings.resolve(config, ALERTS_SECTION)
    senders, secrets = build_senders(alerts)
    if not senders:
        context.log.info(f"no alert target in the settings' '{ALERTS_SECTION}' section: nothing is sent")
    policy = RetryPolicy(alerts.retry_initial_seconds, alerts.retry_max_seconds)
    stale_after = dt.timedelta(hours=alerts.stale_after_hours)
    now = _now()
    with duckdb.get_connection() as conn:
        ensure_alerts_table(conn)
        payloads = incidents_to_notify(
            conn, severities_at_least(alerts.min_severity), now - dt.timedelta(days=alerts.notify_since_days)
        )
        arrival = last_arrival(conn)
        if stale_since(arrival, now, stale_after) is not None:
            # A warning only where someone is told; replaying old days (`anomalens run`) is stale by design.
            (context.log.warning if senders else context.log.info)(
                f"no landed or simulated rows have arrived since {arrival} (UTC)"
            )
            payloads.append(stale_store_payload(arrival, now, stale_after))
        added = enqueue(conn, alerts_for(payloads, senders, outbox_keys(conn)), now)
        claimed = claim_due(conn, now, policy, senders)
    outcomes = send_claimed(claimed, senders, secrets)
    with duckdb.get_connection() as conn:
        record_outcomes(conn, outcomes, _now())
        counts = outbox_counts(conn)
        due = next_due(conn, senders)
        recent = conn.execute(
            f"""SELECT incident_id, target, attempts, created_at, next_attempt_at, delivered_at, last_error
                FROM {OUTBOX} ORDER BY created_at DESC, idempotency_key LIMIT 5"""
        ).df()
        metadata = table_metadata(conn, OPS_SCHEMA, ALERTS, recent, row_count=counts["delivered"] + counts["waiting"])
    delivered = sum(outcome.error is None for outcome in outcomes)
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    context.log.info(f"{added} alerts added; {delivered} delivered, {len(failed)} failed of {len(claimed)} due")
    for outcome in failed:
        context.log.warning(f"alert {outcome.key} not delivered: {outcome.error}")
    metadata.update(_outbox_metadata(added, delivered, len(failed), counts, sorted(senders)))
    metadata["dagster/column_schema"] = dg.TableSchema(
        columns=[
            dg.TableColumn(name=column.name, type=column.type, description=ALERT_COLUMNS.get(column.name))
            for column in metadata["dagster/column_schema"].columns
        ]
    )
    next_check = _next_due(due, arrival, stale_after, now) if senders else None
    if next_check is not None:
        metadata[NEXT_DUE_METADATA] = dg.MetadataValue.timestamp(next_check.replace(tzinfo=dt.UTC))
    return dg.MaterializeResult(metadata=metadata)


def _outbox_metadata(
    added: int, delivered: int, failed: int, counts: dict[str, int], targets: list[str]
) -> dict[str, Any]:
    return {
        "alerts_added": added,
        "alerts_delivered_now": delivered,
        "alerts_failed_now": failed,
        "alerts_delivered_total": counts["delivered"],
        "alerts_waiting": counts["waiting"],
        TARGETS_METADATA: ", ".join(targets) or NO_TARGETS,
    }


def _next_due(
    due: dt.datetime | None, arrival: dt.datetime | None, stale_after: dt.timedelta, now: dt.datetime
) -> dt.datetime | None:
    """The earliest of the next retry and the moment the store turns stale if nothing arrives meanwhile."""
    turns_stale = arrival + stale_after if arrival is not None and arrival + stale_after > now else None
    candidates = [moment for moment in (due, turns_stale) if moment is not None]
    return min(candidates) if candidates else None
