"""Detection quality against the simulator's ground truth: per entity type, detector and anomaly kind.

:func:`evaluate_detections` compares every detector's scores and flags with ``simulation_labels``
and returns one row per (entity type, detector, anomaly kind), plus one row per (entity type,
detector) whose ``anomaly_kind`` is ``"all"`` (``EVALUATION_ALL_KINDS``) for every kind together.
:func:`headline_metrics` flattens that table into the numbers the UI plots.

Who counts as positive
    A scored row is *labelled* when ``simulation_labels`` lists its (entity type, entity id), and
    *normal* otherwise. The ``"all"`` row takes every labelled row as positive and every normal row
    as negative. A per-kind row takes the rows of that kind as positive and the normal rows as
    negative, and leaves the rows of the other kinds out altogether: a burst detected by the
    failed-login rule is neither a true nor a false positive of ``failed_login_run``. Precision of a
    kind therefore reads "of the flags among this kind's rows and normal rows, the share on this
    kind"; the false positives (flagged normal rows) are the same on every row of a detector.

Columns (``EVALUATION_COLUMNS``, in this order)
    ``entity_type``, ``detector``, ``anomaly_kind`` (str) -- the key.
    ``n_rows`` -- rows in this evaluation: positives plus normal rows, so that
    ``true_positives + false_positives + false_negatives + true negatives == n_rows``; on the
    ``"all"`` row, every row the detector scored.
    ``n_positive`` -- scored rows of the kind; ``n_normal`` -- scored normal rows.
    ``n_flagged`` -- flagged rows among ``n_rows``.
    ``true_positives``, ``false_positives``, ``false_negatives`` -- at the detector's own flag.
    ``precision``, ``recall``, ``f1`` -- at the flag; ``f1 = 2 TP / (2 TP + FP + FN)``.
    ``pr_auc`` -- average precision of ``score`` (step-wise area under the precision-recall curve,
    scikit-learn's ``average_precision_score`` definition, ties in score forming one threshold).
    ``n_episodes``, ``n_episodes_detected``, ``episode_recall`` -- episodes of the kind with at
    least one scored row, those with at least one flagged row, and their ratio.
    ``normal_flag_rate`` -- flagged normal rows / normal rows.
    ``n_unscored_positive`` -- labelled entities of the kind that this detector did not score.
    All counts are int64, all rates float64.

NaN means "undefined", never "bad"
    ``recall``, ``f1``, ``pr_auc`` and ``episode_recall`` are NaN when there is nothing to find
    (``n_positive == 0``); ``precision`` is NaN when nothing is flagged; ``normal_flag_rate`` is NaN
    when there are no normal rows. A detector that flags nothing while anomalies exist has recall
    and F1 of 0 (it missed them) and an undefined precision. With positives but no normal rows
    ``pr_auc`` is 1.0 (every threshold is perfectly precise), as in scikit-learn.

No labels, no evaluation
    A store without simulation labels for the scored days (real data) has no ground truth: every
    flag would count as a false positive and precision read 0.000. Then ``precision`` and
    ``normal_flag_rate`` are NaN too (NULL in DuckDB), so every metric is absent, and
    :func:`is_evaluated` is False: readers say ``NOT_EVALUATED`` instead of showing numbers.

Labels without scores
    Metrics use scored rows only. A labelled entity that a detector did not score is counted in that
    detector's ``n_unscored_positive`` and logged as a warning; labels of an entity type that has no
    scores at all are only logged, since no detector exists to report them under. Episodes whose
    rows were all left unscored are left out of ``n_episodes``. Pass the labels of the scored
    period only, or the warning fires for every other day.

In-sample and out-of-time (:func:`evaluate_splits`)
    A row scored by models whose training window ended before it (``out_of_time``: a held-out day,
    ``training.holdout_days``, or a day that arrived after the last retraining) measures what
    production sees; a row inside the training window measures how well the models describe what
    they were fitted on, which flatters them. :func:`evaluate_splits` returns the table above for
    every scored row (``split`` = ``"all"``) and again for each split that has rows
    (``"in_sample"``, ``"out_of_time"``), in a ``split`` column appended to ``EVALUATION_COLUMNS``;
    labels are matched within each split, so no split reports the other's labels as unscored.
    :func:`headline_split` names the split readers headline: out of time when there is one.

Average precision is computed here rather than by calling ``average_precision_score`` once per
(detector, kind): that call sorts its input each time (0.4 s per million rows measured), whereas
sorting each detector's scores once and masking the sorted arrays per kind is linear per kind. The
tests check the result equals scikit-learn's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from anomalens_dagster.constants import ENTITY_TYPES, EVALUATION_ALL_KINDS

logger = logging.getLogger(__name__)

__all__ = [
    "EVALUATION_ALL_KINDS",
    "EVALUATION_COLUMNS",
    "EVALUATION_SPLITS",
    "HEADLINE_METRICS_ALL_KINDS",
    "HEADLINE_METRICS_PER_KIND",
    "LABEL_COLUMNS",
    "SCORE_COLUMNS",
    "evaluate_detections",
    "episodes_caught",
    "evaluate_splits",
    "headline_metrics",
    "headline_split",
]

SCORE_COLUMNS: tuple[str, ...] = ("entity_type", "entity_id", "detector", "score", "is_anomaly")
LABEL_COLUMNS: tuple[str, ...] = ("entity_type", "entity_id", "anomaly_kind", "episode_id")

_KEY_COLUMNS = ("entity_type", "detector", "anomaly_kind")
_COUNT_COLUMNS = (
    "n_rows",
    "n_positive",
    "n_normal",
    "n_flagged",
    "true_positives",
    "false_positives",
    "false_negatives",
)
_EPISODE_COUNT_COLUMNS = ("n_episodes", "n_episodes_detected")
EVALUATION_COLUMNS: tuple[str, ...] = (
    *_KEY_COLUMNS,
    *_COUNT_COLUMNS,
    "precision",
    "recall",
    "f1",
    "pr_auc",
    *_EPISODE_COUNT_COLUMNS,
    "episode_recall",
    "normal_flag_rate",
    "n_unscored_positive",
)
_EVALUATION_DTYPES: dict[str, str] = {
    **{column: "str" for column in _KEY_COLUMNS},
    **{column: "int64" for column in (*_COUNT_COLUMNS, *_EPISODE_COUNT_COLUMNS, "n_unscored_positive")},
    **{column: "float64" for column in ("precision", "recall", "f1", "pr_auc", "episode_recall", "normal_flag_rate")},
}

# Metrics :func:`headline_metrics` publishes: on the "all" row as "<entity>/<detector>/<metric>", on a
# kind's row as "<entity>/<detector>/<metric>/<kind>". The normal flag rate is the same on every
# row of a detector, so it is published once.
HEADLINE_METRICS_ALL_KINDS: tuple[str, ...] = (
    "precision",
    "recall",
    "f1",
    "pr_auc",
    "episode_recall",
    "normal_flag_rate",
)
HEADLINE_METRICS_PER_KIND: tuple[str, ...] = ("precision", "recall", "f1", "pr_auc", "episode_recall")

_NORMAL = -1  # row kind code of a normal (unlabelled) row

NOT_EVALUATED = "not evaluated: no labels for these days"

SPLIT_ALL = "all"
SPLIT_IN_SAMPLE = "in_sample"
SPLIT_OUT_OF_TIME = "out_of_time"
EVALUATION_SPLITS: tuple[str, ...] = (SPLIT_ALL, SPLIT_IN_SAMPLE, SPLIT_OUT_OF_TIME)


def evaluate_detections(scores: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1, PR-AUC, episode recall and normal flag rate per detector and kind.

    ``scores`` holds one row per (entity_type, entity_id, detector) with ``score`` (higher = more
    anomalous; +/-inf allowed, NaN not) and ``is_anomaly`` (bool or 0/1, the detector's flag).
    ``labels`` is ``simulation_labels``: one row per injected anomalous entity with its
    ``anomaly_kind`` and ``episode_id``; every entity it does not list is normal.

    Returns one row per (entity type, detector) present in ``scores`` and anomaly kind present in
    ``labels`` for that entity type, plus the ``"all"`` row, sorted by entity type, detector, then
    ``"all"`` first and the kinds alphabetically; columns and NaN conventions are in the module
    docstring. Empty ``scores`` give an empty frame with those columns.

    Raises ValueError when a column is missing, a key is missing or duplicated, an entity type is
    unknown, a score is NaN or a flag is not boolean.
    """
    _require_columns(scores, SCORE_COLUMNS, "scores")
    _require_columns(labels, LABEL_COLUMNS, "labels")
    label_table = _LabelTable.from_frame(labels)

    entity_codes, entity_types = _factorize_required(scores["entity_type"], "scores", "entity_type")
    _require_known_entity_types(entity_types, "scores")
    detector_codes, detectors = _factorize_required(scores["detector"], "scores", "detector")
    entity_ids = _integer_ids(scores["entity_id"], "scores")
    score_values = _scores_without_nan(scores, detector_codes, detectors)
    flags = _boolean_flags(scores["is_anomaly"])

    records: list[dict[str, object]] = []
    unscored: list[tuple[str, str, int]] = []
    group_codes = entity_codes * len(detectors) + detector_codes
    for entity_code, entity_type in sorted(enumerate(entity_types), key=lambda pair: pair[1]):
        truth = label_table.for_entity_type(entity_type)
        for detector_code, detector in sorted(enumerate(detectors), key=lambda pair: pair[1]):
            rows = np.flatnonzero(group_codes == entity_code * len(detectors) + detector_code)
            if rows.size == 0:
                continue
            ids = entity_ids[rows]
            _require_unique_ids(ids, entity_type, detector)
            detector_records = _evaluate_one_detector(
                entity_type, detector, ids, score_values[rows], flags[rows], truth
            )
            records.extend(detector_records)
            missed = int(detector_records[0]["n_unscored_positive"])  # the "all" row
            if missed:
                unscored.append((entity_type, detector, missed))

    _warn_about_unscored_labels(unscored, label_table, set(entity_types))
    evaluation = pd.DataFrame.from_records(records, columns=list(EVALUATION_COLUMNS))
    if labels.empty:
        evaluation[["precision", "normal_flag_rate"]] = math.nan
    return evaluation.astype(_EVALUATION_DTYPES)


def evaluate_splits(scores: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """:func:`evaluate_detections` of every row and of each split apart, with a ``split`` column.

    ``scores`` is :func:`evaluate_detections`' input plus a boolean ``out_of_time`` column (the row
    is later than the training window of the models that scored it). Rows come split by split in
    ``EVALUATION_SPLITS`` order, a split without rows left out; see the module docstring.
    """
    _require_columns(scores, (*SCORE_COLUMNS, "out_of_time"), "scores")
    if not pd.api.types.is_bool_dtype(scores["out_of_time"].dtype) or scores["out_of_time"].isna().any():
        raise ValueError(
            f"scores.out_of_time must be bool without missing values (dtype {scores['out_of_time'].dtype})"
        )
    out_of_time = scores["out_of_time"].to_numpy(dtype=bool)
    frames = []
    for split, rows in (
        (SPLIT_ALL, np.ones(len(scores), dtype=bool)),
        (SPLIT_IN_SAMPLE, ~out_of_time),
        (SPLIT_OUT_OF_TIME, out_of_time),
    ):
        if split != SPLIT_ALL and not rows.any():
            continue
        part = scores.loc[rows, list(SCORE_COLUMNS)]
        scored = part[["entity_type", "entity_id"]].drop_duplicates()
        split_labels = labels.merge(scored, on=["entity_type", "entity_id"]) if split != SPLIT_ALL else labels
        frames.append(evaluate_detections(part, split_labels).assign(split=split))
    return pd.concat(frames, ignore_index=True).astype({"split": "str"})


# An episode counts as caught when at least this share of its scored rows is flagged: one lucky row
# in a long episode is not a catch (the detection-quality targets of the README count this way).
EPISODE_CAUGHT_SHARE = 0.2


def episodes_caught(
    scores: pd.DataFrame, labels: pd.DataFrame, min_share: float = EPISODE_CAUGHT_SHARE
) -> pd.DataFrame:
    """Per entity type, detector and anomaly kind: episodes scored and those caught.

    An episode is caught by a detector when at least ``min_share`` of its rows that the detector
    scored are flagged. ``scores`` and ``labels`` are :func:`evaluate_detections`' inputs. Returns
    ``entity_type, detector, anomaly_kind, n_episodes, n_episodes_caught, episode_recall``, one row
    per combination with at least one scored labelled row.
    """
    _require_columns(scores, SCORE_COLUMNS, "scores")
    _require_columns(labels, LABEL_COLUMNS, "labels")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    labelled = scores[list(SCORE_COLUMNS)].merge(labels, on=["entity_type", "entity_id"])
    labelled = labelled.assign(flagged=_boolean_flags(labelled["is_anomaly"]).astype(np.float64))
    per_episode = labelled.groupby(["entity_type", "detector", "anomaly_kind", "episode_id"])["flagged"].mean()
    caught = (per_episode >= min_share).groupby(level=["entity_type", "detector", "anomaly_kind"])
    result = pd.DataFrame({"n_episodes": caught.size(), "n_episodes_caught": caught.sum()}).reset_index()
    result = result.astype({"n_episodes": "int64", "n_episodes_caught": "int64"})
    result["episode_recall"] = result["n_episodes_caught"] / result["n_episodes"]
    return result


def headline_split(splits: Sequence[str]) -> str:
    """The split to headline among those evaluated: out of time when there is one, else every row."""
    return SPLIT_OUT_OF_TIME if SPLIT_OUT_OF_TIME in set(splits) else SPLIT_ALL


def is_evaluated(evaluation: pd.DataFrame) -> bool:
    """Whether an :func:`evaluate_detections` frame (or the stored table) was measured against any
    label: False for an empty frame and for scores of days without simulation labels."""
    return bool((evaluation["n_positive"] + evaluation["n_unscored_positive"]).sum() > 0)


def headline_metrics(evaluation: pd.DataFrame) -> dict[str, float]:
    """Flat numeric metrics of an :func:`evaluate_detections` frame, for metadata the UI plots.

    Keys are ``"<entity_type>/<detector>/<metric>"`` for the ``"all"`` row (the metrics in
    ``HEADLINE_METRICS_ALL_KINDS``, e.g. ``"activity/ensemble/f1"``) and
    ``"<entity_type>/<detector>/<metric>/<anomaly_kind>"`` for each kind's row (the metrics in
    ``HEADLINE_METRICS_PER_KIND``, e.g. ``"activity/ensemble/episode_recall/activity_burst"``).
    Undefined (NaN) metrics are left out rather than published as a number.
    """
    _require_columns(evaluation, (*_KEY_COLUMNS, *HEADLINE_METRICS_ALL_KINDS), "evaluation")
    metrics: dict[str, float] = {}
    for row in evaluation.itertuples(index=False):  # one row per detector and kind, not per entity
        prefix = f"{row.entity_type}/{row.detector}"
        pooled = row.anomaly_kind == EVALUATION_ALL_KINDS
        for metric in HEADLINE_METRICS_ALL_KINDS if pooled else HEADLINE_METRICS_PER_KIND:
            value = float(getattr(row, metric))
            if math.isnan(value):
                continue
            key = f"{prefix}/{metric}" if pooled else f"{prefix}/{metric}/{row.anomaly_kind}"
            metrics[key] = value
    return metrics


# --- Labels --------------------------------------------------------------------------------------


class _EntityTruth:
    """The labels of one entity type, keyed by entity id, with kinds and episodes as codes."""

    def __init__(self, ids: np.ndarray, kinds: np.ndarray, kind_names: Sequence[str], episodes: np.ndarray) -> None:
        self.index = pd.Index(ids)
        self.kinds = kinds  # code into kind_names per label
        self.kind_names = list(kind_names)  # sorted
        self.episodes = episodes  # episode code per label
        self.kind_sizes = np.bincount(kinds, minlength=len(self.kind_names)).astype(np.int64)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kind code (``_NORMAL`` when unlabelled) and episode code (-1 when unlabelled) per id."""
        position = self.index.get_indexer(ids)
        labelled = position >= 0
        kinds = np.full(len(ids), _NORMAL, dtype=np.int64)
        episodes = np.full(len(ids), -1, dtype=np.int64)
        kinds[labelled] = self.kinds[position[labelled]]
        episodes[labelled] = self.episodes[position[labelled]]
        return kinds, episodes


class _LabelTable:
    """Validated labels split by entity type."""

    def __init__(self, by_entity_type: dict[str, _EntityTruth]) -> None:
        self.by_entity_type = by_entity_type

    @classmethod
    def from_frame(cls, labels: pd.DataFrame) -> _LabelTable:
        entity_codes, entity_types = _factorize_required(labels["entity_type"], "labels", "entity_type")
        _require_known_entity_types(entity_types, "labels")
        ids = _integer_ids(labels["entity_id"], "labels")
        kind_codes, kind_names = _factorize_required(labels["anomaly_kind"], "labels", "anomaly_kind")
        episode_codes, _ = _factorize_required(labels["episode_id"], "labels", "episode_id")

        by_entity_type: dict[str, _EntityTruth] = {}
        for entity_code, entity_type in enumerate(entity_types):
            mine = entity_codes == entity_code
            mine_ids = ids[mine]
            duplicated = pd.Index(mine_ids).duplicated()
            if duplicated.any():
                raise ValueError(
                    f"labels list {int(duplicated.sum())} {entity_type} entity id(s) more than once "
                    f"(e.g. {int(mine_ids[duplicated][0])}); each injected entity has exactly one "
                    "kind and episode: deduplicate the labels (were they loaded twice?)"
                )
            mine_kinds = np.asarray(kind_names, dtype=object)[kind_codes[mine]]
            local_names, local_kinds = np.unique(mine_kinds, return_inverse=True)
            by_entity_type[entity_type] = _EntityTruth(
                mine_ids, local_kinds.astype(np.int64), [str(name) for name in local_names], episode_codes[mine]
            )
        return cls(by_entity_type)

    def for_entity_type(self, entity_type: str) -> _EntityTruth:
        if entity_type in self.by_entity_type:
            return self.by_entity_type[entity_type]
        empty = np.zeros(0, dtype=np.int64)
        return _EntityTruth(empty, empty, [], empty)


def _warn_about_unscored_labels(
    unscored: list[tuple[str, str, int]], label_table: _LabelTable, scored_entity_types: set[str]
) -> None:
    for entity_type, detector, missed in unscored:
        logger.warning(
            "%d labelled %s row(s) have no score from detector %r: they are left out of its metrics "
            "and counted in n_unscored_positive (are the labels and scores from the same days?)",
            missed,
            entity_type,
            detector,
        )
    for entity_type, truth in sorted(label_table.by_entity_type.items()):
        if entity_type not in scored_entity_types:
            logger.warning(
                "labels list %d %s row(s) but no detector scored any %s: they are not evaluated",
                len(truth.index),
                entity_type,
                entity_type,
            )


# --- Metrics -------------------------------------------------------------------------------------


def _evaluate_one_detector(
    entity_type: str,
    detector: str,
    ids: np.ndarray,
    scores: np.ndarray,
    flags: np.ndarray,
    truth: _EntityTruth,
) -> list[dict[str, object]]:
    """The "all" row, then one row per labelled kind, of one detector on one entity type."""
    row_kinds, row_episodes = truth.lookup(ids)
    n_kinds = len(truth.kind_names)
    # Class 0 is normal, class k + 1 is kind k: one pass counts rows and flags per class.
    row_classes = row_kinds + 1
    rows_per_class = np.bincount(row_classes, minlength=n_kinds + 1)
    flags_per_class = np.bincount(row_classes, weights=flags, minlength=n_kinds + 1).astype(np.int64)
    n_normal, false_positives = int(rows_per_class[0]), int(flags_per_class[0])

    # Most anomalous first; one sort serves every kind. Ties need no stable order: a run of equal
    # scores enters at one threshold.
    order = np.argsort(-scores)
    sorted_scores, sorted_kinds = scores[order], row_kinds[order]
    labelled = row_kinds != _NORMAL
    episodes, detected = row_episodes[labelled], row_episodes[labelled & flags]
    episode_kinds, detected_kinds = row_kinds[labelled], row_kinds[labelled & flags]

    def record(
        kind: str, positives: int, true_positives: int, pr_auc: float, n_episodes: int, n_detected: int, n_labels: int
    ) -> dict[str, object]:
        false_negatives = positives - true_positives
        flagged = true_positives + false_positives
        return {
            "entity_type": entity_type,
            "detector": detector,
            "anomaly_kind": kind,
            "n_rows": positives + n_normal,
            "n_positive": positives,
            "n_normal": n_normal,
            "n_flagged": flagged,
            "true_positives": true_positives,
            "false_positives": false_positives,
            "false_negatives": false_negatives,
            "precision": _ratio(true_positives, flagged),
            "recall": _ratio(true_positives, positives),
            "f1": _ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives)
            if positives
            else math.nan,
            "pr_auc": pr_auc,
            "n_episodes": n_episodes,
            "n_episodes_detected": n_detected,
            "episode_recall": _ratio(n_detected, n_episodes),
            "normal_flag_rate": _ratio(false_positives, n_normal),
            "n_unscored_positive": n_labels - positives,
        }

    records = [
        record(
            EVALUATION_ALL_KINDS,
            int(rows_per_class[1:].sum()),
            int(flags_per_class[1:].sum()),
            _average_precision_sorted(sorted_scores, sorted_kinds != _NORMAL),
            np.unique(episodes).size,
            np.unique(detected).size,
            int(truth.kind_sizes.sum()),
        )
    ]
    for kind_code, kind in enumerate(truth.kind_names):
        evaluated = (sorted_kinds == kind_code) | (sorted_kinds == _NORMAL)
        records.append(
            record(
                kind,
                int(rows_per_class[kind_code + 1]),
                int(flags_per_class[kind_code + 1]),
                _average_precision_sorted(sorted_scores[evaluated], sorted_kinds[evaluated] == kind_code),
                np.unique(episodes[episode_kinds == kind_code]).size,
                np.unique(detected[detected_kinds == kind_code]).size,
                int(truth.kind_sizes[kind_code]),
            )
        )
    return records


def _average_precision_sorted(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of scores sorted in descending order; NaN without positives.

    scikit-learn's definition: sum over distinct score thresholds of (recall gained) x (precision),
    all rows tied at a score entering at the same threshold.
    """
    n_positive = int(np.count_nonzero(positive))
    if n_positive == 0:
        return math.nan
    # Last row of each run of equal scores: a threshold admits the whole run at once.
    threshold_ends = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))
    true_positives = np.cumsum(positive, dtype=np.int64)[threshold_ends]
    precision = true_positives / (threshold_ends + 1)
    recall_gained = np.diff(true_positives, prepend=0) / n_positive
    return float(np.sum(recall_gained * precision))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


# --- Validation ----------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {', '.join(missing)}; expected {', '.join(columns)} "
            f"(got {', '.join(map(str, frame.columns)) or 'no columns'})"
        )


def _factorize_required(values: pd.Series, frame_name: str, column: str) -> tuple[np.ndarray, list[str]]:
    """Codes and unique values (as str) of a key column that must not be missing."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError(f"{frame_name}.{column} has {int((codes < 0).sum())} missing value(s); every row needs one")
    return codes.astype(np.int64, copy=False), [str(value) for value in uniques]


def _require_known_entity_types(entity_types: Sequence[str], frame_name: str) -> None:
    unknown = sorted(set(entity_types) - set(ENTITY_TYPES))
    if unknown:
        raise ValueError(
            f"{frame_name}.entity_type has unknown value(s) {unknown}; expected one of {list(ENTITY_TYPES)}"
        )


def _integer_ids(values: pd.Series, frame_name: str) -> np.ndarray:
    if not pd.api.types.is_integer_dtype(values.dtype):
        raise ValueError(f"{frame_name}.entity_id must be integers, got dtype {values.dtype}")
    if values.isna().any():
        raise ValueError(f"{frame_name}.entity_id has {int(values.isna().sum())} missing value(s)")
    return values.to_numpy(dtype=np.int64)


def _require_unique_ids(ids: np.ndarray, entity_type: str, detector: str) -> None:
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        raise ValueError(
            f"scores has {int(duplicated.sum())} duplicated (entity_type, entity_id, detector) key(s), "
            f"e.g. ({entity_type!r}, {int(ids[duplicated][0])}, {detector!r}); each entity must be "
            "scored once per detector: deduplicate the scores (were they loaded twice?)"
        )


def _scores_without_nan(scores: pd.DataFrame, detector_codes: np.ndarray, detectors: list[str]) -> np.ndarray:
    column = scores["score"]
    if not pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        raise ValueError(f"scores.score must be numeric, got dtype {column.dtype}")
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    if missing.any():
        per_detector = np.bincount(detector_codes[missing], minlength=len(detectors))
        detail = ", ".join(f"{detectors[code]}: {int(count)}" for code, count in enumerate(per_detector) if count)
        raise ValueError(f"scores.score has NaN values ({detail}); a detector must score every row it returns")
    return values


def _boolean_flags(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column.dtype) and not column.isna().any():
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isin(values, (0.0, 1.0)).all():
            return values == 1.0
    raise ValueError(
        f"scores.is_anomaly must be bool or 0/1 without missing values (dtype {column.dtype}); "
        "it is the detector's flag at its threshold"
    )
