"""Anomaly records, consolidation and session context on tiny hand-made frames."""

import hashlib
import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from anomalens_dagster.constants import ENSEMBLE_THRESHOLD, SEVERITY_RATIO_CUTS
from anomalens_dagster.core.anomalies import (
    ANOMALY_DTYPES,
    CONSOLIDATED_DTYPES,
    SESSION_CONTEXT_DTYPES,
    anomaly_id,
    build_anomalies,
    consolidate,
    explain_flagged,
    mask_email,
    session_context,
    severity,
)
from anomalens_dagster.core.detectors import make_detector
from anomalens_dagster.core.scoring import ScoringModel

DETECTORS = ("zscore", "isolation_forest", "dbscan", "autoencoder", "ensemble")
# Powers of two, so that score = cut * threshold divides back to exactly the cut.
THRESHOLDS = {"zscore": 4.0, "isolation_forest": 0.5, "dbscan": 0.5, "autoencoder": 2.0}
T0 = pd.Timestamp("2026-03-01 03:00:00")
DETECTED_AT = datetime(2026, 3, 2, 1, 30)


def activity_scores(rows: dict[int, dict[str, float]], at: dict[int, pd.Timestamp] | None = None) -> pd.DataFrame:
    """A scores frame: each entity gets all five detectors; `rows` gives the scores that differ from 0.

    A score counts as flagged when it is above the detector's threshold, as in scoring.
    """
    records = []
    for entity_id, detector_scores in rows.items():
        for detector in DETECTORS:
            score = detector_scores.get(detector, 0.0)
            threshold = THRESHOLDS.get(detector, 1.0)
            records.append(
                {
                    "activity_id": entity_id,
                    "timestamp": (at or {}).get(entity_id, T0),
                    "detector": detector,
                    "score": score,
                    "is_anomaly": score > threshold,
                    "model_version": 0 if detector == "ensemble" else 3,
                }
            )
    frame = pd.DataFrame(records)
    frame["detector"] = frame["detector"].astype("str")
    return frame


def activity(entity_id: int, **facts) -> dict:
    """One entities row of an ordinary, unremarkable action; override what a test is about."""
    return {
        "id": entity_id,
        "action_type": "view_page",
        "customer_id": 12,
        "ip_address": "192.0.2.10",
        "session_id": f"s{entity_id}",
        "details": '{"url": "/home"}',
        "failed_logins_within_15min_ip": 0,
        "identical_actions_within_60s_ip": 1,
        "seconds_to_nearest_activity_ip": 40.0,
        "session_action_count": 5,
        "session_duration_seconds": 300.0,
        "purchase_amount_to_items_log_ratio": 0.0,
    } | facts


def order(entity_id: int, **facts) -> dict:
    return {
        "id": entity_id,
        "customer_id": 42,
        "total_amount": 118.70,
        "item_count": 2,
        "total_quantity": 3,
        "items_total": 118.70,
        "amount_to_items_ratio": 1.0,
        "amount_to_customer_median_ratio": 1.0,
        "hour_of_day": 3,
    } | facts


def explanation(rows: dict[int, list[tuple[str, float]]]) -> pd.DataFrame:
    """An `explain` frame indexed by entity id."""
    k = max(len(pairs) for pairs in rows.values())
    columns = {}
    for rank in range(k):
        columns[f"feature_{rank + 1}"] = pd.array([pairs[rank][0] for pairs in rows.values()], dtype="str")
        columns[f"contribution_{rank + 1}"] = [pairs[rank][1] for pairs in rows.values()]
    return pd.DataFrame(columns, index=list(rows))


def build_activity(scores, entities, explanations=None):
    flagged = scores.loc[scores["is_anomaly"] & (scores["detector"] != "ensemble")]
    if explanations is None:
        explanations = {
            detector: explanation({int(i): [("session_action_count", 2.5)] for i in ids})
            for detector, ids in flagged.groupby("detector")["activity_id"]
        }
    return build_anomalies("activity", scores, explanations, pd.DataFrame(entities), DETECTED_AT, thresholds=THRESHOLDS)


def order_scores(entity_id: int, zscore: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": [entity_id],
            "created_at": [T0],
            "detector": pd.array(["zscore"], dtype="str"),
            "score": [zscore],
            "is_anomaly": [zscore > THRESHOLDS["zscore"]],
            "model_version": [5],
        }
    )


def order_description(**facts) -> str:
    records = build_anomalies(
        "order",
        order_scores(7, 10.0),
        {"zscore": explanation({7: [("hour_of_day", -4.5)]})},
        pd.DataFrame([order(7, **facts)]),
        DETECTED_AT,
        thresholds={"zscore": THRESHOLDS["zscore"]},
    )
    return records["description"].item()


def details_of(records: pd.DataFrame, detector: str) -> dict:
    return json.loads(records.set_index("detector_name").loc[detector, "details"])


# --- Severity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("detector", DETECTORS)
def test_severity_steps_up_exactly_at_each_detectors_cuts(detector):
    threshold = THRESHOLDS.get(detector, 1.0)
    medium, high = SEVERITY_RATIO_CUTS[detector]

    assert severity(detector, np.nextafter(medium, 0) * threshold, threshold) == "Low"
    assert severity(detector, medium * threshold, threshold) == "Medium"
    assert severity(detector, np.nextafter(high, 0) * threshold, threshold) == "Medium"
    assert severity(detector, high * threshold, threshold) == "High"


def test_severity_cuts_are_the_documented_ones():
    assert SEVERITY_RATIO_CUTS == {
        "zscore": (1.5, 3.0),
        "isolation_forest": (1.05, 1.15),
        "dbscan": (1.25, 2.0),
        "autoencoder": (1.5, 4.0),
        "ensemble": (1.25, 1.5),
    }


def test_records_carry_the_severity_of_their_own_score_over_threshold():
    # zscore 12 / 4 = 3 -> High; dbscan 0.7 / 0.5 = 1.4 -> Medium; ensemble 1.2 / 1 -> Low.
    scores = activity_scores({1: {"zscore": 12.0, "dbscan": 0.7, "ensemble": 1.2}})
    records = build_activity(scores, [activity(1)])

    assert records.set_index("detector_name")["severity"].to_dict() == {
        "zscore": "High",
        "dbscan": "Medium",
        "ensemble": "Low",
    }


# --- Descriptions --------------------------------------------------------------------------------


def test_a_burst_of_identical_add_to_carts_is_described_with_its_product_ip_and_pace():
    facts = activity(
        1,
        action_type="add_to_cart",
        ip_address="203.0.113.7",
        details='{"product_id": 17, "product_name": "Blue Mug", "quantity": 1}',
        identical_actions_within_60s_ip=12,
        seconds_to_nearest_activity_ip=0.4,
    )
    records = build_activity(activity_scores({1: {"zscore": 8.0}}), [facts])

    assert records["description"].item() == (
        "12 add_to_cart actions for product #17 (Blue Mug) from 203.0.113.7 within a minute of this one; "
        "nearest other action 0.4 s away"
    )
    assert details_of(records, "zscore")["rule"] == "identical_actions"


def test_a_burst_of_searches_names_the_query():
    facts = activity(1, action_type="search", details='{"query": "kettle", "url": "/search?q=kettle"}')
    facts |= {"identical_actions_within_60s_ip": 14, "seconds_to_nearest_activity_ip": 2.3}
    records = build_activity(activity_scores({1: {"zscore": 8.0}}), [facts])

    assert records["description"].item() == (
        '14 searches for "kettle" from 192.0.2.10 within a minute of this one; nearest other action 2.3 s away'
    )


def test_a_failed_login_run_is_described_with_its_count_ip_and_masked_email():
    facts = activity(
        1,
        action_type="failed_login",
        customer_id=-1,
        ip_address="198.51.100.4",
        details='{"success": false, "attempted_email": "john.doe@example.com"}',
        failed_logins_within_15min_ip=7,
        identical_actions_within_60s_ip=5,
    )
    records = build_activity(activity_scores({1: {"zscore": 8.0}}), [facts])

    assert records["description"].item() == (
        "7 failed logins from 198.51.100.4 within 15 min of this one, for jo***@example.com"
    )
    facts_used = details_of(records, "zscore")["facts"]
    assert facts_used["attempted_email"] == "jo***@example.com"
    assert facts_used["customer_id"] is None
    assert "john.doe" not in records["details"].item()


def test_a_login_after_a_failed_login_run_is_described_as_following_it():
    facts = activity(1, action_type="login", details='{"success": true}', failed_logins_within_15min_ip=6)
    records = build_activity(activity_scores({1: {"zscore": 8.0}}), [facts])

    assert records["description"].item() == "login from 192.0.2.10 within 15 min of 6 failed logins from the same IP"


def test_an_activity_without_a_known_pattern_falls_back_to_its_strongest_feature():
    facts = activity(1, ip_address=None, session_action_count=1, session_duration_seconds=0.0)
    scores = activity_scores({1: {"dbscan": 0.75}})
    explanations = {"dbscan": explanation({1: [("session_action_count", 3.1), ("timestamp_hour", 1.2)]})}
    records = build_activity(scores, [facts], explanations)

    assert records["description"].item() == (
        "view_page at 03:00 from an unknown IP unlike the training data (session of 1 action); "
        "strongest signal: session_action_count = 1"
    )
    assert details_of(records, "dbscan")["rule"] == "unusual_activity"


def test_the_fallback_shows_durations_in_words_and_names_a_purchase_amount():
    facts = activity(1, action_type="purchase", details='{"order_total": 2065.24, "order_id": 9}')
    scores = activity_scores({1: {"zscore": 5.0}})
    explanations = {"zscore": explanation({1: [("session_duration_seconds", 4.0)]})}
    records = build_activity(scores, [facts], explanations)

    assert records["description"].item() == (
        "purchase of 2,065.24 at 03:00 from 192.0.2.10 unlike the training data (session of 5 actions over 5 min); "
        "strongest signal: session_duration_seconds = 5 min"
    )


def test_a_purchase_charged_far_below_its_items_names_both_amounts():
    facts = activity(
        1,
        action_type="purchase",
        details='{"order_total": 2.5, "order_id": 9}',
        purchase_amount_to_items_log_ratio=float(np.log(2.5 / 250.0)),
    )
    records = build_activity(activity_scores({1: {"zscore": 5.0}}), [facts], {"zscore": explanation({1: []})})

    assert records["description"].item() == (
        "purchase of 2.50 for items costing 250.00 (0.01x their price) from 192.0.2.10 at 03:00"
    )
    assert details_of(records, "zscore")["rule"] == "purchase_total_mismatch"


def test_a_high_order_total_is_compared_with_what_its_items_cost():
    description = order_description(total_amount=4512.0, amount_to_items_ratio=4512.0 / 118.70)

    assert description == "Order total 4,512.00 is 38x what its 3 items cost (118.70)"


def test_a_single_item_costs_in_the_singular_and_small_ratios_keep_a_decimal():
    description = order_description(total_amount=80.0, items_total=50.0, total_quantity=1, amount_to_items_ratio=1.6)

    assert description == "Order total 80.00 is 1.6x what its 1 item costs (50.00)"


def test_a_low_order_total_is_set_against_its_items_cost():
    description = order_description(total_amount=0.40, items_total=112.30, amount_to_items_ratio=0.40 / 112.30)

    assert description == "Order total 0.40 for 3 items costing 112.30"


def test_an_order_without_items_says_so():
    description = order_description(item_count=0, total_quantity=0, items_total=0.0, amount_to_items_ratio=0.0)

    assert description == "Order total 118.70 but the order has no items"


def test_an_order_far_from_the_customers_median_names_that_median():
    description = order_description(total_amount=900.0, items_total=900.0, amount_to_customer_median_ratio=12.0)

    assert description == "Order total 900.00 is 12x customer 42's median order (75.00)"


def test_an_order_without_a_known_pattern_falls_back_to_its_strongest_feature():
    assert order_description() == (
        "Order of 3 items totalling 118.70 at 03:00 unlike the training data; strongest signal: hour_of_day = 3"
    )


# --- Email masking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("john.doe@example.com", "jo***@example.com"),
        ("jo@example.com", "j***@example.com"),
        ("j@example.com", "***@example.com"),
        ("admin", "ad***"),
    ],
)
def test_emails_keep_at_most_two_leading_characters_and_never_the_whole_local_part(email, masked):
    assert mask_email(email) == masked


# --- Ids -----------------------------------------------------------------------------------------


def test_ids_are_stable_across_calls_and_distinct_across_detectors():
    scores = activity_scores({1: {"zscore": 8.0, "dbscan": 0.7, "ensemble": 1.3}, 2: {"zscore": 5.0}})
    entities = [activity(1), activity(2)]
    first = build_activity(scores, entities)
    again = build_activity(scores.sample(frac=1.0, random_state=3), entities)

    pd.testing.assert_frame_equal(first, again)
    assert first["id"].is_unique
    assert len(first) == 4


def test_the_id_is_the_documented_63_bit_blake2b_of_entity_and_detector():
    digest = hashlib.blake2b(b"anomalens:order:955600000002:zscore", digest_size=8).digest()
    expected = int.from_bytes(digest, "big") >> 1

    assert anomaly_id("order", 955600000002, "zscore") == expected
    assert 0 <= expected < 2**63
    assert anomaly_id("activity", 955600000002, "zscore") != expected


# --- Which rows, which columns -------------------------------------------------------------------


def test_only_flagged_rows_become_records_in_time_then_detector_order():
    later = T0 + pd.Timedelta(minutes=5)
    scores = activity_scores({1: {"zscore": 8.0, "ensemble": 1.1}, 2: {"zscore": 3.9}, 3: {"dbscan": 0.6}}, {1: later})
    records = build_activity(scores, [activity(1), activity(2), activity(3)])

    assert list(zip(records["entity_id"], records["detector_name"], strict=True)) == [
        (3, "dbscan"),
        (1, "zscore"),
        (1, "ensemble"),
    ]
    assert records["anomaly_score"].tolist() == [0.6, 8.0, 1.1]
    assert records["event_timestamp"].tolist() == [T0, later, later]
    assert (records["detection_timestamp"] == pd.Timestamp(DETECTED_AT)).all()


def test_an_empty_day_gives_an_empty_frame_with_the_record_columns_and_dtypes():
    records = build_anomalies(
        "activity",
        activity_scores({1: {"zscore": 1.0}}),
        {},
        pd.DataFrame([activity(1)]),
        DETECTED_AT,
        thresholds=THRESHOLDS,
    )

    assert records.empty
    assert records.dtypes.astype(str).to_dict() == ANOMALY_DTYPES
    assert list(records.columns)[:9] == [
        "id",
        "entity_type",
        "entity_id",
        "detection_timestamp",
        "description",
        "severity",
        "detector_name",
        "details",
        "anomaly_score",
    ]


def test_records_have_the_documented_dtypes_and_an_aware_detection_time_becomes_naive_utc():
    aware = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    records = build_anomalies(
        "activity",
        activity_scores({1: {"zscore": 8.0}}),
        {"zscore": explanation({1: [("session_action_count", 2.0)]})},
        pd.DataFrame([activity(1)]),
        aware,
        thresholds=THRESHOLDS,
    )

    assert records.dtypes.astype(str).to_dict() == ANOMALY_DTYPES
    assert records["detection_timestamp"].item() == pd.Timestamp("2026-03-02 02:30")


def test_details_hold_the_score_threshold_model_version_and_top_features_with_values():
    scores = activity_scores({1: {"zscore": 8.0}})
    explanations = {"zscore": explanation({1: [("session_action_count", 3.5), ("no_such_column", -1.0)]})}
    details = details_of(build_activity(scores, [activity(1)], explanations), "zscore")

    assert details["score"] == 8.0
    assert details["threshold"] == 4.0
    assert details["score_to_threshold"] == 2.0
    assert details["model_version"] == 3
    assert details["top_features"] == [
        {"feature": "session_action_count", "contribution": 3.5, "value": 5},
        {"feature": "no_such_column", "contribution": -1.0},
    ]
    assert details["facts"]["session_action_count"] == 5


def test_the_ensemble_is_explained_by_its_strongest_component():
    # Ratios: zscore 6 / 4 = 1.5, dbscan 1.0 / 0.5 = 2.0 (strongest), autoencoder 1 / 2 = 0.5.
    scores = activity_scores({1: {"zscore": 6.0, "dbscan": 1.0, "autoencoder": 1.0, "ensemble": 1.0625}})
    explanations = {
        "zscore": explanation({1: [("timestamp_hour", 3.0)]}),
        "dbscan": explanation({1: [("session_duration_seconds", 0.9)]}),
    }
    details = details_of(build_activity(scores, [activity(1)], explanations), "ensemble")

    assert details["explained_by"] == "dbscan"
    assert details["top_features"] == [{"feature": "session_duration_seconds", "contribution": 0.9, "value": 300.0}]
    assert details["detector_ratios"] == {"zscore": 1.5, "isolation_forest": 0.0, "dbscan": 2.0, "autoencoder": 0.5}
    assert details["threshold"] == ENSEMBLE_THRESHOLD


def test_explain_flagged_explains_each_models_flagged_rows_indexed_by_entity_id():
    training = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0], "y": [10.0, 10.0, 10.0, 10.0, 11.0]})
    # x: mean 2, population std sqrt(2); y: mean 10.2, std 0.4.
    detector = make_detector("zscore", ["x", "y"], z_threshold=2.0, log_skewed=False).fit(training)
    features = pd.DataFrame({"id": [101, 102, 103], "x": [2.0, 2.0, 2.0], "y": [10.2, 12.2, 10.2]})
    scores = pd.DataFrame(
        {
            "activity_id": [101, 102, 103],
            "detector": pd.array(["zscore"] * 3, dtype="str"),
            "is_anomaly": [False, True, False],
        }
    )
    explanations = explain_flagged({"zscore": ScoringModel(detector, 1)}, features, scores, "activity", top_k=1)

    assert explanations["zscore"].index.tolist() == [102]
    assert explanations["zscore"]["feature_1"].tolist() == ["y"]
    assert explanations["zscore"]["contribution_1"].tolist() == pytest.approx([5.0])


# --- Validation ----------------------------------------------------------------------------------


def test_entities_without_the_fact_columns_are_refused_naming_them():
    entities = pd.DataFrame([activity(1)]).drop(columns=["ip_address", "details"])

    with pytest.raises(ValueError, match=r"entities: missing columns \['ip_address', 'details'\]"):
        build_activity(activity_scores({1: {"zscore": 8.0}}), entities)


def test_scores_without_their_columns_are_refused_naming_them():
    scores = activity_scores({1: {"zscore": 8.0}}).drop(columns=["model_version"])

    with pytest.raises(ValueError, match=r"scores: missing columns \['model_version'\]"):
        build_activity(scores, [activity(1)])


def test_a_detector_without_threshold_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"no threshold for detectors \['dbscan'\]"):
        build_anomalies(
            "activity",
            activity_scores({1: {"zscore": 8.0}}),
            {},
            pd.DataFrame([activity(1)]),
            DETECTED_AT,
            thresholds={k: v for k, v in THRESHOLDS.items() if k != "dbscan"},
        )


def test_a_flagged_entity_without_facts_or_explanation_is_refused():
    scores = activity_scores({1: {"zscore": 8.0}, 2: {"zscore": 8.0}})

    with pytest.raises(ValueError, match=r"entities: no row for 1 flagged activity rows, e.g. \[2\]"):
        build_activity(scores, [activity(1)])
    with pytest.raises(ValueError, match=r"explanations\['zscore'\]: no row for 1 flagged activity rows, e.g. \[2\]"):
        build_activity(scores, [activity(1), activity(2)], {"zscore": explanation({1: [("x", 1.0)]})})


def test_an_entity_scored_twice_by_one_detector_is_refused_rather_than_given_two_records_with_one_id():
    scores = activity_scores({1: {"zscore": 8.0}})

    with pytest.raises(ValueError, match=r"appear more than once, e.g. \[\(1, 'zscore'\)\]"):
        build_activity(pd.concat([scores, scores], ignore_index=True), [activity(1)])


def test_an_unknown_entity_type_is_refused():
    with pytest.raises(ValueError, match="unknown entity type 'customer'"):
        build_anomalies("customer", pd.DataFrame(), {}, pd.DataFrame(), DETECTED_AT, thresholds={})


# --- Consolidation -------------------------------------------------------------------------------


def records(*rows: tuple) -> pd.DataFrame:
    """Anomaly records from (entity_type, entity_id, detector, severity, detected_at, score) tuples."""
    frame = pd.DataFrame(
        rows, columns=["entity_type", "entity_id", "detector_name", "severity", "detection_timestamp", "anomaly_score"]
    )
    frame["event_timestamp"] = T0
    return frame


def test_consolidation_lists_sorted_detectors_and_the_first_and_last_detection():
    day_1, day_2 = pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-03")
    consolidated = consolidate(
        records(
            ("activity", 1, "zscore", "Low", day_2, 5.0),
            ("activity", 1, "dbscan", "Low", day_1, 0.6),
            ("activity", 1, "isolation_forest", "Low", day_2, 0.7),
        )
    )

    row = consolidated.iloc[0]
    assert row["detectors"] == "dbscan,isolation_forest,zscore"
    assert row["n_detectors"] == 3
    assert (row["first_detected_at"], row["last_detected_at"]) == (day_1, day_2)
    assert np.isnan(row["ensemble_score"])


@pytest.mark.parametrize(
    ("severities", "overall"),
    [(["Low", "High", "Medium"], "High"), (["Low", "Medium", "Low"], "Medium"), (["Low", "Low", "Low"], "Low")],
)
def test_the_overall_severity_is_the_worst_one(severities, overall):
    rows = [("order", 7, name, level, T0, 1.0) for name, level in zip(DETECTORS, severities, strict=False)]

    assert consolidate(records(*rows))["overall_severity"].item() == overall


def test_the_ensemble_score_comes_from_the_scores_else_from_the_ensemble_record():
    anomalies = records(
        ("activity", 1, "ensemble", "Low", T0, 1.2),
        ("activity", 2, "zscore", "Low", T0, 5.0),
        ("order", 1, "zscore", "Low", T0, 5.0),
    )
    ensemble_scores = pd.DataFrame({"entity_type": ["activity"], "entity_id": [2], "score": [0.8]})

    assert consolidate(anomalies)["ensemble_score"].tolist() == pytest.approx([1.2, np.nan, np.nan], nan_ok=True)
    consolidated = consolidate(anomalies, ensemble_scores)
    assert list(zip(consolidated["entity_type"], consolidated["entity_id"], strict=True)) == [
        ("activity", 1),
        ("activity", 2),
        ("order", 1),
    ]
    assert consolidated["ensemble_score"].tolist() == pytest.approx([1.2, 0.8, np.nan], nan_ok=True)


def test_consolidating_nothing_gives_an_empty_frame_with_the_documented_dtypes():
    consolidated = consolidate(records())

    assert consolidated.empty
    assert consolidated.dtypes.astype(str).to_dict() == CONSOLIDATED_DTYPES


def test_consolidation_refuses_records_without_their_columns_naming_them():
    with pytest.raises(ValueError, match=r"anomalies: missing columns \['severity'\]"):
        consolidate(records().drop(columns=["severity"]))


# --- Session context -----------------------------------------------------------------------------


def test_session_context_lists_each_sessions_actions_by_timestamp_then_id_with_emails_masked():
    activities = pd.DataFrame(
        {
            "id": [30, 10, 20, 40, 50],
            "session_id": ["s1", "s1", "s1", "s2", None],
            "timestamp": [T0, T0, T0 - pd.Timedelta(seconds=1), T0, T0],
            "action_type": ["login", "failed_login", "view_page", "search", "logout"],
            "details": ['{"success":true}', '{"attempted_email":"jo@example.com"}', None, '{"query":"mug"}', "{}"],
        }
    )
    context = session_context(activities)

    assert context.dtypes.astype(str).to_dict() == SESSION_CONTEXT_DTYPES
    assert context["session_id"].tolist() == ["s1", "s2"]
    assert context["n_actions"].tolist() == [2 + 1, 1]
    assert json.loads(context["actions"].iloc[0]) == [
        {"id": 20, "timestamp": "2026-03-01T02:59:59.000000", "action_type": "view_page", "details": None},
        {"id": 10, "timestamp": "2026-03-01T03:00:00.000000", "action_type": "failed_login",
         "details": {"attempted_email": "j***@example.com"}},
        {"id": 30, "timestamp": "2026-03-01T03:00:00.000000", "action_type": "login", "details": {"success": True}},
    ]  # fmt: skip
    assert context["first_timestamp"].iloc[0] == T0 - pd.Timedelta(seconds=1)


def test_session_context_refuses_activities_without_their_columns_naming_them():
    with pytest.raises(ValueError, match=r"activities: missing columns \['session_id'\]"):
        session_context(pd.DataFrame({"id": [1], "timestamp": [T0], "action_type": ["x"], "details": ["{}"]}))


# --- Who and where -------------------------------------------------------------------------------


def test_activity_records_name_the_customer_ip_and_session_and_an_anonymous_visitor_has_no_customer():
    scores = activity_scores({1: {"zscore": 9.0}, 2: {"zscore": 9.0}})

    got = build_activity(scores, [activity(1, customer_id=320, ip_address="203.0.113.7"), activity(2, customer_id=-1)])

    assert got[["entity_id", "customer_id", "ip_address", "session_id"]].values.tolist() == [
        [1, 320, "203.0.113.7", "s1"],
        [2, pd.NA, "192.0.2.10", "s2"],
    ]


def test_order_records_name_the_customer_and_no_ip_or_session():
    got = build_anomalies(
        "order",
        order_scores(7, 10.0),
        {"zscore": explanation({7: [("hour_of_day", -4.5)]})},
        pd.DataFrame([order(7, customer_id=320)]),
        DETECTED_AT,
        thresholds={"zscore": THRESHOLDS["zscore"]},
    )

    assert got["customer_id"].tolist() == [320]
    assert got["ip_address"].isna().all() and got["session_id"].isna().all()


def test_consolidation_keeps_the_customer_and_ip_of_the_entitys_records_and_na_for_records_without_them():
    rows = records(("activity", 1, "zscore", "Low", T0, 5.0), ("activity", 1, "dbscan", "Low", T0, 0.6))
    with_who = rows.assign(customer_id=pd.array([pd.NA, 320], dtype="Int64"), ip_address=["203.0.113.7", None])

    consolidated = consolidate(with_who)
    stored_before_the_columns = consolidate(rows)

    assert consolidated[["customer_id", "ip_address"]].values.tolist() == [[320, "203.0.113.7"]]
    assert stored_before_the_columns[["customer_id", "ip_address"]].isna().all(axis=None)
