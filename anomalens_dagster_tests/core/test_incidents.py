"""Incidents on hand-made anomaly records: links, ids, columns, summaries, allow rules, agreement."""

import json
from datetime import timedelta

import pandas as pd
import pytest

from anomalens_dagster.core.incidents import (
    INCIDENT_COLUMNS,
    episode_incident_agreement,
    group_incidents,
    incident_id,
)

T0 = pd.Timestamp("2026-03-01 23:50:00")


def record(
    entity_id: int,
    seconds: float,
    *,
    entity_type: str = "activity",
    detector: str = "ensemble",
    severity: str = "Medium",
    score: float = 1.4,
    customer: int | None = None,
    ip: str | None = "203.0.113.9",
    session: str | None = None,
    rule: str = "unusual_activity",
    facts: dict | None = None,
    features: tuple[str, ...] = ("session_action_count",),
) -> dict:
    details = {
        "rule": rule,
        "facts": facts or {"action_type": "view_page"},
        "top_features": [{"feature": name, "contribution": 1.0} for name in features],
    }
    return {
        "id": entity_id * 10,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "detector_name": detector,
        "severity": severity,
        "details": json.dumps(details),
        "anomaly_score": score,
        "event_timestamp": T0 + pd.Timedelta(seconds=seconds),
        "customer_id": customer,
        "ip_address": ip if entity_type == "activity" else None,
        "session_id": (session or f"s{entity_id}") if entity_type == "activity" else None,
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(rows).astype({"customer_id": "Int64", "ip_address": "str", "session_id": "str"})


def failed_login(entity_id: int, seconds: float, email: str = "jo***@example.com", **kwargs) -> dict:
    return record(
        entity_id,
        seconds,
        rule="failed_login_run",
        facts={"action_type": "failed_login", "attempted_email": email},
        features=("failed_logins_in_last_15min_ip", "time_since_last_activity_ip"),
        **kwargs,
    )


def test_anonymous_rows_of_one_ip_within_the_gap_form_one_incident_across_midnight():
    records = frame(*(failed_login(i, 300 * i, session=f"s{i}") for i in range(1, 5)))  # 23:55 .. 00:10

    grouping = group_incidents(records, gap=timedelta(minutes=30))

    incidents = grouping.incidents
    assert len(incidents) == 1
    incident = incidents.iloc[0]
    assert incident["row_count"] == 4
    assert incident["first_seen"] == T0 + pd.Timedelta(seconds=300)
    assert incident["last_seen"] == T0 + pd.Timedelta(seconds=1200)
    assert incident["first_seen"].date() != incident["last_seen"].date()
    assert incident["incident_id"] == incident_id("activity", 1)
    assert incident["ip_addresses"] == ["203.0.113.9"]
    assert incident["session_ids"] == ["s1", "s2", "s3", "s4"]
    assert incident["customer_ids"] == [] and incident["order_ids"] == []
    assert incident["summary"] == "4 failed logins for jo***@example.com from 203.0.113.9 over 15 min"
    assert list(incidents.columns) == list(INCIDENT_COLUMNS)
    assert set(grouping.members["incident_id"]) == {incident["incident_id"]}


def test_rows_further_apart_than_the_gap_are_separate_incidents():
    records = frame(failed_login(1, 0), failed_login(2, 31 * 60))

    assert len(group_incidents(records, gap=timedelta(minutes=30)).incidents) == 2
    assert len(group_incidents(records, gap=timedelta(minutes=32)).incidents) == 1


def test_a_chain_of_rows_each_within_the_gap_of_the_next_is_one_incident():
    records = frame(*(failed_login(i, 20 * 60 * i) for i in range(5)))  # 80 min end to end

    incidents = group_incidents(records, gap=timedelta(minutes=30)).incidents

    assert incidents["row_count"].tolist() == [5]


def test_customers_behind_one_shared_ip_are_not_linked_by_it_but_each_customers_rows_are():
    records = frame(
        record(1, 0, customer=11, ip="198.51.100.1"),
        record(2, 60, customer=12, ip="198.51.100.1"),
        record(3, 120, customer=11, ip="198.51.100.1"),
    )

    incidents = group_incidents(records).incidents

    assert sorted(incidents["customer_ids"].tolist()) == [[11], [12]]
    assert sorted(incidents["row_count"].tolist()) == [1, 2]


def test_a_session_links_its_rows_whatever_their_ip():
    records = frame(record(1, 0, ip="198.51.100.1", session="abc"), record(2, 60, ip="198.51.100.2", session="abc"))

    incidents = group_incidents(records).incidents

    assert incidents["row_count"].tolist() == [2]
    assert (
        incidents["summary"].iat[0]
        == "2 unusual view_page actions from 2 IPs within 60 s; strongest signal: session_action_count"
    )


def test_orders_and_activities_never_share_an_incident_and_orders_link_by_customer():
    order_facts = {"total_amount": 900.0, "items_total": 30.0, "item_count": 2}
    records = frame(
        record(1, 0, entity_type="order", customer=42, rule="total_above_items", facts=order_facts),
        record(2, 600, entity_type="order", customer=42, rule="total_above_items", facts=order_facts),
        record(3, 60, customer=42),
    )

    incidents = group_incidents(records).incidents.set_index("entity_type")

    assert incidents.loc["order", "row_count"] == 2
    assert incidents.loc["order", "order_ids"] == [1, 2]
    assert (
        incidents.loc["order", "summary"]
        == "2 orders totalling 1,800.00 from customer 42 over 10 min, 30x what their items cost"
    )
    assert incidents.loc["activity", "row_count"] == 1


def test_ids_depend_on_the_earliest_row_only_so_rescoring_keeps_them():
    first = frame(failed_login(1, 0, score=1.2), failed_login(2, 60, score=1.3))
    rescored = frame(
        failed_login(1, 0, score=3.0, severity="High"), failed_login(2, 60, score=2.0), failed_login(3, 90)
    )

    before = group_incidents(first).incidents["incident_id"].tolist()
    after = group_incidents(rescored).incidents["incident_id"].tolist()

    assert before == after == [incident_id("activity", 1)]


def test_severity_counts_every_detectors_records_and_the_score_is_the_highest_ensemble_score():
    records = frame(
        failed_login(1, 0, score=1.3, severity="Low"),
        failed_login(1, 0, detector="zscore", score=12.0, severity="High"),
        failed_login(2, 30, score=2.5, severity="Medium"),
        record(9, 40, detector="zscore", severity="High"),  # no ensemble record: no incident
    )

    grouping = group_incidents(records)

    incident = grouping.incidents.iloc[0]
    assert len(grouping.incidents) == 1
    assert incident["max_severity"] == "High"
    assert incident["ensemble_score"] == 2.5
    assert sorted(grouping.members["entity_id"].tolist()) == [1, 2]


def test_top_features_are_those_that_drove_most_rows():
    records = frame(
        record(1, 0, features=("a", "b")),
        record(2, 10, features=("b", "c"), session="s1"),
        record(3, 20, features=("c", "b", "a"), session="s1"),
    )

    assert group_incidents(records).incidents["top_features"].iat[0] == ["b", "c", "a"]  # c ranks higher than a


def test_an_incident_is_suppressed_only_when_every_row_is_covered_by_an_allow_rule():
    records = frame(record(1, 0, customer=7, ip="10.0.0.1", session="x"), record(2, 30, ip="10.0.0.2", session="x"))
    rules_both = pd.DataFrame({"allow_kind": ["customer", "ip"], "allow_value": ["7", "10.0.0.2"]})
    rules_one = pd.DataFrame({"allow_kind": ["ip"], "allow_value": ["10.0.0.1"]})

    assert group_incidents(records, allow_rules=rules_both).incidents["suppressed"].tolist() == [True]
    assert group_incidents(records, allow_rules=rules_one).incidents["suppressed"].tolist() == [False]
    assert group_incidents(records).incidents["suppressed"].tolist() == [False]


def test_a_burst_summary_names_the_shared_target_and_how_fast_it_was():
    facts = {"action_type": "search", "query": "kettle"}
    records = frame(*(record(i, 3 * i, rule="identical_actions", facts=facts, session="b") for i in range(14)))

    summary = group_incidents(records).incidents["summary"].iat[0]

    assert summary == '14 identical searches for "kettle" from 203.0.113.9 within 39 s'


def test_failed_logins_against_several_accounts_are_counted_and_emails_never_appear_unmasked():
    records = frame(
        failed_login(1, 0, email="al***@example.com"),
        failed_login(2, 60, email="bo***@example.com"),
        record(3, 90, rule="failed_login_run", facts={"action_type": "login", "note": "john.doe@example.com"}),
    )

    summary = group_incidents(records).incidents["summary"].iat[0]

    assert summary == "2 failed logins against 2 accounts and 1 login from 203.0.113.9 within 90 s"


def test_no_ensemble_record_gives_no_incident_and_bad_input_is_named():
    assert group_incidents(frame(record(1, 0, detector="zscore"))).incidents.empty
    with pytest.raises(ValueError, match="missing columns"):
        group_incidents(frame(record(1, 0)).drop(columns="session_id"))
    with pytest.raises(ValueError, match="gap must be positive"):
        group_incidents(frame(record(1, 0)), gap=timedelta(0))
    with pytest.raises(ValueError, match="more than one ensemble record"):
        group_incidents(frame(record(1, 0), record(1, 0)))


def test_agreement_counts_split_episodes_and_merged_incidents():
    members = pd.DataFrame(
        {
            "entity_type": ["activity"] * 5 + ["order"],
            "entity_id": [1, 2, 3, 4, 5, 100],
            "incident_id": ["a", "a", "b", "c", "c", "o"],
        }
    )
    labels = pd.DataFrame(
        {
            "entity_type": ["activity"] * 4 + ["order", "activity"],
            "entity_id": [1, 2, 3, 4, 100, 99],
            # e1 split over a and b; c holds e2 and an unlabelled row; e3's order is caught alone.
            "episode_id": ["e1", "e1", "e1", "e2", "e3", "e3"],
        }
    )

    agreement = episode_incident_agreement(members, labels).set_index("entity_type")

    assert agreement.loc["activity", "caught_episodes"] == 2
    assert agreement.loc["activity", "episodes_in_one_incident"] == 1
    assert agreement.loc["activity", "incident_share"] == 1.0
    assert agreement.loc["order", "episode_share"] == 1.0
    assert agreement.loc["all", "caught_episodes"] == 3
    assert agreement.loc["all", "episode_share"] == pytest.approx(2 / 3)
    assert agreement.loc["all", "incidents_without_episode"] == 0


def test_a_purchase_far_below_its_items_cost_reads_as_a_small_ratio_not_zero():
    facts = {"action_type": "purchase", "order_total": 2.55, "items_total": 137.98}
    records = frame(record(1, 0, customer=281, rule="purchase_total_mismatch", facts=facts))

    summary = group_incidents(records).incidents["summary"].iat[0]

    assert (
        summary
        == "1 purchase totalling 2.55 for items costing 137.98 (0.018x their price) from 203.0.113.9 (customer 281) at 23:50"
    )
