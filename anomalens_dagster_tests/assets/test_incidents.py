"""The incidents asset after real scoring: the table, the records' incident ids, metadata, allow rules."""

import dagster as dg
import duckdb
import pytest

from anomalens_dagster.assets.detections import activity_scores, anomalies, order_scores
from anomalens_dagster.assets.incidents import check_incidents_cover_every_flagged_row, incident_checks, incidents
from anomalens_dagster.core.incidents import INCIDENT_SQL_TYPES, episode_incident_agreement
from anomalens_dagster_tests.assets.conftest import DAYS, RANGE_TAGS
from anomalens_dagster_tests.conftest import DEFAULT_SETTINGS


def materialize_incidents(resource, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [incidents, *incident_checks],
        resources={"duckdb": resource, "settings": DEFAULT_SETTINGS},
        run_config={"ops": {"incidents": {"config": config}}} if config else None,
    )


@pytest.fixture
def scored_records(trained_store):
    """The trained store with both days scored and their anomaly records written."""
    dg.materialize(
        [activity_scores, order_scores, anomalies],
        resources={"duckdb": trained_store, "settings": DEFAULT_SETTINGS},
        tags=RANGE_TAGS,
    )
    return trained_store


def query(db_path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.slow
def test_incidents_group_every_ensemble_flagged_entity_and_stamp_their_records(scored_records, db_path):
    result = materialize_incidents(scored_records)

    assert result.success
    columns = query(
        db_path,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'detections' AND table_name = 'incidents' ORDER BY ordinal_position",
    )
    assert [(name, kind) for name, kind, _ in columns] == [
        (name, sql_type.removesuffix(" NOT NULL")) for name, sql_type in INCIDENT_SQL_TYPES.items()
    ]
    ((flagged, grouped, rows_in_incidents, incident_count, without),) = query(
        db_path,
        """SELECT (SELECT count(*) FROM detections.anomalies WHERE detector_name = 'ensemble'),
                  (SELECT count(*) FROM detections.anomalies WHERE detector_name = 'ensemble' AND incident_id IS NOT NULL),
                  (SELECT sum(row_count) FROM detections.incidents),
                  (SELECT count(*) FROM detections.incidents),
                  (SELECT count(*) FROM detections.anomalies a WHERE incident_id IS NOT NULL
                     AND incident_id NOT IN (SELECT incident_id FROM detections.incidents))""",
    )
    assert flagged > 0 and grouped == flagged == rows_in_incidents
    assert 0 < incident_count < flagged  # the injected episodes have many rows each
    assert without == 0
    # Every record of an entity carries the same incident id, whichever detector wrote it.
    assert query(
        db_path,
        "SELECT count(*) FROM (SELECT entity_type, entity_id FROM detections.anomalies "
        "GROUP BY ALL HAVING count(DISTINCT coalesce(incident_id, '-')) > 1)",
    ) == [(0,)]
    assert query(
        db_path,
        "SELECT count(*) FROM detections.incidents WHERE summary = '' OR summary LIKE '%@%' AND summary NOT LIKE '%***@%'",
    ) == [(0,)]
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["dagster/row_count"].value == incident_count
    assert sum(metadata[f"incidents/{level}"].value for level in ("Low", "Medium", "High")) == incident_count
    assert "| incident_id" in metadata["top_incidents"].value
    assert all(check.passed for check in result.get_asset_check_evaluations())


@pytest.mark.slow
def test_rescoring_a_day_keeps_the_incident_ids_and_records_rewritten_get_them_back(scored_records, db_path):
    materialize_incidents(scored_records)
    before = query(db_path, "SELECT incident_id, row_count FROM detections.incidents ORDER BY ALL")

    dg.materialize(
        [anomalies], resources={"duckdb": scored_records, "settings": DEFAULT_SETTINGS}, partition_key=DAYS[1]
    )
    assert not check_incidents_cover_every_flagged_row(duckdb=scored_records).passed  # until regrouped
    assert query(
        db_path,
        "SELECT count(*) FROM detections.anomalies WHERE incident_id IS NOT NULL AND event_timestamp >= DATE '2026-03-02'",
    ) == [(0,)]
    materialize_incidents(scored_records)

    assert query(db_path, "SELECT incident_id, row_count FROM detections.incidents ORDER BY ALL") == before
    assert query(
        db_path,
        "SELECT count(*) FROM detections.anomalies WHERE detector_name = 'ensemble' AND incident_id IS NULL",
    ) == [(0,)]


@pytest.mark.slow
def test_a_wider_gap_merges_incidents_and_an_allow_rule_suppresses_them(scored_records, db_path):
    materialize_incidents(scored_records, gap_minutes=1)
    narrow = query(db_path, "SELECT count(*) FROM detections.incidents")[0][0]
    with duckdb.connect(str(db_path)) as conn:
        (ip,) = conn.execute(
            "SELECT ip_addresses[1] FROM detections.incidents WHERE len(ip_addresses) = 1 AND len(customer_ids) = 0 "
            "ORDER BY row_count DESC, incident_id LIMIT 1"
        ).fetchone()
        # Stands in for the feedback helper's view (contract B): a rule in force for that IP.
        conn.execute(
            "CREATE SCHEMA IF NOT EXISTS ops; CREATE TABLE ops.rules (allow_kind VARCHAR, allow_value VARCHAR, "
            "allowed_from TIMESTAMP, allow_until TIMESTAMP)"
        )
        conn.execute("INSERT INTO ops.rules VALUES ('ip', $ip, NULL, NULL)", {"ip": ip})
        conn.execute("CREATE VIEW ops.active_allow_rules AS SELECT * FROM ops.rules")

    result = materialize_incidents(scored_records, gap_minutes=3 * 24 * 60)  # a customer's rows of both days link

    wide = query(db_path, "SELECT count(*) FROM detections.incidents")[0][0]
    assert wide < narrow
    suppressed = query(db_path, "SELECT ip_addresses, suppressed FROM detections.incidents WHERE suppressed")
    assert suppressed and all(ips == [ip] for ips, _ in suppressed)
    assert result.get_asset_materialization_events()[0].materialization.metadata["incidents/suppressed"].value == len(
        suppressed
    )


@pytest.mark.slow
def test_each_caught_episode_of_the_seeded_store_is_one_incident_holding_that_episode_alone(scored_records, db_path):
    materialize_incidents(scored_records)
    with duckdb.connect(str(db_path), read_only=True) as conn:
        members = conn.execute(
            "SELECT DISTINCT entity_type, entity_id, incident_id FROM detections.anomalies WHERE incident_id IS NOT NULL"
        ).df()
        labels = conn.execute("SELECT * FROM store.simulation_labels").df()

    agreement = episode_incident_agreement(members, labels).set_index("entity_type").loc["all"]

    assert agreement["caught_episodes"] >= 10
    assert agreement["episode_share"] >= 0.95
    assert agreement["incident_share"] >= 0.95
