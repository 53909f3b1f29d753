"""Leave-one-kind-out: how well the detectors catch a kind of anomaly they never trained on.

Usage: .venv/bin/python -m benchmarks.leave_one_kind_out [--seed 31337] [--days 7] [--holdout 2] [--kinds K ...]

For each kind in `constants.ANOMALY_KINDS` (or --kinds), a store of its own (same seed, a seed no
other measurement uses): the simulator writes every day, then the kind's rows are deleted from the
training days (the days before the last --holdout), so the models are trained and their tail
calibrated without ever seeing it, while the held-out days keep it; the detectors are trained with
`training.holdout_days` = --holdout and score every day through the real assets. Deleting the
kind's labelled rows (and their order items) from a simulated day is the same day simulated
without the kind: every other row of the day is drawn independently of the injected episodes.

Printed per left-out kind, out of time (the kind exists nowhere else): episodes, episode recall
(an episode is caught when at least 20 % of its rows are flagged), row recall and the share of
normal rows flagged, per entity and per detector and the ensemble; beside them the former ensemble
(median of the capped score / threshold ratios) on the same scores, and the ensemble on the rows
exactly one detector flagged (`ensemble_on_rows_one_detector_flags`: its recall is how often a
lone detector is heard). Then, for the kinds that did stay in training, the ensemble's in-sample
and out-of-time figures side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from anomalens_dagster.constants import (
    ANOMALY_KINDS,
    DETECTOR_ENSEMBLE,
    DETECTOR_NAMES,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    EVALUATION_ALL_KINDS,
    ORDER_ITEMS,
    ORDERS,
    SIMULATION_LABELS,
    STORE_SCHEMA,
    USER_ACTIVITIES,
)
from benchmarks.common import print_table

LOKO_SEED = 31337  # used by no other measurement, test or README figure
FIRST_DAY = dt.date(2026, 6, 1)
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclasses.dataclass(frozen=True)
class HeldOutStore:
    """A built store: its DuckDB file, its days and the first held-out (out-of-time) day."""

    path: Path
    first_day: dt.date
    last_day: dt.date
    first_held_out_day: dt.date


def build_held_out_store(
    folder: Path,
    simulation: dict,
    days: int,
    holdout_days: int,
    left_out_kinds: Sequence[str],
    first_day: dt.date = FIRST_DAY,
    detection: dict | None = None,
) -> HeldOutStore:
    """Simulate `days` days, delete `left_out_kinds` from the training days, compute features, train with
    `holdout_days` held out, and score every day; the store lives in `folder`."""
    import dagster as dg

    from anomalens_dagster.cli.common import run_config_for
    from anomalens_dagster.constants import FEATURES_GROUP, MODELS_GROUP, STORE_GROUP
    from anomalens_dagster.definitions import defs
    from anomalens_dagster.resources import AnomaLensDuckDB
    from anomalens_dagster.settings import SettingsFile

    if not 0 < holdout_days < days:
        raise ValueError(f"holdout_days must be between 1 and days - 1 ({days - 1}), got {holdout_days}")
    unknown = sorted(set(left_out_kinds) - set(ANOMALY_KINDS))
    if unknown:
        raise ValueError(f"unknown anomaly kinds {unknown}; known kinds: {list(ANOMALY_KINDS)}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "anomalens.duckdb"
    settings_path = folder / "settings.yaml"
    settings = {"simulation": simulation, "training": {"holdout_days": holdout_days}}
    if detection:
        settings["detection"] = detection
    settings_path.write_text(yaml.safe_dump(settings))
    # The code location's resources (the landing folder's among them), with this store's file and settings.
    resources = {
        **defs.resources,
        "duckdb": AnomaLensDuckDB(database=str(path)),
        "settings": SettingsFile(path=str(settings_path)),
    }
    last_day = first_day + dt.timedelta(days=days - 1)
    first_held_out = last_day - dt.timedelta(days=holdout_days - 1)
    tags = {RANGE_START_TAG: first_day.isoformat(), RANGE_END_TAG: last_day.isoformat()}
    assets = list(defs.assets)

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    def materialise(selection: dg.AssetSelection, run_config: dict = quiet, **kwargs) -> None:
        dg.materialize(assets, selection=selection, resources=resources, run_config=run_config, **kwargs)

    store_config = {**run_config_for({"simulation": simulation}), **quiet}
    materialise(dg.AssetSelection.groups(STORE_GROUP), run_config=store_config, tags=tags)
    with resources["duckdb"].get_connection() as conn:
        delete_kinds(conn, left_out_kinds, before=dt.datetime.combine(first_held_out, dt.time()))
    materialise(dg.AssetSelection.groups(FEATURES_GROUP), tags=tags)
    materialise(dg.AssetSelection.groups(MODELS_GROUP))
    materialise(dg.AssetSelection.assets("activity_scores", "order_scores"), tags=tags)
    return HeldOutStore(path, first_day, last_day, first_held_out)


def delete_kinds(conn, kinds: Sequence[str], before: dt.datetime) -> None:
    """Delete the labelled rows of `kinds` (activities, orders and their items, labels) dated before `before`."""
    if not kinds:
        return
    labelled = (
        f"SELECT entity_id FROM {STORE_SCHEMA}.{SIMULATION_LABELS} "
        "WHERE entity_type = $entity_type AND list_contains($kinds, anomaly_kind)"
    )
    activities = {"entity_type": ENTITY_ACTIVITY, "kinds": list(kinds), "before": before}
    orders = {**activities, "entity_type": ENTITY_ORDER}
    conn.execute("BEGIN TRANSACTION")
    conn.execute(
        f"DELETE FROM {STORE_SCHEMA}.{USER_ACTIVITIES} WHERE timestamp < $before AND id IN ({labelled})", activities
    )
    conn.execute(
        f"DELETE FROM {STORE_SCHEMA}.{ORDER_ITEMS} WHERE order_id IN "
        f"(SELECT id FROM {STORE_SCHEMA}.{ORDERS} WHERE created_at < $before AND id IN ({labelled}))",
        orders,
    )
    conn.execute(f"DELETE FROM {STORE_SCHEMA}.{ORDERS} WHERE created_at < $before AND id IN ({labelled})", orders)
    conn.execute(
        f"DELETE FROM {STORE_SCHEMA}.{SIMULATION_LABELS} AS l WHERE list_contains($kinds, l.anomaly_kind) AND NOT EXISTS "
        f"(SELECT 1 FROM {STORE_SCHEMA}.{USER_ACTIVITIES} AS a WHERE l.entity_type = '{ENTITY_ACTIVITY}' AND a.id = l.entity_id) "
        f"AND NOT EXISTS (SELECT 1 FROM {STORE_SCHEMA}.{ORDERS} AS o WHERE l.entity_type = '{ENTITY_ORDER}' AND o.id = l.entity_id)",
        {"kinds": list(kinds)},
    )
    conn.execute("COMMIT")


@dataclasses.dataclass(frozen=True)
class StoreQuality:
    """What a held-out store's scores say: the evaluation table with splits, and episodes caught at 20 %."""

    evaluation: pd.DataFrame  # core.evaluation.evaluate_splits
    episodes: pd.DataFrame  # core.evaluation.episodes_caught, with a split column


def measure(store: HeldOutStore) -> StoreQuality:
    """Evaluate every scored row of the store against its labels, in-sample and out of time."""
    import duckdb

    from anomalens_dagster.assets.reports import LABELS_SQL, SCORES_SQL
    from anomalens_dagster.core.evaluation import (
        SPLIT_ALL,
        SPLIT_IN_SAMPLE,
        SPLIT_OUT_OF_TIME,
        episodes_caught,
        evaluate_splits,
    )

    with duckdb.connect(str(store.path), read_only=True) as conn:
        scores, labels = conn.execute(SCORES_SQL).df(), conn.execute(LABELS_SQL).df()
        thresholds = conn.execute(THRESHOLDS_SQL).df()
    scores = pd.concat([scores, former_ensemble(scores, thresholds), single_detector_rows(scores)], ignore_index=True)
    evaluation = evaluate_splits(scores, labels)
    episodes = []
    for split, rows in (
        (SPLIT_ALL, pd.Series(True, index=scores.index)),
        (SPLIT_IN_SAMPLE, ~scores["out_of_time"]),
        (SPLIT_OUT_OF_TIME, scores["out_of_time"]),
    ):
        if rows.any():
            episodes.append(episodes_caught(scores[rows], labels).assign(split=split))
    return StoreQuality(evaluation, pd.concat(episodes, ignore_index=True))


# The ensemble before this one, for comparison: the median of the four score / threshold ratios, each
# capped at 4, flagged above 1 (about half the detectors past their thresholds).
FORMER_ENSEMBLE = "median_ratio_before"
FORMER_RATIO_CAP = 4.0
# The new ensemble's flags restricted to rows exactly one detector flagged: how often one detector is heard.
SINGLE_DETECTOR = "ensemble_on_rows_one_detector_flags"
THRESHOLDS_SQL = """
SELECT entity_type, detector, version AS model_version, CAST(metrics->>'threshold' AS DOUBLE) AS threshold
FROM ml.model_registry
"""


def former_ensemble(scores: pd.DataFrame, thresholds: pd.DataFrame) -> pd.DataFrame:
    """The former ensemble's rows (detector `FORMER_ENSEMBLE`) computed from the detectors' stored scores."""
    parts = scores[scores["detector"].isin(DETECTOR_NAMES)].merge(
        thresholds.drop(columns="model_version").drop_duplicates(["entity_type", "detector"], keep="last"),
        on=["entity_type", "detector"],
    )
    parts = parts.assign(ratio=(parts["score"] / parts["threshold"]).clip(upper=FORMER_RATIO_CAP))
    median = parts.groupby(["entity_type", "entity_id", "out_of_time"], as_index=False)["ratio"].median()
    return median.rename(columns={"ratio": "score"}).assign(detector=FORMER_ENSEMBLE, is_anomaly=median["ratio"] > 1.0)


def single_detector_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The ensemble's rows for the entities exactly one of the four detectors flagged (detector `SINGLE_DETECTOR`)."""
    detectors = scores[scores["detector"].isin(DETECTOR_NAMES)]
    flagged_by = detectors.groupby(["entity_type", "entity_id"])["is_anomaly"].sum()
    single = flagged_by[flagged_by == 1].index
    ensemble = scores[scores["detector"] == DETECTOR_ENSEMBLE].set_index(["entity_type", "entity_id"])
    return ensemble[ensemble.index.isin(single)].reset_index().assign(detector=SINGLE_DETECTOR)


def figures(quality: StoreQuality, split: str, kind: str) -> pd.DataFrame:
    """Per entity type and detector: episodes, episode recall (20 %), row recall, normal-row flag rate."""
    evaluation = quality.evaluation
    rows = evaluation[(evaluation["split"] == split) & (evaluation["anomaly_kind"] == kind)]
    pooled = evaluation[(evaluation["split"] == split) & (evaluation["anomaly_kind"] == EVALUATION_ALL_KINDS)]
    episodes = quality.episodes[(quality.episodes["split"] == split) & (quality.episodes["anomaly_kind"] == kind)]
    merged = rows[["entity_type", "detector", "n_positive", "recall", "f1"]].merge(
        episodes[["entity_type", "detector", "n_episodes", "episode_recall"]],
        on=["entity_type", "detector"],
        how="left",
    )
    return merged.merge(pooled[["entity_type", "detector", "normal_flag_rate"]], on=["entity_type", "detector"])


DETECTOR_ORDER = {
    name: rank for rank, name in enumerate((DETECTOR_ENSEMBLE, FORMER_ENSEMBLE, SINGLE_DETECTOR, *DETECTOR_NAMES))
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=LOKO_SEED)
    parser.add_argument("--days", type=int, default=7, help="Days simulated, held-out ones included.")
    parser.add_argument("--holdout", type=int, default=2, help="Last days kept out of training and scored out of time.")
    parser.add_argument("--kinds", nargs="*", default=list(ANOMALY_KINDS), help="Kinds to leave out, one at a time.")
    parser.add_argument("--workdir", default=None, help="Keep each kind's store in DIR/<kind> (default: temporary).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dagster").setLevel(logging.WARNING)
    simulation = {"seed": args.seed}
    left_out_rows, in_training_rows = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in args.kinds:
            folder = Path(args.workdir or scratch) / kind
            store = build_held_out_store(folder, simulation, args.days, args.holdout, [kind])
            quality = measure(store)
            left_out = figures(quality, "out_of_time", kind)
            for row in left_out.sort_values(["entity_type", "detector"], key=_detector_rank).itertuples():
                left_out_rows.append(
                    (
                        kind,
                        row.entity_type,
                        row.detector,
                        _count(row.n_episodes),
                        row.episode_recall,
                        row.recall,
                        f"{row.normal_flag_rate:.3%}",
                    )
                )
            for other in sorted(set(quality.evaluation["anomaly_kind"]) - {kind, EVALUATION_ALL_KINDS}):
                for split in ("in_sample", "out_of_time"):
                    seen = figures(quality, split, other)
                    for row in seen[seen["detector"] == DETECTOR_ENSEMBLE].itertuples():
                        in_training_rows.append(
                            (
                                kind,
                                other,
                                row.entity_type,
                                split,
                                _count(row.n_episodes),
                                row.episode_recall,
                                row.recall,
                                row.f1,
                                f"{row.normal_flag_rate:.3%}",
                            )
                        )
            print(f"done: {kind}", flush=True)
    print(
        f"\nLeave-one-kind-out, seed {args.seed}: {args.days} days from {FIRST_DAY}, the last {args.holdout} held out; "
        "the left-out kind deleted from the training days.\nLeft-out kind, out of time (episode caught when >= 20 % of "
        "its rows are flagged; normal rows flagged: all kinds' normal rows of the held-out days):\n"
    )
    print_table(
        ["left-out kind", "entity", "detector", "episodes", "episode recall", "row recall", "normal rows flagged"],
        left_out_rows,
    )
    print("\nThe kinds that stayed in training, ensemble, in-sample and out of time:\n")
    print_table(
        [
            "left-out kind",
            "kind",
            "entity",
            "split",
            "episodes",
            "episode recall",
            "row recall",
            "F1",
            "normal flagged",
        ],
        in_training_rows,
    )


def _detector_rank(column: pd.Series) -> pd.Series:
    return column.map(DETECTOR_ORDER).fillna(len(DETECTOR_ORDER)) if column.name == "detector" else column


def _count(value: float) -> int | str:
    return int(value) if pd.notna(value) else "-"


if __name__ == "__main__":
    main()
