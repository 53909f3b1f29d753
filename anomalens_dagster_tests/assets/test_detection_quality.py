"""The quality floor: on a store no figure was tuned on, with kinds of anomaly left out of training,
the ensemble still catches them out of time, and rarely flags a normal row. A regression turns CI red."""

import logging

import pytest

from anomalens_dagster.constants import ANOMALY_KINDS, DETECTOR_ENSEMBLE, ENTITY_TYPES, EVALUATION_ALL_KINDS
from anomalens_dagster.core.evaluation import SPLIT_OUT_OF_TIME
from benchmarks.leave_one_kind_out import build_held_out_store, measure

logger = logging.getLogger(__name__)

# A seed no other test, benchmark or README figure uses; a small store (five days, the last two held out).
QUALITY_FLOOR_SIMULATION = {
    "seed": 2718,
    "num_categories": 6,
    "num_products": 150,
    "num_customers": 1_000,
    "orders_per_day": 500,
    "activities_per_day": 5_000,
}
DAYS, HOLDOUT = 5, 2
# Every second kind in alphabetical order stays out of the training days: both entity types' kinds are
# among them, whatever kinds the simulator has, and the others stay in as the anomalies a real window holds.
LEFT_OUT_KINDS = sorted(ANOMALY_KINDS)[::2]

MIN_F1 = 0.90
MIN_EPISODE_RECALL = 0.90
MAX_NORMAL_FLAG_RATE = 0.01


@pytest.mark.slow
# Issue #14's floor does not hold yet (README, "Targets of the detection issue"): on this store, out
# of time, activity F1 0.653, order 0.714, 2.0 % of normal activities flagged, and account takeover,
# card testing and scraping left out of training are never caught. Strict: once the floor holds, the
# unexpected pass fails the suite, so this marker cannot outlive the fix.
@pytest.mark.xfail(strict=True, reason="issue #14: the detection quality floor is not reached yet")
def test_out_of_time_detection_of_kinds_left_out_of_training_stays_above_the_floor(tmp_path):
    store = build_held_out_store(tmp_path, QUALITY_FLOOR_SIMULATION, DAYS, HOLDOUT, LEFT_OUT_KINDS)

    quality = measure(store)

    evaluation = quality.evaluation
    ensemble = evaluation[(evaluation["split"] == SPLIT_OUT_OF_TIME) & (evaluation["detector"] == DETECTOR_ENSEMBLE)]
    pooled = ensemble[ensemble["anomaly_kind"] == EVALUATION_ALL_KINDS].set_index("entity_type")
    episodes = quality.episodes
    left_out = episodes[
        (episodes["split"] == SPLIT_OUT_OF_TIME)
        & (episodes["detector"] == DETECTOR_ENSEMBLE)
        & episodes["anomaly_kind"].isin(LEFT_OUT_KINDS)
    ]
    caught = left_out.groupby("entity_type")[["n_episodes_caught", "n_episodes"]].sum()
    episode_recall = caught["n_episodes_caught"] / caught["n_episodes"]
    logger.warning(
        "quality floor, out of time: F1 %s, normal rows flagged %s, left-out kinds %s episode recall %s (per kind: %s)",
        pooled["f1"].round(3).to_dict(),
        pooled["normal_flag_rate"].round(5).to_dict(),
        LEFT_OUT_KINDS,
        episode_recall.round(3).to_dict(),
        left_out[["entity_type", "anomaly_kind", "n_episodes", "episode_recall"]].to_dict("records"),
    )
    assert sorted(pooled.index) == sorted(ENTITY_TYPES)
    assert (pooled["f1"] >= MIN_F1).all(), pooled["f1"].to_dict()
    assert (pooled["normal_flag_rate"] < MAX_NORMAL_FLAG_RATE).all(), pooled["normal_flag_rate"].to_dict()
    assert len(caught) and (caught["n_episodes"] >= 5).all(), caught.to_dict()
    assert (episode_recall >= MIN_EPISODE_RECALL).all(), episode_recall.to_dict()
