"""What starts the alert outbox: incidents being written (declarative automation) and due retries (a sensor
that reads the outbox's last materialisation from Dagster's event log, never DuckDB)."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from anomalens_dagster.assets.alerts import NEXT_DUE_METADATA, NO_TARGETS, TARGETS_METADATA, alert_outbox
from anomalens_dagster.constants import INCIDENTS
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.sensors import alert_delivery_sensor
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS


@dg.asset(name="anomalies")
def anomalies_stand_in() -> None:
    """Stands in for the anomaly records the incidents are built from."""


@dg.asset(name=INCIDENTS, deps=[anomalies_stand_in], automation_condition=dg.AutomationCondition.any_deps_updated())
def incidents_stand_in() -> None:
    """Stands in for the incidents asset: written when anomaly records are."""


# Evaluating conditions opens no resource: these only satisfy the definitions.
RESOURCES = {"duckdb": AnomaLensDuckDB(database=":memory:"), "settings": DEFAULT_SETTINGS}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _evaluate(instance, cursor=None):
    defs = dg.Definitions(assets=[anomalies_stand_in, incidents_stand_in, alert_outbox], resources=RESOURCES)
    return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)


def test_incidents_requested_in_a_tick_are_sent_in_that_tick_and_only_once(instance):
    # Both unpartitioned and requested by one tick: the automation sensor launches them as one run.
    first = _evaluate(instance)  # the sensor's first tick: nothing happened yet
    assert first.total_requested == 0
    instance.report_runless_asset_event(dg.AssetMaterialization("anomalies"))
    second = _evaluate(instance, first.cursor)
    assert second.get_num_requested(dg.AssetKey(INCIDENTS)) == 1
    assert second.get_num_requested(alert_outbox.key) == 1
    third = _evaluate(instance, second.cursor)
    assert third.get_num_requested(alert_outbox.key) == 0


def test_incidents_written_by_another_run_are_sent_on_the_next_tick(instance):
    first = _evaluate(instance)
    instance.report_runless_asset_event(dg.AssetMaterialization(INCIDENTS))
    second = _evaluate(instance, first.cursor)
    assert second.get_num_requested(alert_outbox.key) == 1
    assert second.get_num_requested(dg.AssetKey(INCIDENTS)) == 0


def _outbox_reported(instance, due: float | None, targets: str = "webhook") -> None:
    metadata = {NEXT_DUE_METADATA: dg.MetadataValue.timestamp(due)} if due is not None else {}
    metadata[TARGETS_METADATA] = targets
    instance.report_runless_asset_event(dg.AssetMaterialization(alert_outbox.key, metadata=metadata))


def test_the_delivery_sensor_skips_while_the_outbox_was_never_written(instance):
    result = alert_delivery_sensor(dg.build_sensor_context(instance=instance))
    assert not result.run_requests and "never materialised" in result.skip_reason.skip_message


def test_the_delivery_sensor_waits_for_the_reported_due_time(instance):
    _outbox_reported(instance, time.time() + 600)
    result = alert_delivery_sensor(dg.build_sensor_context(instance=instance))
    assert not result.run_requests and "nothing due before" in result.skip_reason.skip_message


def test_the_delivery_sensor_requests_one_run_per_due_time_once_it_has_passed(instance):
    _outbox_reported(instance, time.time() - 1)
    first = alert_delivery_sensor(dg.build_sensor_context(instance=instance))
    again = alert_delivery_sensor(dg.build_sensor_context(instance=instance))
    (request,) = first.run_requests
    assert again.run_requests[0].run_key == request.run_key  # Dagster launches a run key once
    _outbox_reported(instance, time.time() - 1)
    assert alert_delivery_sensor(dg.build_sensor_context(instance=instance)).run_requests[0].run_key != request.run_key


def test_with_nothing_due_the_delivery_sensor_waits_for_the_hourly_heartbeat(instance):
    _outbox_reported(instance, None)
    result = alert_delivery_sensor(dg.build_sensor_context(instance=instance))
    assert not result.run_requests


def test_the_delivery_sensor_rests_while_the_settings_name_no_alert_target(instance):
    _outbox_reported(instance, time.time() - 7200, targets=NO_TARGETS)
    result = alert_delivery_sensor(dg.build_sensor_context(instance=instance))
    assert not result.run_requests and "no alert target" in result.skip_reason.skip_message
