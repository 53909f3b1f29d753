"""`anomalens incidents` against a tmp DuckDB file whose incidents were grouped from hand-made records."""

from __future__ import annotations

import io
import json

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from anomalens_dagster.cli import main
from anomalens_dagster.cli.incidents import top_incidents
from anomalens_dagster.core.incident_tables import replace_incidents
from anomalens_dagster.core.incidents import group_incidents


def ensemble_record(entity_type: str, entity_id: int, at: str, severity: str, score: float, **who) -> dict:
    facts = {"action_type": "failed_login"} if entity_type == "activity" else {"total_amount": 90.0, "items_total": 3.0}
    rule = "failed_login_run" if entity_type == "activity" else "total_above_items"
    return {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "detector_name": "ensemble",
        "severity": severity,
        "details": json.dumps({"rule": rule, "facts": facts, "top_features": [{"feature": "f", "contribution": 1}]}),
        "anomaly_score": score,
        "event_timestamp": pd.Timestamp(at),
        "customer_id": None,
        "ip_address": None,
        "session_id": None,
    } | who


@pytest.fixture
def incidents_db(tmp_path):
    """Three incidents: a High login run from 203.0.113.7 on the 1st (two rows, across midnight), a Medium order
    of customer 320 on the 3rd, a Low run from 198.51.100.1 on the 4th."""
    path = tmp_path / "shop.duckdb"
    records = pd.DataFrame(
        [
            ensemble_record("activity", 1, "2026-03-01 23:59", "High", 4.0, ip_address="203.0.113.7", session_id="a"),
            ensemble_record("activity", 2, "2026-03-02 00:01", "Low", 1.5, ip_address="203.0.113.7", session_id="b"),
            ensemble_record("order", 3, "2026-03-03 12:00", "Medium", 4.0, customer_id=320),
            ensemble_record("activity", 4, "2026-03-04 08:00", "Low", 1.2, ip_address="198.51.100.1", session_id="c"),
        ]
    ).astype({"customer_id": "Int64"})
    with duckdb.connect(str(path)) as conn:
        replace_incidents(conn, group_incidents(records))
    return path


def list_incidents(db, *options: str) -> str:
    result = CliRunner().invoke(main, ["incidents", "--db", str(db), *options])
    assert result.exit_code == 0, result.output
    return result.output


def first_seen_days(db, *options: str) -> list[str]:
    return [row["first_seen"][:10] for row in json.loads(list_incidents(db, "--format", "json", *options))]


def test_incidents_are_listed_most_severe_first_with_their_lists_and_summary(incidents_db):
    listed = json.loads(list_incidents(incidents_db, "--format", "json"))

    assert [row["max_severity"] for row in listed] == ["High", "Medium", "Low"]
    assert listed[0]["row_count"] == 2 and listed[0]["ip_addresses"] == ["203.0.113.7"]
    assert listed[0]["summary"] == "2 failed logins from 203.0.113.7 over 2 min"
    assert listed[1]["customer_ids"] == [320]


def test_incidents_filter_by_severity_since_customer_ip_and_limit(incidents_db):
    assert first_seen_days(incidents_db, "--severity", "low") == ["2026-03-04"]
    # --since is event time: the run that started on the 1st went on into the 2nd.
    assert first_seen_days(incidents_db, "--since", "2026-03-02") == ["2026-03-01", "2026-03-03", "2026-03-04"]
    assert first_seen_days(incidents_db, "--since", "2026-03-03") == ["2026-03-03", "2026-03-04"]
    assert first_seen_days(incidents_db, "--customer", "320") == ["2026-03-03"]
    assert first_seen_days(incidents_db, "--ip", "198.51.100.1") == ["2026-03-04"]
    assert first_seen_days(incidents_db, "--limit", "1") == ["2026-03-01"]
    assert first_seen_days(incidents_db, "--customer", "999") == []


def test_incidents_as_csv_and_table_join_lists_and_say_when_nothing_matches(incidents_db):
    listed = pd.read_csv(io.StringIO(list_incidents(incidents_db, "--format", "csv")), dtype=str)

    assert listed.loc[0, "ip_addresses"] == "203.0.113.7" and listed.loc[1, "customer_ids"] == "320"
    assert "2 failed logins from 203.0.113.7" in list_incidents(incidents_db)
    assert list_incidents(incidents_db, "--ip", "192.0.2.1").strip() == "No incidents match."


def test_the_top_incidents_run_prints_break_score_ties_by_severity(incidents_db):
    top = top_incidents(incidents_db)

    assert top["severity"].tolist() == ["High", "Medium", "Low"]
    assert top["ensemble"].tolist()[:2] == [4.0, 4.0]


def test_incidents_of_a_store_without_them_say_what_to_run(tmp_path):
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()

    result = CliRunner().invoke(main, ["incidents", "--db", str(db)])

    assert result.exit_code == 1
    assert "no incidents yet" in result.output
