"""Tier-1 tests of the evaluation core: hand-computed metrics on tiny frames, edge cases, validation."""

from __future__ import annotations

import datetime as dt
import logging
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from anomalens_dagster.constants import (
    ANOMALY_KIND_BURST,
    ANOMALY_KIND_FAILED_LOGINS,
    ANOMALY_KIND_HIGH_TOTAL,
    ANOMALY_KIND_LOW_TOTAL,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    EVALUATION_ALL_KINDS,
)
from anomalens_dagster.core.evaluation import (
    EVALUATION_COLUMNS,
    episodes_caught,
    evaluate_detections,
    evaluate_splits,
    headline_metrics,
    headline_split,
    is_evaluated,
)
from anomalens_dagster.core.simulator import SimulationSettings, simulate_catalog, simulate_day

ALL = EVALUATION_ALL_KINDS
BURST = ANOMALY_KIND_BURST
FAILED = ANOMALY_KIND_FAILED_LOGINS

# Ten activities: a burst episode (ids 1-3), a failed-login episode (ids 4-5), five normal rows (6-10).
LABELS = pd.DataFrame(
    {
        "entity_type": [ENTITY_ACTIVITY] * 5,
        "entity_id": np.array([1, 2, 3, 4, 5], dtype=np.int64),
        "anomaly_kind": [BURST, BURST, BURST, FAILED, FAILED],
        "episode_id": ["d:burst:1", "d:burst:1", "d:burst:1", "d:failed:1", "d:failed:1"],
    }
)
IDS = np.arange(1, 11, dtype=np.int64)
# zscore ranks every anomaly above every normal row (perfect ranking) and flags 1, 4, 5 and 6.
ZSCORE_SCORES = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
ZSCORE_FLAGS = [1, 0, 0, 1, 1, 1, 0, 0, 0, 0]
# isolation_forest ranks 1, 6, 4, 2, 7, 5, 3, 8, 9, 10 (most anomalous first) and flags 4 and 7.
FOREST_SCORES = [0.9, 0.6, 0.3, 0.7, 0.4, 0.8, 0.5, 0.2, 0.1, 0.0]
FOREST_FLAGS = [0, 0, 0, 1, 0, 0, 1, 0, 0, 0]


def scores_frame(per_detector: dict[str, tuple[list[float], list[int]]], ids=IDS, entity_type=ENTITY_ACTIVITY):
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "entity_type": entity_type,
                    "entity_id": np.asarray(ids, dtype=np.int64),
                    "detector": detector,
                    "score": np.asarray(values, dtype=np.float64),
                    "is_anomaly": np.asarray(flags, dtype=bool),
                }
            )
            for detector, (values, flags) in per_detector.items()
        ],
        ignore_index=True,
    )


def two_detector_scores() -> pd.DataFrame:
    return scores_frame({"zscore": (ZSCORE_SCORES, ZSCORE_FLAGS), "isolation_forest": (FOREST_SCORES, FOREST_FLAGS)})


def row(evaluation: pd.DataFrame, detector: str, kind: str, entity_type: str = ENTITY_ACTIVITY) -> pd.Series:
    match = evaluation[
        (evaluation["entity_type"] == entity_type)
        & (evaluation["detector"] == detector)
        & (evaluation["anomaly_kind"] == kind)
    ]
    assert len(match) == 1, f"expected one row for {entity_type}/{detector}/{kind}, got {len(match)}"
    return match.iloc[0]


# --- Hand-computed metrics ---------------------------------------------------------------------------

# (detector, kind): n_rows, n_positive, n_flagged, TP, FP, FN, precision, recall, f1, episode_recall
HAND_COMPUTED = {
    # Flags 1, 4, 5 (anomalies) and 6 (normal); bursts 2 and 3 are missed.
    ("zscore", ALL): (10, 5, 4, 3, 1, 2, 3 / 4, 3 / 5, 6 / 9, 2 / 2),
    ("zscore", BURST): (8, 3, 2, 1, 1, 2, 1 / 2, 1 / 3, 2 / 5, 1 / 1),  # rows 4, 5 left out
    ("zscore", FAILED): (7, 2, 3, 2, 1, 0, 2 / 3, 2 / 2, 4 / 5, 1 / 1),  # rows 1-3 left out
    # Flags 4 (failed login) and 7 (normal): the burst episode goes unnoticed.
    ("isolation_forest", ALL): (10, 5, 2, 1, 1, 4, 1 / 2, 1 / 5, 2 / 7, 1 / 2),
    ("isolation_forest", BURST): (8, 3, 1, 0, 1, 3, 0.0, 0.0, 0.0, 0 / 1),
    ("isolation_forest", FAILED): (7, 2, 2, 1, 1, 1, 1 / 2, 1 / 2, 2 / 4, 1 / 1),
}


@pytest.mark.parametrize(("detector", "kind"), list(HAND_COMPUTED))
def test_flag_metrics_per_kind_and_overall_match_hand_computed_values(detector, kind):
    evaluation = evaluate_detections(two_detector_scores(), LABELS)
    n_rows, n_positive, n_flagged, tp, fp, fn, precision, recall, f1, episode_recall = HAND_COMPUTED[(detector, kind)]

    got = row(evaluation, detector, kind)

    assert got["n_rows"] == n_rows
    assert got["n_positive"] == n_positive
    assert got["n_normal"] == 5
    assert got["n_flagged"] == n_flagged
    assert (got["true_positives"], got["false_positives"], got["false_negatives"]) == (tp, fp, fn)
    assert got["precision"] == pytest.approx(precision)
    assert got["recall"] == pytest.approx(recall)
    assert got["f1"] == pytest.approx(f1)
    assert got["episode_recall"] == pytest.approx(episode_recall)
    assert got["normal_flag_rate"] == pytest.approx(1 / 5)  # each detector flags one of five normal rows
    assert got["n_unscored_positive"] == 0


def test_episode_counts_say_how_many_episodes_had_a_flagged_row():
    evaluation = evaluate_detections(two_detector_scores(), LABELS)

    forest_all = row(evaluation, "isolation_forest", ALL)
    forest_burst = row(evaluation, "isolation_forest", BURST)

    assert (forest_all["n_episodes"], forest_all["n_episodes_detected"]) == (2, 1)
    assert (forest_burst["n_episodes"], forest_burst["n_episodes_detected"]) == (1, 0)


def test_a_perfect_ranking_has_pr_auc_one_for_every_kind():
    evaluation = evaluate_detections(two_detector_scores(), LABELS)

    for kind in (ALL, BURST, FAILED):
        assert row(evaluation, "zscore", kind)["pr_auc"] == pytest.approx(1.0)


def test_pr_auc_of_a_known_ranking_matches_the_hand_value():
    # Ranking 1 6 4 2 7 5 3 8 9 10. Overall, the anomalies come 1st, 3rd, 4th, 6th and 7th; the
    # burst ranking without rows 4 and 5 is 1 6 2 7 3 ..., the failed-login one without 1-3 is 6 4 7 5 ...
    evaluation = evaluate_detections(two_detector_scores(), LABELS)

    assert row(evaluation, "isolation_forest", ALL)["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 6 + 5 / 7) / 5)
    assert row(evaluation, "isolation_forest", BURST)["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert row(evaluation, "isolation_forest", FAILED)["pr_auc"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_tied_scores_enter_the_pr_curve_at_one_threshold():
    # Scores 2, 1, 1, 0 with anomalies at 2 and at one of the 1s: recall 1/2 at precision 1, then
    # recall 1 at precision 2/3, whichever order the tie is listed in.
    labels = LABELS[LABELS["entity_id"].isin([1, 3])]
    for ids in ([1, 6, 3, 7], [1, 3, 6, 7]):
        scores = scores_frame({"zscore": ([2.0, 1.0, 1.0, 0.0], [1, 0, 0, 0])}, ids=ids)

        got = row(evaluate_detections(scores, labels), "zscore", ALL)

        assert got["pr_auc"] == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 3)


def test_pr_auc_equals_scikit_learns_average_precision_on_a_random_case_with_ties():
    rng = np.random.default_rng(3)
    ids = np.arange(300, dtype=np.int64)
    values = np.round(rng.normal(size=ids.size), 1)  # coarse rounding makes many ties
    kinds = rng.choice([BURST, FAILED, "normal"], size=ids.size, p=[0.1, 0.1, 0.8])
    labelled = kinds != "normal"
    labels = pd.DataFrame(
        {
            "entity_type": ENTITY_ACTIVITY,
            "entity_id": ids[labelled],
            "anomaly_kind": kinds[labelled],
            "episode_id": [f"e{i}" for i in ids[labelled]],
        }
    )
    scores = scores_frame({"zscore": (values + labelled, np.zeros(ids.size, dtype=int))}, ids=ids)

    evaluation = evaluate_detections(scores, labels)

    shifted = values + labelled
    assert row(evaluation, "zscore", ALL)["pr_auc"] == pytest.approx(average_precision_score(labelled, shifted))
    for kind in (BURST, FAILED):
        evaluated = (kinds == kind) | ~labelled
        expected = average_precision_score(kinds[evaluated] == kind, shifted[evaluated])
        assert row(evaluation, "zscore", kind)["pr_auc"] == pytest.approx(expected)


def test_infinite_scores_rank_as_most_and_least_anomalous():
    scores = scores_frame({"zscore": ([math.inf, 1.0, 0.5, -math.inf], [1, 0, 0, 0])}, ids=[1, 6, 2, 7])
    labels = LABELS[LABELS["entity_id"].isin([1, 2])]

    got = row(evaluate_detections(scores, labels), "zscore", ALL)

    assert got["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)


def test_integer_flags_give_the_same_evaluation_as_boolean_flags():
    boolean = two_detector_scores()
    integer = boolean.assign(is_anomaly=boolean["is_anomaly"].astype(np.int64))

    pd.testing.assert_frame_equal(evaluate_detections(integer, LABELS), evaluate_detections(boolean, LABELS))


# --- Shape -------------------------------------------------------------------------------------------


def test_rows_are_all_then_each_labelled_kind_per_detector_with_the_documented_columns():
    evaluation = evaluate_detections(two_detector_scores(), LABELS)

    assert list(evaluation.columns) == list(EVALUATION_COLUMNS)
    assert list(zip(evaluation["detector"], evaluation["anomaly_kind"], strict=True)) == [
        ("isolation_forest", ALL),
        ("isolation_forest", BURST),
        ("isolation_forest", FAILED),
        ("zscore", ALL),
        ("zscore", BURST),
        ("zscore", FAILED),
    ]
    assert evaluation["n_rows"].dtype == np.int64
    assert evaluation["precision"].dtype == np.float64
    assert pd.api.types.is_string_dtype(evaluation["anomaly_kind"].dtype)


def test_orders_and_activities_are_evaluated_separately_with_their_own_kinds():
    # Abnormal order 100 and its purchase activity 6 share one episode; order 101 is abnormally low.
    labels = pd.DataFrame(
        {
            "entity_type": [ENTITY_ORDER, ENTITY_ORDER, ENTITY_ACTIVITY],
            "entity_id": np.array([100, 101, 6], dtype=np.int64),
            "anomaly_kind": [ANOMALY_KIND_HIGH_TOTAL, ANOMALY_KIND_LOW_TOTAL, ANOMALY_KIND_HIGH_TOTAL],
            "episode_id": ["d:high:1", "d:low:1", "d:high:1"],
        }
    )
    scores = pd.concat(
        [
            scores_frame(
                {"zscore": ([5.0, 0.4, 0.0, 0.5], [1, 0, 0, 0])}, ids=[100, 101, 102, 103], entity_type=ENTITY_ORDER
            ),
            scores_frame({"zscore": ([3.0, 1.0, 0.0], [1, 1, 0])}, ids=[6, 7, 8]),
        ],
        ignore_index=True,
    )

    evaluation = evaluate_detections(scores, labels)

    order_kinds = evaluation.loc[evaluation["entity_type"] == ENTITY_ORDER, "anomaly_kind"].tolist()
    activity_kinds = evaluation.loc[evaluation["entity_type"] == ENTITY_ACTIVITY, "anomaly_kind"].tolist()
    assert order_kinds == [ALL, ANOMALY_KIND_HIGH_TOTAL, ANOMALY_KIND_LOW_TOTAL]
    assert activity_kinds == [ALL, ANOMALY_KIND_HIGH_TOTAL]
    orders_all = row(evaluation, "zscore", ALL, ENTITY_ORDER)
    assert (orders_all["n_rows"], orders_all["true_positives"], orders_all["false_negatives"]) == (4, 1, 1)
    assert orders_all["recall"] == pytest.approx(1 / 2)
    assert row(evaluation, "zscore", ANOMALY_KIND_LOW_TOTAL, ENTITY_ORDER)["pr_auc"] == pytest.approx(1 / 2)
    purchases = row(evaluation, "zscore", ANOMALY_KIND_HIGH_TOTAL, ENTITY_ACTIVITY)
    assert (purchases["n_rows"], purchases["precision"], purchases["normal_flag_rate"]) == (3, 1 / 2, 1 / 2)


def test_simulated_labels_evaluate_without_reshaping():
    settings = SimulationSettings(
        seed=7, num_categories=3, num_products=20, num_customers=50, orders_per_day=60,
        activities_per_day=600, order_anomaly_rate=0.1, burst_rate=0.05, failed_login_rate=0.05,
        anomaly_kinds=(ANOMALY_KIND_HIGH_TOTAL, ANOMALY_KIND_LOW_TOTAL, BURST, FAILED),
    )  # fmt: skip
    day = simulate_day(settings, dt.date(2026, 1, 5), simulate_catalog(settings))
    labels = day.simulation_labels
    activity_ids = day.user_activities["id"].to_numpy(dtype=np.int64)
    labelled = np.isin(activity_ids, labels.loc[labels["entity_type"] == ENTITY_ACTIVITY, "entity_id"])
    # An oracle: scores and flags equal the truth.
    scores = scores_frame({"oracle": (labelled.astype(float), labelled)}, ids=activity_ids)

    evaluation = evaluate_detections(scores, labels[labels["entity_type"] == ENTITY_ACTIVITY])

    assert set(evaluation["anomaly_kind"]) == {ALL, ANOMALY_KIND_HIGH_TOTAL, ANOMALY_KIND_LOW_TOTAL, BURST, FAILED}
    assert (evaluation["recall"] == 1.0).all()
    assert (evaluation["precision"] == 1.0).all()
    assert (evaluation["episode_recall"] == 1.0).all()
    assert (evaluation["pr_auc"] == 1.0).all()
    assert (
        row(evaluation, "oracle", ALL)["n_episodes"]
        == labels.loc[labels["entity_type"] == ENTITY_ACTIVITY, "episode_id"].nunique()
    )


def test_inputs_are_not_modified():
    scores, labels = two_detector_scores(), LABELS.copy()

    evaluate_detections(scores, labels)

    pd.testing.assert_frame_equal(scores, two_detector_scores())
    pd.testing.assert_frame_equal(labels, LABELS)


# --- Undefined values ----------------------------------------------------------------------------------


def test_without_labels_every_metric_is_undefined_and_the_evaluation_reads_not_evaluated():
    scores = two_detector_scores()

    evaluation = evaluate_detections(scores, LABELS.iloc[0:0])

    assert evaluation["anomaly_kind"].tolist() == [ALL, ALL]
    forest = row(evaluation, "isolation_forest", ALL)
    assert forest["n_positive"] == 0
    assert forest["n_flagged"] == 2  # the flags are counted, but nothing says they are wrong
    for metric in ("precision", "recall", "f1", "pr_auc", "episode_recall", "normal_flag_rate"):
        assert math.isnan(forest[metric]), metric
    assert not is_evaluated(evaluation)
    assert headline_metrics(evaluation) == {}


def test_with_labels_the_evaluation_is_evaluated_and_a_flag_on_a_normal_row_is_a_false_positive():
    scores = scores_frame({"zscore": ([1.0] * 10, [0] * 9 + [1])})

    evaluation = evaluate_detections(scores, LABELS)

    assert is_evaluated(evaluation)
    assert row(evaluation, "zscore", ALL)["precision"] == 0.0


def test_a_detector_that_flags_nothing_has_undefined_precision_and_zero_recall():
    scores = scores_frame({"zscore": (ZSCORE_SCORES, [0] * 10)})

    got = row(evaluate_detections(scores, LABELS), "zscore", BURST)

    assert got["n_flagged"] == 0
    assert math.isnan(got["precision"])
    assert got["recall"] == 0.0
    assert got["f1"] == 0.0
    assert got["episode_recall"] == 0.0
    assert got["normal_flag_rate"] == 0.0


def test_without_normal_rows_the_normal_flag_rate_is_undefined_and_pr_auc_is_one():
    scores = scores_frame({"zscore": ([0.1, 0.5, 0.9], [0, 1, 0])}, ids=[1, 2, 3])

    got = row(evaluate_detections(scores, LABELS), "zscore", BURST)

    assert got["n_normal"] == 0
    assert math.isnan(got["normal_flag_rate"])
    assert got["pr_auc"] == 1.0
    assert got["precision"] == 1.0


def test_empty_scores_give_an_empty_frame_with_the_columns():
    empty = two_detector_scores().iloc[0:0]

    evaluation = evaluate_detections(empty, LABELS)

    assert evaluation.empty
    assert list(evaluation.columns) == list(EVALUATION_COLUMNS)
    assert evaluation["true_positives"].dtype == np.int64
    assert evaluation["recall"].dtype == np.float64


def test_labels_without_scores_are_counted_per_detector_and_logged(caplog):
    # zscore did not score burst row 3 nor the failed-login rows 4 and 5.
    scores = scores_frame({"zscore": ([9.0, 8.0, 1.0, 0.0], [1, 0, 0, 1])}, ids=[1, 2, 6, 7])

    with caplog.at_level(logging.WARNING, logger="anomalens_dagster.core.evaluation"):
        evaluation = evaluate_detections(scores, LABELS)

    burst, failed = row(evaluation, "zscore", BURST), row(evaluation, "zscore", FAILED)
    assert (burst["n_positive"], burst["n_unscored_positive"], burst["recall"]) == (2, 1, 1 / 2)
    assert (failed["n_positive"], failed["n_unscored_positive"]) == (0, 2)
    assert math.isnan(failed["recall"])
    assert failed["n_episodes"] == 0  # its only episode has no scored row
    assert row(evaluation, "zscore", ALL)["n_unscored_positive"] == 3
    assert "3 labelled activity row(s) have no score from detector 'zscore'" in caplog.text


def test_labels_of_an_entity_type_nobody_scored_are_logged(caplog):
    order_label = pd.DataFrame(
        {
            "entity_type": [ENTITY_ORDER],
            "entity_id": [100],
            "anomaly_kind": [ANOMALY_KIND_HIGH_TOTAL],
            "episode_id": ["o"],
        }
    )
    labels = pd.concat([LABELS, order_label], ignore_index=True)

    with caplog.at_level(logging.WARNING, logger="anomalens_dagster.core.evaluation"):
        evaluation = evaluate_detections(two_detector_scores(), labels)

    assert set(evaluation["entity_type"]) == {ENTITY_ACTIVITY}
    assert "labels list 1 order row(s) but no detector scored any order" in caplog.text


# --- Validation ----------------------------------------------------------------------------------------


def test_missing_score_columns_are_named():
    with pytest.raises(ValueError, match=r"scores is missing column\(s\) score, is_anomaly"):
        evaluate_detections(two_detector_scores().drop(columns=["score", "is_anomaly"]), LABELS)


def test_missing_label_columns_are_named():
    with pytest.raises(ValueError, match=r"labels is missing column\(s\) episode_id"):
        evaluate_detections(two_detector_scores(), LABELS.drop(columns=["episode_id"]))


def test_an_entity_scored_twice_by_one_detector_is_rejected():
    scores = two_detector_scores()
    doubled = pd.concat([scores, scores.iloc[[3]]], ignore_index=True)

    expected = r"duplicated \(entity_type, entity_id, detector\).*\('activity', 4, 'zscore'\)"
    with pytest.raises(ValueError, match=expected):
        evaluate_detections(doubled, LABELS)


def test_an_entity_labelled_twice_is_rejected():
    labels = pd.concat([LABELS, LABELS.iloc[[0]]], ignore_index=True)

    with pytest.raises(ValueError, match=r"labels list 1 activity entity id\(s\) more than once \(e\.g\. 1\)"):
        evaluate_detections(two_detector_scores(), labels)


def test_nan_scores_are_rejected_with_the_detector_named():
    scores = two_detector_scores()
    scores.loc[scores["detector"] == "isolation_forest", "score"] = np.nan

    with pytest.raises(ValueError, match=r"scores.score has NaN values \(isolation_forest: 10\)"):
        evaluate_detections(scores, LABELS)


def test_flags_other_than_zero_and_one_are_rejected():
    scores = two_detector_scores().assign(is_anomaly=2)

    with pytest.raises(ValueError, match=r"scores.is_anomaly must be bool or 0/1"):
        evaluate_detections(scores, LABELS)


def test_an_unknown_entity_type_is_rejected():
    scores = two_detector_scores().assign(entity_type="orders")

    with pytest.raises(ValueError, match=r"scores.entity_type has unknown value\(s\) \['orders'\]"):
        evaluate_detections(scores, LABELS)


def test_non_integer_entity_ids_are_rejected():
    labels = LABELS.assign(entity_id=LABELS["entity_id"].astype(float))

    with pytest.raises(ValueError, match=r"labels.entity_id must be integers, got dtype float64"):
        evaluate_detections(two_detector_scores(), labels)


# --- Headline metrics ----------------------------------------------------------------------------------


def test_headline_metrics_flatten_the_evaluation_into_plottable_numbers():
    metrics = headline_metrics(evaluate_detections(two_detector_scores(), LABELS))

    assert metrics["activity/zscore/f1"] == pytest.approx(2 / 3)
    assert metrics["activity/zscore/normal_flag_rate"] == pytest.approx(1 / 5)
    assert metrics["activity/isolation_forest/episode_recall"] == pytest.approx(1 / 2)
    assert metrics["activity/isolation_forest/episode_recall/activity_burst"] == 0.0
    assert metrics["activity/zscore/recall/failed_login_run"] == 1.0
    assert "activity/zscore/normal_flag_rate/activity_burst" not in metrics  # published once per detector
    assert all(type(value) is float for value in metrics.values())


def test_headline_metrics_leave_out_undefined_values():
    scores = scores_frame({"zscore": (ZSCORE_SCORES, [0] * 10)})

    metrics = headline_metrics(evaluate_detections(scores, LABELS))

    assert "activity/zscore/precision" not in metrics
    assert metrics["activity/zscore/recall"] == 0.0
    assert not any(math.isnan(value) for value in metrics.values())


def test_headline_metrics_of_an_empty_evaluation_are_empty():
    assert headline_metrics(evaluate_detections(two_detector_scores().iloc[0:0], LABELS)) == {}


def test_headline_metrics_reject_a_frame_that_is_not_an_evaluation():
    with pytest.raises(ValueError, match=r"evaluation is missing column\(s\) .*pr_auc"):
        headline_metrics(pd.DataFrame({"entity_type": [], "detector": [], "anomaly_kind": [], "f1": []}))


# --- Splits --------------------------------------------------------------------------------------


def test_each_split_is_evaluated_on_its_own_rows_and_labels_and_every_row_stays_as_before():
    scores = scores_frame({"zscore": (ZSCORE_SCORES, ZSCORE_FLAGS)})
    # The failed-login episode (4, 5) and rows 8-10 were scored after the models' training window.
    scores["out_of_time"] = scores["entity_id"].isin([4, 5, 8, 9, 10])

    evaluation = evaluate_splits(scores, LABELS)

    assert list(evaluation.columns) == [*EVALUATION_COLUMNS, "split"]
    assert evaluation["split"].unique().tolist() == ["all", "in_sample", "out_of_time"]
    every_row = evaluation[evaluation["split"] == "all"].drop(columns="split").reset_index(drop=True)
    pd.testing.assert_frame_equal(every_row, evaluate_detections(scores.drop(columns="out_of_time"), LABELS))
    pooled = evaluation[evaluation["anomaly_kind"] == ALL].set_index("split")
    # Out of time: 4, 5 flagged (both failed logins), 8-10 normal and unflagged.
    assert pooled.loc["out_of_time", ["true_positives", "false_positives", "n_normal"]].tolist() == [2, 0, 3]
    assert pooled.loc["out_of_time", "n_unscored_positive"] == 0
    assert pooled.loc["in_sample", ["true_positives", "false_positives", "n_positive"]].tolist() == [1, 1, 3]
    assert set(evaluation.loc[evaluation["split"] == "out_of_time", "anomaly_kind"]) == {ALL, FAILED}


def test_without_out_of_time_rows_there_is_no_out_of_time_split_and_the_headline_is_every_row():
    scores = scores_frame({"zscore": (ZSCORE_SCORES, ZSCORE_FLAGS)}).assign(out_of_time=False)

    evaluation = evaluate_splits(scores, LABELS)

    assert evaluation["split"].unique().tolist() == ["all", "in_sample"]
    assert headline_split(evaluation["split"].unique()) == "all"
    assert headline_split(["all", "in_sample", "out_of_time"]) == "out_of_time"


def test_a_split_marker_that_is_not_boolean_is_refused():
    scores = scores_frame({"zscore": (ZSCORE_SCORES, ZSCORE_FLAGS)}).assign(out_of_time="yes")

    with pytest.raises(ValueError, match="out_of_time must be bool"):
        evaluate_splits(scores, LABELS)


def test_an_episode_is_caught_when_at_least_a_fifth_of_its_rows_are_flagged():
    labels = pd.DataFrame(
        {
            "entity_type": ENTITY_ACTIVITY,
            "entity_id": np.arange(1, 11, dtype=np.int64),
            # Episode a: 5 rows, 1 flagged (20 %: caught); episode b: 5 rows, none flagged.
            "anomaly_kind": [BURST] * 10,
            "episode_id": ["a"] * 5 + ["b"] * 5,
        }
    )
    flags = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    scores = scores_frame({"zscore": ([float(f) for f in flags], flags)})

    caught = episodes_caught(scores, labels).set_index("detector")

    assert caught.loc["zscore", ["n_episodes", "n_episodes_caught"]].tolist() == [2, 1]
    assert episodes_caught(scores, labels, min_share=0.21).loc[0, "n_episodes_caught"] == 0
