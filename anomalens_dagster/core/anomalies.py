"""Anomaly records: the flagged scores of one entity type turned into rows an analyst reads.

Pure functions for the tables the detections group keeps for people rather than for models:

- :func:`build_anomalies` -- one record per (entity, detector) hit, with the original system's
  record columns (``id, entity_type, entity_id, detection_timestamp, description, severity,
  detector_name, details, anomaly_score``) plus ``event_timestamp``, the entity's own time, by which
  a day's records are replaced. :func:`explain_flagged` builds its ``explanations`` argument.
- :func:`consolidate` -- one row per entity: which detectors fired, when, the worst severity and
  the ensemble score.
- :func:`session_context` -- the session history of suspicious activities, one JSON list per session.

Record id
    ``id`` = the first 8 bytes of ``BLAKE2b("anomalens:<entity_type>:<entity_id>:<detector>")``
    read big-endian, top bit cleared: a non-negative int64 that depends on nothing else (not the
    score, the model version nor the time), so re-running a day gives the same ids and a record of a
    re-scored entity replaces the old one. Distinct keys collide with probability ~n^2 / 2^64.

Severity (``SEVERITY_RATIO_CUTS`` in constants)
    ``ratio = score / threshold`` (the ensemble's threshold is ``ENSEMBLE_THRESHOLD`` = 1.0). A hit
    is ``High`` when ``ratio >= high``, else ``Medium`` when ``ratio >= medium``, else ``Low``; the
    cuts are inclusive. Each detector's score has its own shape, hence its own cuts (measured on a
    simulated 2-day store, 3,000 activities and 240 orders, models fitted on the same days):

    ========================  ======  =====  ==========================================================
    detector                  Medium  High   why
    ========================  ======  =====  ==========================================================
    zscore                    1.5     3.0    max |z| / z_threshold: |z| >= 4.5 resp. 9 at the default 3.
                                             Flagged normal rows: median 1.39; injected high totals 4.0.
    isolation_forest          1.05    1.15   The score is bounded by 1 and thresholds sit at 0.55-0.65,
                                             so the ratio never passes ~1.7. At a 0.6 threshold the cuts
                                             are scores of 0.63 and 0.69. Flagged normal rows 1.01-1.02,
                                             failed-login runs up to 1.11.
    dbscan                    1.25    2.0    RMS distance to the nearest core sample / eps: High is twice
                                             eps away from any dense region. Normal rows 1.06-1.27,
                                             bursts 1.24-1.60.
    autoencoder               1.5     4.0    Mean *squared* reconstruction error: the dbscan cuts on a
                                             distance scale, squared (1.25^2 ~ 1.5, 2^2 = 4).
    ensemble                  1.25    1.5    The median capped ratio, so 1.5 is e.g. the middle two
                                             detectors at 1.5 times their thresholds; or one sure
                                             detector's -log10 p / 6 (core/scoring.py): High from p 1e-9.
    ========================  ======  =====  ==========================================================

Descriptions
    Each record's ``description`` and ``details.rule`` follow the rules of
    :mod:`anomalens_dagster.core.descriptions`; emails are masked there. Explanations live in
    :mod:`anomalens_dagster.core.explanations`, consolidation and session histories in
    :mod:`anomalens_dagster.core.consolidation` (their public names are re-exported here).

Sentences are formatted per flagged row (a few percent of the rows); selecting, joining and
classifying the rows is vectorised.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from anomalens_dagster.constants import (
    DETECTOR_ENSEMBLE,
    DETECTOR_NAMES,
    ENSEMBLE_THRESHOLD,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    SEVERITY_HIGH,
    SEVERITY_LOW,
    SEVERITY_MEDIUM,
    SEVERITY_RATIO_CUTS,
)
from anomalens_dagster.core.consolidation import (
    ANOMALY_INPUT_COLUMNS,
    CONSOLIDATED_COLUMNS,
    CONSOLIDATED_DTYPES,
    SESSION_ACTIVITY_COLUMNS,
    SESSION_CONTEXT_COLUMNS,
    SESSION_CONTEXT_DTYPES,
    consolidate,
    session_context,
    with_session_context,
)
from anomalens_dagster.core.descriptions import (
    BURST_MIN_IDENTICAL_ACTIONS,
    CUSTOMER_MEDIAN_RATIO,
    FAILED_LOGIN_RUN_MIN_ATTEMPTS,
    ORDER_TOTAL_HIGH_RATIO,
    ORDER_TOTAL_LOW_RATIO,
    RULE_FAILED_LOGIN_RUN,
    RULE_IDENTICAL_ACTIONS,
    RULE_ORDER_WITHOUT_ITEMS,
    RULE_PURCHASE_TOTAL_MISMATCH,
    RULE_TOTAL_ABOVE_ITEMS,
    RULE_TOTAL_BELOW_ITEMS,
    RULE_TOTAL_VS_CUSTOMER_MEDIAN,
    RULE_UNUSUAL_ACTIVITY,
    RULE_UNUSUAL_ORDER,
    activity_rules,
    activity_sentence,
    customer_or_none,
    json_ready,
    mask_email,
    order_rules,
    order_sentence,
    text_or_none,
)
from anomalens_dagster.core.explanations import (
    SCORE_ID_COLUMNS,
    explain_flagged,
    explained_by_detector,
    score_id_column,
)
from anomalens_dagster.core.frames import empty_frame, require_columns

logger = logging.getLogger(__name__)

# Public names of the modules this one was split into, importable from here as before.
__all__ = [
    "ANOMALY_COLUMNS",
    "ANOMALY_DTYPES",
    "ANOMALY_INPUT_COLUMNS",
    "BURST_MIN_IDENTICAL_ACTIONS",
    "CONSOLIDATED_COLUMNS",
    "CONSOLIDATED_DTYPES",
    "CUSTOMER_MEDIAN_RATIO",
    "ENTITY_FACT_COLUMNS",
    "FAILED_LOGIN_RUN_MIN_ATTEMPTS",
    "ORDER_TOTAL_HIGH_RATIO",
    "ORDER_TOTAL_LOW_RATIO",
    "RULE_FAILED_LOGIN_RUN",
    "RULE_IDENTICAL_ACTIONS",
    "RULE_ORDER_WITHOUT_ITEMS",
    "RULE_PURCHASE_TOTAL_MISMATCH",
    "RULE_TOTAL_ABOVE_ITEMS",
    "RULE_TOTAL_BELOW_ITEMS",
    "RULE_TOTAL_VS_CUSTOMER_MEDIAN",
    "RULE_UNUSUAL_ACTIVITY",
    "RULE_UNUSUAL_ORDER",
    "SESSION_ACTIVITY_COLUMNS",
    "SESSION_CONTEXT_COLUMNS",
    "SESSION_CONTEXT_DTYPES",
    "SCORE_ID_COLUMNS",
    "anomaly_id",
    "build_anomalies",
    "consolidate",
    "explain_flagged",
    "mask_email",
    "session_context",
    "severity",
    "with_session_context",
]

# --- Columns -------------------------------------------------------------------------------------

ANOMALY_DTYPES: dict[str, str] = {
    "id": "int64",
    "entity_type": "str",
    "entity_id": "int64",
    "detection_timestamp": "datetime64[us]",  # naive UTC
    "description": "str",
    "severity": "str",  # one of SEVERITIES
    "detector_name": "str",
    "details": "str",  # JSON object text
    "anomaly_score": "float64",
    "event_timestamp": "datetime64[us]",  # the activity's timestamp / the order's created_at
    # Who and where, so "the High anomalies of customer 320" needs no join: NA when unknown.
    "customer_id": "Int64",  # the order's / activity's customer (NA for anonymous activities)
    "ip_address": "str",  # activities only
    "session_id": "str",  # activities only
    # The incident the entity belongs to (core/incidents.py); NA until the incidents asset groups the
    # records, and for entities only single detectors flagged.
    "incident_id": "str",
}
ANOMALY_COLUMNS: tuple[str, ...] = tuple(ANOMALY_DTYPES)

# The scores frame of `core.scoring.score_rows` names the entity's time like this (its id: SCORE_ID_COLUMNS).
SCORE_TIME_COLUMNS: dict[str, str] = {ENTITY_ACTIVITY: "timestamp", ENTITY_ORDER: "created_at"}
SCORE_COLUMNS: tuple[str, ...] = ("detector", "score", "is_anomaly", "model_version")

# Facts the descriptions are written from, one row per entity, keyed by `id`.
ACTIVITY_FACT_COLUMNS: tuple[str, ...] = (
    "id",
    "action_type",
    "customer_id",  # -1 or NA when anonymous
    "ip_address",  # from store.user_activities
    "session_id",  # from store.user_activities
    "details",  # JSON text, from store.user_activities
    "failed_logins_within_15min_ip",
    "identical_actions_within_60s_ip",
    "seconds_to_nearest_activity_ip",
    "session_action_count",
    "session_duration_seconds",
)
ORDER_FACT_COLUMNS: tuple[str, ...] = (
    "id",
    "customer_id",  # from store.orders; NA when unknown
    "total_amount",
    "item_count",
    "total_quantity",
    "items_total",
    "amount_to_items_ratio",
    "amount_to_customer_median_ratio",
)
ENTITY_FACT_COLUMNS: dict[str, tuple[str, ...]] = {
    ENTITY_ACTIVITY: ACTIVITY_FACT_COLUMNS,
    ENTITY_ORDER: ORDER_FACT_COLUMNS,
}

_DETECTOR_ORDER = {name: rank for rank, name in enumerate((*DETECTOR_NAMES, DETECTOR_ENSEMBLE))}
_ID_PREFIX = "anomalens"


# --- Public API ----------------------------------------------------------------------------------


def anomaly_id(entity_type: str, entity_id: int, detector: str) -> int:
    """The stable record id of (entity_type, entity_id, detector); see the module docstring."""
    digest = hashlib.blake2b(f"{_ID_PREFIX}:{entity_type}:{int(entity_id)}:{detector}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


def severity(detector: str, score: float, threshold: float) -> str:
    """The severity of one hit (the rule of the module docstring)."""
    cuts = _cuts_of(detector, SEVERITY_RATIO_CUTS)
    return str(_severities(np.array([score / threshold]), *cuts)[0])


def build_anomalies(
    entity_type: str,
    scores: pd.DataFrame,
    explanations: Mapping[str, pd.DataFrame],
    entities: pd.DataFrame,
    detection_timestamp: datetime,
    *,
    thresholds: Mapping[str, float],
    severity_cuts: Mapping[str, tuple[float, float]] = SEVERITY_RATIO_CUTS,
) -> pd.DataFrame:
    """One anomaly record per row of ``scores`` with ``is_anomaly`` true (columns ``ANOMALY_DTYPES``).

    Arguments
        ``scores``: ``core.scoring.score_rows`` output for ``entity_type`` -- ``activity_id`` /
        ``order_id`` (int), ``timestamp`` / ``created_at``, ``detector``, ``score``, ``is_anomaly``,
        ``model_version``. Pass every row of the day: the ensemble's ``details.detector_ratios``
        come from the component rows of each flagged entity, whether flagged or not.
        ``explanations``: per detector other than the ensemble, the ``explain`` frame of at least
        the rows it flagged, indexed by entity id (:func:`explain_flagged`). The ensemble is
        explained by its strongest component.
        ``entities``: one row per entity with at least the ``ENTITY_FACT_COLUMNS[entity_type]``
        (for activities the feature frame joined with ``ip_address``, ``session_id`` and
        ``details`` from store.user_activities; for orders the feature frame joined with
        ``customer_id`` from store.orders). Any other feature column present supplies the value
        shown next to a top feature.
        ``detection_timestamp``: when the detection ran (naive UTC, or aware and converted).
        ``thresholds``: each model's ``threshold_`` by detector name, for every detector in
        ``scores`` but the ensemble (whose threshold is ``ENSEMBLE_THRESHOLD``).
        ``severity_cuts``: (Medium, High) ratio cuts by detector, ``SEVERITY_RATIO_CUTS`` by default.

    Rows are ordered by (event_timestamp, entity_id, detector as in ``DETECTOR_NAMES`` then the
    ensemble). ``details`` is a JSON object: ``rule`` (the description rule), ``score``,
    ``threshold``, ``score_to_threshold``, ``model_version``, ``top_features`` (list of
    ``{"feature", "contribution", "value"}``, ``value`` when ``entities`` has the column), ``facts``
    (the values the description used); for the ensemble also ``explained_by`` and
    ``detector_ratios``. ``customer_id`` (negative ids of anonymous visitors as NA), ``ip_address``
    and ``session_id`` (activities only) come from ``entities``. Raises ValueError naming missing columns, detectors without threshold or
    severity cuts, flagged entities without facts or explanation, and repeated (entity, detector)
    scores (they would give two records one id).
    """
    id_column = score_id_column(entity_type)
    time_column = SCORE_TIME_COLUMNS[entity_type]
    require_columns(scores, (id_column, time_column, *SCORE_COLUMNS), "scores")
    require_columns(entities, ENTITY_FACT_COLUMNS[entity_type], "entities")
    all_thresholds = _checked_thresholds(scores, thresholds)
    detected_at = _naive_utc(detection_timestamp)

    flagged = scores.loc[scores["is_anomaly"].to_numpy(dtype=bool)]
    if flagged.empty:
        logger.info("no flagged %ss: no anomaly records", entity_type)
        return empty_frame(ANOMALY_DTYPES)
    flagged = pd.DataFrame(
        {
            "entity_id": flagged[id_column].to_numpy(np.int64),
            "event_timestamp": flagged[time_column].to_numpy().astype("datetime64[us]"),
            "detector": flagged["detector"].astype("str").to_numpy(),
            "score": flagged["score"].to_numpy(np.float64),
            "model_version": flagged["model_version"].to_numpy(np.int64),
        }
    )
    for detector in flagged["detector"].unique():
        _cuts_of(detector, severity_cuts)
    repeated = flagged.loc[flagged.duplicated(["entity_id", "detector"]), ["entity_id", "detector"]]
    if len(repeated):
        raise ValueError(
            f"scores: {len(repeated)} (entity, detector) pairs appear more than once, e.g. "
            f"{list(repeated.head(3).itertuples(index=False, name=None))}; pass one score per entity and detector"
        )
    flagged["rank"] = flagged["detector"].map(_DETECTOR_ORDER).fillna(len(_DETECTOR_ORDER))
    flagged = flagged.sort_values(["event_timestamp", "entity_id", "rank", "detector"], kind="stable")
    flagged = flagged.drop(columns="rank").reset_index(drop=True)
    flagged["threshold"] = flagged["detector"].map(all_thresholds).to_numpy(np.float64)
    flagged["ratio"] = flagged["score"] / flagged["threshold"]
    medium = flagged["detector"].map({name: cuts[0] for name, cuts in severity_cuts.items()}).to_numpy(np.float64)
    high = flagged["detector"].map({name: cuts[1] for name, cuts in severity_cuts.items()}).to_numpy(np.float64)
    flagged["severity"] = _severities(flagged["ratio"].to_numpy(), medium, high)

    facts = _facts_of_flagged(entities, flagged["entity_id"], entity_type)
    explained = explained_by_detector(flagged, explanations, entity_type)
    ensemble_parts = _ensemble_components(scores, flagged, all_thresholds, id_column)
    if entity_type == ENTITY_ACTIVITY:
        rules = activity_rules(facts)
        write = activity_sentence
    else:
        rules = order_rules(facts)
        write = order_sentence
    value_columns = set(entities.columns)

    descriptions, details = [], []
    for row, fact, rule in zip(flagged.itertuples(index=False), facts.to_dict("records"), rules, strict=True):
        extra: dict[str, Any] = {}
        explained_by = row.detector
        if row.detector == DETECTOR_ENSEMBLE:
            explained_by, ratios = ensemble_parts.get(row.entity_id, (None, {}))
            extra = {"explained_by": explained_by, "detector_ratios": ratios}
        features = explained.get(explained_by, {}).get(row.entity_id, [])
        shown = [
            {"feature": name, "contribution": contribution}
            | ({"value": json_ready(fact[name])} if name in value_columns else {})
            for name, contribution in features
        ]
        sentence, used = write(rule, fact, pd.Timestamp(row.event_timestamp), shown)
        descriptions.append(sentence)
        details.append(
            json.dumps(
                {
                    "rule": rule,
                    "score": row.score,
                    "threshold": row.threshold,
                    "score_to_threshold": row.ratio,
                    "model_version": row.model_version,
                    "top_features": shown,
                    "facts": used,
                    **extra,
                },
                allow_nan=False,
            )
        )

    anomalies = pd.DataFrame(
        {
            "id": [
                anomaly_id(entity_type, e, d) for e, d in zip(flagged["entity_id"], flagged["detector"], strict=True)
            ],
            "entity_type": entity_type,
            "entity_id": flagged["entity_id"],
            "detection_timestamp": detected_at,
            "description": descriptions,
            "severity": flagged["severity"],
            "detector_name": flagged["detector"],
            "details": details,
            "anomaly_score": flagged["score"],
            "event_timestamp": flagged["event_timestamp"],
            **_who_and_where(facts, entity_type),
            "incident_id": None,
        }
    ).astype(ANOMALY_DTYPES)
    logger.info(
        "%d %s anomaly records (%s)",
        len(anomalies),
        entity_type,
        ", ".join(f"{name}: {count}" for name, count in anomalies["severity"].value_counts().sort_index().items()),
    )
    return anomalies


# --- Validation ----------------------------------------------------------------------------------


def _checked_thresholds(scores: pd.DataFrame, thresholds: Mapping[str, float]) -> dict[str, float]:
    """Every detector's threshold, the ensemble's included, each checked to be positive."""
    all_thresholds = {DETECTOR_ENSEMBLE: ENSEMBLE_THRESHOLD, **{k: float(v) for k, v in thresholds.items()}}
    missing = sorted(set(scores["detector"].astype("str").unique()) - set(all_thresholds))
    if missing:
        raise ValueError(f"thresholds: no threshold for detectors {missing}; pass each model's threshold_")
    not_positive = {name: value for name, value in all_thresholds.items() if not value > 0}
    if not_positive:
        raise ValueError(f"thresholds: must be positive, got {not_positive}")
    return all_thresholds


def _cuts_of(detector: str, severity_cuts: Mapping[str, tuple[float, float]]) -> tuple[float, float]:
    try:
        medium, high = severity_cuts[detector]
    except KeyError:
        raise ValueError(f"no severity cuts for detector {detector!r}; known: {sorted(severity_cuts)}") from None
    if not 0 < medium <= high:
        raise ValueError(f"severity cuts of {detector} must satisfy 0 < medium <= high, got {(medium, high)}")
    return medium, high


def _naive_utc(value: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert(UTC).tz_localize(None)
    return stamp.as_unit("us")


# --- Severity, facts and explanations ------------------------------------------------------------


def _severities(ratio: np.ndarray, medium: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    return np.select([ratio >= high, ratio >= medium], [SEVERITY_HIGH, SEVERITY_MEDIUM], SEVERITY_LOW).astype(object)


def _facts_of_flagged(entities: pd.DataFrame, entity_ids: pd.Series, entity_type: str) -> pd.DataFrame:
    """The entities' rows in the order of the flagged records (one per record)."""
    by_id = entities.set_index(entities["id"].to_numpy(np.int64))
    if not by_id.index.is_unique:
        raise ValueError("entities: `id` is not unique; pass one row per entity")
    missing = np.setdiff1d(entity_ids.to_numpy(), by_id.index.to_numpy())
    if len(missing):
        raise ValueError(f"entities: no row for {len(missing)} flagged {entity_type} rows, e.g. {missing[:5].tolist()}")
    return by_id.loc[entity_ids.to_numpy()].reset_index(drop=True)


def _who_and_where(facts: pd.DataFrame, entity_type: str) -> dict[str, Any]:
    """The customer, IP and session columns of the records written from `facts` (one row per record)."""
    customers = pd.array([customer_or_none(value) for value in facts["customer_id"]], dtype="Int64")
    if entity_type != ENTITY_ACTIVITY:
        return {"customer_id": customers, "ip_address": None, "session_id": None}
    return {
        "customer_id": customers,
        "ip_address": [text_or_none(value) for value in facts["ip_address"]],
        "session_id": [text_or_none(value) for value in facts["session_id"]],
    }


def _ensemble_components(
    scores: pd.DataFrame, flagged: pd.DataFrame, thresholds: Mapping[str, float], id_column: str
) -> dict[int, tuple[str | None, dict[str, float]]]:
    """Ensemble-flagged entity id -> (component with the highest score / threshold, every ratio)."""
    ids = flagged.loc[flagged["detector"] == DETECTOR_ENSEMBLE, "entity_id"].to_numpy()
    if not len(ids):
        return {}
    detectors = scores["detector"].astype("str")
    keep = ((detectors != DETECTOR_ENSEMBLE) & scores[id_column].isin(ids)).to_numpy()
    parts = pd.DataFrame(
        {
            "entity_id": scores[id_column].to_numpy(np.int64)[keep],
            "detector": detectors.to_numpy()[keep],
            "ratio": scores["score"].to_numpy(np.float64)[keep] / detectors[keep].map(thresholds).to_numpy(np.float64),
        }
    )
    parts["rank"] = parts["detector"].map(_DETECTOR_ORDER).fillna(len(_DETECTOR_ORDER))
    parts = parts.sort_values(["entity_id", "rank", "detector"], kind="stable")
    entity_ids = parts["entity_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, entity_ids[1:] != entity_ids[:-1]]).tolist()
    names, ratios = parts["detector"].tolist(), parts["ratio"].tolist()
    components: dict[int, tuple[str | None, dict[str, float]]] = {}
    for start, end in zip(starts, [*starts[1:], len(parts)], strict=True):
        # max() keeps the first of equal ratios, so ties go to the detector listed first.
        strongest = max(range(start, end), key=ratios.__getitem__)
        components[int(entity_ids[start])] = (
            names[strongest],
            dict(zip(names[start:end], ratios[start:end], strict=True)),
        )
    return components
