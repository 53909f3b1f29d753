"""Benchmark: a High incident in a freshly landed file -> the alert received by a webhook, daemon running.

Usage: .venv/bin/python -m benchmarks.alerts [--repeats 3] [--workdir DIR]

Builds the 7-day demo store in a temporary DuckDB file and Dagster instance (`anomalens run`'s
pipeline, in this process) with a settings file whose `alerts.webhook` points to a JSON webhook
receiver on loopback (a thread of this process); the alerts of the demo's own incidents are sent
during that build. Then starts `dagster-daemon` (the landing sensor, declarative automation and the
alert delivery sensor) and drops a delivery of landing files for a day `--repeats` times: each time,
it measures how long until the delivery is ingested, its day's anomaly records are written, and the
webhook receives the first alert about an incident made of the delivery's rows (its sessions start
with `landing-`, its order ids lie above the sample's id offset). The issue asks for under 90 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import time
from functools import partial
from pathlib import Path

import yaml

from benchmarks.common import benchmark_folder, print_table
from benchmarks.unattended import _materialized_after, wait_until_idle

TARGET_SECONDS = 90
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="Keep the DuckDB file and instance here (default: temp).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with benchmark_folder(args.workdir) as folder:
        run(folder, args.repeats)


def run(workdir: Path, repeats: int) -> None:
    from anomalens_dagster.constants import DUCKDB_PATH_ENV_VAR, LANDING_DIR_ENV_VAR, SETTINGS_ENV_VAR
    from anomalens_dagster.instance import DAGSTER_HOME_ENV_VAR, ensure_dagster_home
    from anomalens_dagster_tests.alert_receivers import webhook_receiver

    os.environ[DUCKDB_PATH_ENV_VAR] = str(workdir / "anomalens.duckdb")
    os.environ[LANDING_DIR_ENV_VAR] = str(workdir / "landing")
    (workdir / "landing").mkdir(exist_ok=True)
    home = ensure_dagster_home(workdir / "dagster_home")
    os.environ[DAGSTER_HOME_ENV_VAR] = str(home)
    today = dt.datetime.now(dt.UTC).date()

    with webhook_receiver() as webhook:
        settings = workdir / "settings.yaml"
        # A landed day up to repeats - 1 days old must still count as new.
        alerts = {"webhook": {"url": webhook.url + "/alerts"}, "notify_since_days": repeats + 1}
        settings.write_text(yaml.safe_dump({"alerts": alerts}))
        os.environ[SETTINGS_ENV_VAR] = str(settings)
        build_demo_store(today)
        print(
            f"{len(webhook.received)} alerts about the demo's own incidents were sent while it was built.", flush=True
        )
        rows = through_the_daemon(home, workdir, today, repeats, webhook)

    print(f"\nA delivery landed -> the webhook receives its High incident, daemon running, {repeats} drops:\n")
    print_table(
        ["day landed", "seconds to ingested", "seconds to anomalies written", "seconds to webhook receipt"], rows
    )
    receipts = [row[3] for row in rows]
    print(
        f"\nlanding -> webhook: median {statistics.median(receipts):.1f} s, worst {max(receipts):.1f} s "
        f"(target: under {TARGET_SECONDS} s: {'met' if max(receipts) < TARGET_SECONDS else 'NOT met'})"
    )


def build_demo_store(today: dt.date) -> None:
    import dagster as dg

    from anomalens_dagster.cli import RANGE_END_TAG, RANGE_START_TAG
    from anomalens_dagster.definitions import defs
    from anomalens_dagster.jobs import full_pipeline_job

    print("Building the 7-day demo store (the full pipeline, in process)...", flush=True)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with dg.DagsterInstance.get() as instance:
        built = defs.resolve_job_def(full_pipeline_job.name).execute_in_process(
            run_config=quiet,
            instance=instance,
            tags={
                RANGE_START_TAG: (today - dt.timedelta(days=7)).isoformat(),
                RANGE_END_TAG: str(today - dt.timedelta(days=1)),
            },
        )
        assert built.success


def through_the_daemon(home: Path, workdir: Path, today: dt.date, repeats: int, webhook) -> list[tuple]:
    """(day, seconds to ingested, to anomalies written, to webhook receipt) of each landed delivery."""
    import dagster as dg

    from anomalens_dagster.core.landing import write_landing_sample
    from anomalens_dagster_tests.e2e_support import dagster_service, poll

    env = dict(os.environ)
    rows = []
    with (
        dagster_service("dagster-daemon", ["run", "-w", "workspace.yaml"], env, workdir),
        dg.DagsterInstance.from_config(str(home)) as instance,
    ):
        poll("the daemon's heartbeat", lambda: instance.get_daemon_heartbeats() or None, 120)
        for offset in range(repeats):
            landed_day = today - dt.timedelta(days=offset)
            wait_until_idle(instance, poll)
            staging = workdir / f"staging-{offset}"
            paths = write_landing_sample(staging, [landed_day])
            already = len(webhook.received)
            start = time.time()
            for path in paths:
                path.rename(workdir / "landing" / path.name)
            ingested = poll(
                "the ingest", partial(_materialized_after, instance, "ingested_files", None, start), 300, 0.2
            )
            written = poll(
                f"anomalies of {landed_day}",
                partial(_materialized_after, instance, "anomalies", landed_day.isoformat(), start),
                300,
                interval=0.2,
            )
            received = poll(
                f"the webhook's alert about the delivery of {landed_day}",
                partial(_landed_incident_received, webhook, already),
                300,
                interval=0.2,
            )
            rows.append((landed_day.isoformat(), ingested - start, written - start, received - start))
    return rows


def _landed_incident_received(webhook, already: int) -> float | None:
    """When the webhook received its first alert (after the first `already`) about an incident of landed rows."""
    from anomalens_dagster.core.landing.sample import LANDING_SAMPLE_ID_OFFSET

    for request, received_at in zip(webhook.received[already:], webhook.received_at[already:], strict=True):
        body = request.body
        landed_sessions = any(str(session).startswith("landing-") for session in body.get("session_ids") or [])
        landed_orders = any(order >= LANDING_SAMPLE_ID_OFFSET for order in body.get("order_ids") or [])
        if body.get("kind") == "incident" and (landed_sessions or landed_orders):
            return received_at
    return None


if __name__ == "__main__":
    main()
