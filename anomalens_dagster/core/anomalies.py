"""Anomaly records: the flagged scores of one entity type turned into rows an analyst reads.

Three pure functions, one per table the detections group keeps for people rather than for models:

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
    ``ratio = score / threshold`` (the ensemble's threshold is ``ENSEMBLE_THRESHOLD`` = 3.0). A hit
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
    ensemble                  1.33    2.0    -log10 of the combined tail probability over 3
                                             (core/scoring.py): Medium from 1e-4, High from 1e-6, past
                                             anything a 100k-row training window shows.
    ========================  ======  =====  ==========================================================

Description rules (the first that applies wins; ``details.rule`` names it)
    The description comes from the entity's facts, so every detector that flags an entity tells
    the same story when one of the known patterns is present; otherwise it names the strongest
    feature of that detector's explanation (for the ensemble: of its strongest component, the
    detector with the highest score / threshold).

    Activities:
    1. ``failed_login_run`` -- ``failed_logins_within_15min_ip >= FAILED_LOGIN_RUN_MIN_ATTEMPTS``:
       "7 failed logins from 198.51.100.4 within 15 min of this one, for jo***@example.com"; any
       other action: "login from 198.51.100.4 within 15 min of 7 failed logins from the same IP".
    2. ``identical_actions`` -- ``identical_actions_within_60s_ip >= BURST_MIN_IDENTICAL_ACTIONS``:
       '12 add_to_cart actions for product #17 (Blue Mug) from 203.0.113.7 within a minute of this
       one; nearest other action 0.4 s away' (target from details: product, search query -- '14
       searches for "kettle"' -- or url; "identical" actions without one).
    3. ``purchase_total_mismatch`` -- a purchase whose ``purchase_amount_to_items_log_ratio`` lies
       beyond ln(``ORDER_TOTAL_HIGH_RATIO``) either way: "purchase of 0.25 for items costing 84.50
       (0.003x their price) from 198.51.100.4 at 20:00".
    4. ``unusual_activity`` -- "view_page at 03:00 from 198.51.100.4 unlike the training data
       (session of 1 action); strongest signal: session_action_count = 1"; a purchase names its
       amount ("purchase of 2,065.24 at ..."). Durations read as "2.3 s", "13 min", "22.4 h".

    Orders:
    1. ``order_without_items`` -- ``items_total <= 0``: "Order total 52.00 but the order has no
       items" / "Order total 52.00 for 3 items that cost nothing".
    2. ``total_above_items`` -- ``amount_to_items_ratio >= ORDER_TOTAL_HIGH_RATIO``:
       "Order total 4,512.00 is 38x what its 3 items cost (118.70)".
    3. ``total_below_items`` -- ``amount_to_items_ratio <= ORDER_TOTAL_LOW_RATIO``:
       "Order total 0.40 for 3 items costing 112.30".
    4. ``total_vs_customer_median`` -- ``amount_to_customer_median_ratio`` at least
       ``CUSTOMER_MEDIAN_RATIO`` or at most its inverse: "Order total 900.00 is 12x customer 42's
       median order (75.00)" / "Order total 5.00 against customer 42's median order of 75.00".
    5. ``unusual_order`` -- "Order of 3 items totalling 45.00 at 03:00 unlike the training data;
       strongest signal: hour_of_day = 3".

    Emails are masked (:func:`mask_email`) in descriptions, details and session histories.

Sentences are formatted per flagged row (a few percent of the rows); selecting, joining and
classifying the rows is vectorised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from anomalens_dagster.constants import (
    DEFAULT_EXPLAIN_TOP_K,
    DETECTOR_ENSEMBLE,
    DETECTOR_NAMES,
    ENSEMBLE_THRESHOLD,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    ENTITY_TYPES,
    SEVERITIES,
    SEVERITY_HIGH,
    SEVERITY_LOW,
    SEVERITY_MEDIUM,
    SEVERITY_RATIO_CUTS,
)
from anomalens_dagster.core.scoring import ScoringModel

logger = logging.getLogger(__name__)

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
}
ANOMALY_COLUMNS: tuple[str, ...] = tuple(ANOMALY_DTYPES)

CONSOLIDATED_DTYPES: dict[str, str] = {
    "entity_type": "str",
    "entity_id": "int64",
    "detectors": "str",  # sorted detector names joined by "," (ensemble included when it fired)
    "n_detectors": "int64",  # number of names in `detectors`
    "first_detected_at": "datetime64[us]",
    "last_detected_at": "datetime64[us]",
    "overall_severity": "str",
    "ensemble_score": "float64",  # NaN when unknown
    "event_timestamp": "datetime64[us]",
    "customer_id": "Int64",  # from the entity's records; NA when unknown
    "ip_address": "str",  # activities only
}
CONSOLIDATED_COLUMNS: tuple[str, ...] = tuple(CONSOLIDATED_DTYPES)

SESSION_CONTEXT_DTYPES: dict[str, str] = {
    "session_id": "str",
    "n_actions": "int64",
    "first_timestamp": "datetime64[us]",
    "last_timestamp": "datetime64[us]",
    "actions": "str",  # JSON list of {"id", "timestamp", "action_type", "details"}
}
SESSION_CONTEXT_COLUMNS: tuple[str, ...] = tuple(SESSION_CONTEXT_DTYPES)

# The scores frame of `core.scoring.score_rows` names the entity's id and time like this.
SCORE_ID_COLUMNS: dict[str, str] = {ENTITY_ACTIVITY: "activity_id", ENTITY_ORDER: "order_id"}
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
SESSION_ACTIVITY_COLUMNS: tuple[str, ...] = ("id", "session_id", "timestamp", "action_type", "details")
ANOMALY_INPUT_COLUMNS: tuple[str, ...] = (
    "entity_type",
    "entity_id",
    "detector_name",
    "severity",
    "detection_timestamp",
    "anomaly_score",
    "event_timestamp",
)

# --- Description rules ---------------------------------------------------------------------------

# Normal traffic has at most one mistyped password before a login; three in 15 minutes is a run.
FAILED_LOGIN_RUN_MIN_ATTEMPTS = 3
# Normal traffic never repeats an action on one target within a minute from one IP.
BURST_MIN_IDENTICAL_ACTIONS = 3
# A normal total equals its items' cost (shipping and discounts move it by far less than half).
ORDER_TOTAL_HIGH_RATIO = 1.5
ORDER_TOTAL_LOW_RATIO = 1 / ORDER_TOTAL_HIGH_RATIO
CUSTOMER_MEDIAN_RATIO = 3.0

RULE_FAILED_LOGIN_RUN = "failed_login_run"
RULE_IDENTICAL_ACTIONS = "identical_actions"
RULE_PURCHASE_TOTAL_MISMATCH = "purchase_total_mismatch"
RULE_UNUSUAL_ACTIVITY = "unusual_activity"
RULE_ORDER_WITHOUT_ITEMS = "order_without_items"
RULE_TOTAL_ABOVE_ITEMS = "total_above_items"
RULE_TOTAL_BELOW_ITEMS = "total_below_items"
RULE_TOTAL_VS_CUSTOMER_MEDIAN = "total_vs_customer_median"
RULE_UNUSUAL_ORDER = "unusual_order"

_DETECTOR_ORDER = {name: rank for rank, name in enumerate((*DETECTOR_NAMES, DETECTOR_ENSEMBLE))}
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_ID_PREFIX = "anomalens"

# An email's local part, from its first character: the first min(2, length - 1) characters are kept
# (the greedy first group backs off so that the second keeps at least one), the rest is masked.
_EMAIL = re.compile(r"(?<![\w.%+\-])([\w.%+\-]{0,2})[\w.%+\-]+@(?=[\w\-]+(?:\.[\w\-]+)+)")


# --- Public API ----------------------------------------------------------------------------------


def anomaly_id(entity_type: str, entity_id: int, detector: str) -> int:
    """The stable record id of (entity_type, entity_id, detector); see the module docstring."""
    digest = hashlib.blake2b(f"{_ID_PREFIX}:{entity_type}:{int(entity_id)}:{detector}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") >> 1


def mask_email(email: str) -> str:
    """``john.doe@example.com`` -> ``jo***@example.com``: the local part keeps min(2, length - 1)
    characters. Text without ``@`` is masked the same way as a whole (``admin`` -> ``ad***``)."""
    local, at, domain = email.rpartition("@")
    if not at:
        local, domain = email, ""
    kept = local[: max(0, min(2, len(local) - 1))]
    return f"{kept}***{at}{domain}"


def severity(detector: str, score: float, threshold: float) -> str:
    """The severity of one hit (the rule of the module docstring)."""
    cuts = _cuts_of(detector, SEVERITY_RATIO_CUTS)
    return str(_severities(np.array([score / threshold]), *cuts)[0])


def explain_flagged(
    models: Mapping[str, ScoringModel],
    features: pd.DataFrame,
    scores: pd.DataFrame,
    entity_type: str,
    top_k: int = DEFAULT_EXPLAIN_TOP_K,
) -> dict[str, pd.DataFrame]:
    """The ``explanations`` argument of :func:`build_anomalies`.

    For every model, ``model.detector.explain`` of the feature rows it flagged in ``scores``,
    indexed by entity id: columns ``feature_1, contribution_1, ..., feature_k, contribution_k``.
    ``features`` is the feature frame that was scored (an ``id`` column plus the model's features).
    """
    id_column = _score_id_column(entity_type)
    _require_columns(scores, (id_column, "detector", "is_anomaly"), "scores")
    _require_columns(features, ("id",), "features")
    by_id = features.set_index("id")
    if not by_id.index.is_unique:
        raise ValueError("features: `id` is not unique; pass one feature row per entity")
    flagged = scores.loc[scores["is_anomaly"].to_numpy(dtype=bool), [id_column, "detector"]]
    explanations = {}
    for name, model in models.items():
        ids = flagged.loc[flagged["detector"] == name, id_column].to_numpy(np.int64)
        missing = np.setdiff1d(ids, by_id.index.to_numpy())
        if len(missing):
            raise ValueError(
                f"features lack {len(missing)} {entity_type} rows flagged by {name}: {missing[:5].tolist()}"
            )
        explanations[name] = model.detector.explain(by_id.loc[ids], top_k)
    return explanations


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
    id_column = _score_id_column(entity_type)
    time_column = SCORE_TIME_COLUMNS[entity_type]
    _require_columns(scores, (id_column, time_column, *SCORE_COLUMNS), "scores")
    _require_columns(entities, ENTITY_FACT_COLUMNS[entity_type], "entities")
    all_thresholds = _checked_thresholds(scores, thresholds)
    detected_at = _naive_utc(detection_timestamp)

    flagged = scores.loc[scores["is_anomaly"].to_numpy(dtype=bool)]
    if flagged.empty:
        logger.info("no flagged %ss: no anomaly records", entity_type)
        return _empty(ANOMALY_DTYPES)
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
    explained = _explained(flagged, explanations, entity_type)
    ensemble_parts = _ensemble_components(scores, flagged, all_thresholds, id_column)
    if entity_type == ENTITY_ACTIVITY:
        rules = _activity_rules(facts)
        write = _activity_sentence
    else:
        rules = _order_rules(facts)
        write = _order_sentence
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
            | ({"value": _plain(fact[name])} if name in value_columns else {})
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
        }
    ).astype(ANOMALY_DTYPES)
    logger.info(
        "%d %s anomaly records (%s)",
        len(anomalies),
        entity_type,
        ", ".join(f"{name}: {count}" for name, count in anomalies["severity"].value_counts().sort_index().items()),
    )
    return anomalies


def consolidate(anomalies: pd.DataFrame, ensemble_scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (entity_type, entity_id) of ``anomalies`` (columns ``CONSOLIDATED_DTYPES``).

    ``detectors``: the distinct ``detector_name`` values, sorted and joined by "," (text, so DuckDB
    stores it as VARCHAR whatever the day; ``string_split(detectors, ',')`` gives the list);
    ``n_detectors`` counts them, the ensemble included when it fired. ``first_detected_at`` /
    ``last_detected_at``: min / max ``detection_timestamp``. ``overall_severity``: High if any
    record is High, else Medium if any is Medium, else Low. ``ensemble_score``: the entity's score
    in ``ensemble_scores`` (columns ``entity_type, entity_id, score``, one row per entity -- the
    ensemble rows of the scores tables), else the ``anomaly_score`` of its ensemble record, else NaN.
    ``event_timestamp``: the entity's own time. ``customer_id``, ``ip_address``: the first known value
    among the entity's records (NA when none has it). Rows are ordered by (entity_type, entity_id).
    """
    _require_columns(anomalies, ANOMALY_INPUT_COLUMNS, "anomalies")
    unknown = sorted(set(anomalies["severity"].astype("str")) - set(SEVERITIES))
    if unknown:
        raise ValueError(f"anomalies: unknown severities {unknown}; expected one of {list(SEVERITIES)}")
    if anomalies.empty:
        return _empty(CONSOLIDATED_DTYPES)
    keys = ["entity_type", "entity_id"]
    records = pd.DataFrame(
        {
            "entity_type": anomalies["entity_type"].astype("str").to_numpy(),
            "entity_id": anomalies["entity_id"].to_numpy(np.int64),
            "detector_name": anomalies["detector_name"].astype("str").to_numpy(),
            "severity_rank": anomalies["severity"].astype("str").map(_SEVERITY_RANK).to_numpy(np.int64),
            "detection_timestamp": anomalies["detection_timestamp"].to_numpy().astype("datetime64[us]"),
            "event_timestamp": anomalies["event_timestamp"].to_numpy().astype("datetime64[us]"),
            "anomaly_score": anomalies["anomaly_score"].to_numpy(np.float64),
        }
    )
    groups = records.groupby(keys, sort=True)
    consolidated = groups.agg(
        first_detected_at=("detection_timestamp", "min"),
        last_detected_at=("detection_timestamp", "max"),
        severity_rank=("severity_rank", "max"),
        event_timestamp=("event_timestamp", "min"),
    )
    names = records[[*keys, "detector_name"]].drop_duplicates().sort_values([*keys, "detector_name"])
    by_entity = names.groupby(keys, sort=True)["detector_name"]
    consolidated["detectors"] = by_entity.agg(",".join)
    consolidated["n_detectors"] = by_entity.size()
    consolidated["overall_severity"] = np.asarray(SEVERITIES, dtype=object)[consolidated["severity_rank"].to_numpy()]
    # Records stored before these columns existed read as NA (the table gains them on the next write).
    for column in ("customer_id", "ip_address"):
        values = anomalies[column] if column in anomalies else pd.Series(pd.NA, index=anomalies.index)
        records[column] = values.astype(CONSOLIDATED_DTYPES[column]).to_numpy()
    who = records.groupby(keys, sort=True)[["customer_id", "ip_address"]].first()
    consolidated["customer_id"] = who["customer_id"]
    consolidated["ip_address"] = who["ip_address"]
    ensemble_records = records.loc[records["detector_name"] == DETECTOR_ENSEMBLE].groupby(keys)["anomaly_score"].max()
    consolidated["ensemble_score"] = ensemble_records.reindex(consolidated.index)
    if ensemble_scores is not None:
        given = _ensemble_score_series(ensemble_scores).reindex(consolidated.index)
        consolidated["ensemble_score"] = given.fillna(consolidated["ensemble_score"])
    return consolidated.reset_index()[list(CONSOLIDATED_COLUMNS)].astype(CONSOLIDATED_DTYPES)


def session_context(activities: pd.DataFrame) -> pd.DataFrame:
    """Each session's actions in (timestamp, id) order, as JSON text (columns ``SESSION_CONTEXT_DTYPES``).

    ``activities``: store.user_activities rows (``id``, ``session_id``, ``timestamp``,
    ``action_type``, ``details`` as JSON text) of the sessions to show; an activity listed twice
    counts once, and rows without a session id are left out. ``actions`` is a JSON list of
    ``{"id": int, "timestamp": "YYYY-MM-DDTHH:MM:SS.ffffff", "action_type": str, "details": object
    or null}`` with emails in the details masked (:func:`mask_email`). Rows are ordered by session_id.
    """
    _require_columns(activities, SESSION_ACTIVITY_COLUMNS, "activities")
    rows = pd.DataFrame(
        {
            "id": activities["id"].to_numpy(np.int64),
            "session_id": activities["session_id"].astype("str"),
            "timestamp": activities["timestamp"].to_numpy().astype("datetime64[us]"),
            "action_type": activities["action_type"].astype("str"),
            "details": activities["details"].astype("str"),
        }
    )
    rows = rows.loc[rows["session_id"].notna()].drop_duplicates("id")
    if rows.empty:
        return _empty(SESSION_CONTEXT_DTYPES)
    rows = rows.sort_values(["session_id", "timestamp", "id"], kind="stable")
    action_json = rows["action_type"].map({value: json.dumps(value) for value in rows["action_type"].unique()})
    details_json = rows["details"].str.replace(_EMAIL, r"\1***@", regex=True).fillna("null")
    rows["item"] = (
        '{"id":'
        + rows["id"].astype("str")
        + ',"timestamp":"'
        + rows["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
        + '","action_type":'
        + action_json
        + ',"details":'
        + details_json
        + "}"
    )
    sessions = rows.groupby("session_id", sort=True).agg(
        n_actions=("id", "size"),
        first_timestamp=("timestamp", "min"),
        last_timestamp=("timestamp", "max"),
        actions=("item", lambda items: "[" + ",".join(items) + "]"),
    )
    return sessions.reset_index()[list(SESSION_CONTEXT_COLUMNS)].astype(SESSION_CONTEXT_DTYPES)


# --- Validation ----------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing} (needs {list(columns)})")


def _score_id_column(entity_type: str) -> str:
    if entity_type not in ENTITY_TYPES:
        raise ValueError(f"unknown entity type {entity_type!r}; expected one of {list(ENTITY_TYPES)}")
    return SCORE_ID_COLUMNS[entity_type]


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


def _empty(dtypes: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in dtypes.items()})


def _ensemble_score_series(ensemble_scores: pd.DataFrame) -> pd.Series:
    _require_columns(ensemble_scores, ("entity_type", "entity_id", "score"), "ensemble_scores")
    series = pd.Series(
        ensemble_scores["score"].to_numpy(np.float64),
        index=pd.MultiIndex.from_arrays(
            [ensemble_scores["entity_type"].astype("str"), ensemble_scores["entity_id"].to_numpy(np.int64)],
            names=["entity_type", "entity_id"],
        ),
    )
    duplicated = series.index[series.index.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"ensemble_scores: more than one score for {duplicated[:5]}; pass one row per entity")
    return series


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
    customers = pd.array([_customer(value) for value in facts["customer_id"]], dtype="Int64")
    if entity_type != ENTITY_ACTIVITY:
        return {"customer_id": customers, "ip_address": None, "session_id": None}
    return {
        "customer_id": customers,
        "ip_address": [_text(value) for value in facts["ip_address"]],
        "session_id": [_text(value) for value in facts["session_id"]],
    }


def _explanation_pairs(frame: pd.DataFrame) -> dict[int, list[tuple[str, float]]]:
    """Entity id -> [(feature, contribution)] strongest first, from an `explain` frame."""
    ranks = 0
    while f"feature_{ranks + 1}" in frame.columns and f"contribution_{ranks + 1}" in frame.columns:
        ranks += 1
    names = [frame[f"feature_{rank}"].to_numpy(dtype=object).tolist() for rank in range(1, ranks + 1)]
    values = [frame[f"contribution_{rank}"].to_numpy(np.float64).tolist() for rank in range(1, ranks + 1)]
    rows = zip(*names, *values, strict=True) if ranks else ([] for _ in range(len(frame)))
    return {
        entity_id: [
            (name, value)
            for name, value in zip(row[:ranks], row[ranks:], strict=True)
            if isinstance(name, str) and math.isfinite(value)
        ]
        for entity_id, row in zip(frame.index.to_numpy(np.int64).tolist(), rows, strict=True)
    }


def _explained(
    flagged: pd.DataFrame, explanations: Mapping[str, pd.DataFrame], entity_type: str
) -> dict[str, dict[int, list[tuple[str, float]]]]:
    """Detector -> entity id -> its explanation, for every entity the detector flagged.

    The ensemble has no explanation of its own: its records borrow their strongest component's.
    """
    explained: dict[str, dict[int, list[tuple[str, float]]]] = {}
    for detector, ids in flagged.groupby("detector")["entity_id"]:
        if detector == DETECTOR_ENSEMBLE:
            continue
        if detector not in explanations:
            raise ValueError(
                f"explanations: none for {detector}, which flagged {len(ids)} {entity_type} rows; "
                "pass explain() of its flagged rows (see explain_flagged)"
            )
        frame = explanations[detector]
        missing = np.setdiff1d(ids.to_numpy(), frame.index.to_numpy(np.int64))
        if len(missing):
            raise ValueError(
                f"explanations[{detector!r}]: no row for {len(missing)} flagged {entity_type} rows, "
                f"e.g. {missing[:5].tolist()}; index the explain() frame by entity id"
            )
        explained[str(detector)] = _explanation_pairs(frame.loc[frame.index.isin(ids.to_numpy())])
    return explained


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


# --- Activity descriptions -----------------------------------------------------------------------


def _activity_rules(facts: pd.DataFrame) -> np.ndarray:
    failed = facts["failed_logins_within_15min_ip"].to_numpy(np.float64) >= FAILED_LOGIN_RUN_MIN_ATTEMPTS
    burst = facts["identical_actions_within_60s_ip"].to_numpy(np.float64) >= BURST_MIN_IDENTICAL_ACTIONS
    mismatch = np.abs(facts["purchase_amount_to_items_log_ratio"].to_numpy(np.float64)) >= np.log(
        ORDER_TOTAL_HIGH_RATIO
    )
    return np.select(
        [failed, burst, mismatch],
        [RULE_FAILED_LOGIN_RUN, RULE_IDENTICAL_ACTIONS, RULE_PURCHASE_TOTAL_MISMATCH],
        RULE_UNUSUAL_ACTIVITY,
    )


def _activity_sentence(
    rule: str, fact: Mapping[str, Any], at: pd.Timestamp, top: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    action = str(fact["action_type"])
    ip = _text(fact["ip_address"])
    source = ip or "an unknown IP"
    details = _details(fact["details"])
    used: dict[str, Any] = {
        "action_type": action,
        "timestamp": at.isoformat(),
        "ip_address": ip,
        "session_id": _text(fact["session_id"]),
        "customer_id": _customer(fact["customer_id"]),
    }
    if rule == RULE_FAILED_LOGIN_RUN:
        attempts = int(fact["failed_logins_within_15min_ip"])
        used["failed_logins_within_15min_ip"] = attempts
        if action == "failed_login":
            email = _text(details.get("attempted_email"))
            masked = mask_email(email) if email else None
            used["attempted_email"] = masked
            target = f", for {masked}" if masked else ""
            return f"{attempts} failed logins from {source} within 15 min of this one{target}", used
        return f"{action} from {source} within 15 min of {attempts} failed logins from the same IP", used
    if rule == RULE_IDENTICAL_ACTIONS:
        count = int(fact["identical_actions_within_60s_ip"])
        nearest = float(fact["seconds_to_nearest_activity_ip"])
        target, target_facts = _action_target(details)
        used |= {"identical_actions_within_60s_ip": count, "seconds_to_nearest_activity_ip": nearest, **target_facts}
        if action == "search" and "query" in target_facts:
            what = f'searches for "{target_facts["query"]}"'
        elif target:
            what = f"{action} actions for {target}"
        else:
            what = f"identical {action} actions"
        return (
            f"{count} {what} from {source} within a minute of this one; nearest other action {_duration(nearest)} away",
            used,
        )
    if rule == RULE_PURCHASE_TOTAL_MISMATCH:
        log_ratio = float(fact["purchase_amount_to_items_log_ratio"])
        charged = float(details.get("order_total") or 0.0)
        items_cost = charged / np.exp(log_ratio)
        used |= {"order_total": charged, "items_total": items_cost, "purchase_amount_to_items_log_ratio": log_ratio}
        return (
            f"purchase of {_money(charged)} for items costing {_money(items_cost)} "
            f"({np.exp(log_ratio):.3g}x their price) from {source} at {at:%H:%M}",
            used,
        )
    actions = int(fact["session_action_count"])
    duration = float(fact["session_duration_seconds"])
    used |= {"session_action_count": actions, "session_duration_seconds": duration}
    what = action
    order_total = details.get("order_total")
    if action == "purchase" and isinstance(order_total, int | float) and not isinstance(order_total, bool):
        used["order_total"] = order_total
        what = f"purchase of {_money(order_total)}"
    return (
        f"{what} at {at:%H:%M} from {source} unlike the training data "
        f"(session of {_session(actions, duration)}){_strongest(top)}",
        used,
    )


def _action_target(details: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """What an action was done to, in words, and the facts behind it."""
    product_id = details.get("product_id")
    if product_id is not None:
        name = _text(details.get("product_name"))
        return f"product #{product_id}" + (f" ({name})" if name else ""), {"product_id": product_id}
    query = _text(details.get("query"))
    if query:
        return f'the search "{query}"', {"query": query}
    url = _text(details.get("url"))
    if url:
        return url, {"url": url}
    return None, {}


# --- Order descriptions --------------------------------------------------------------------------


def _order_rules(facts: pd.DataFrame) -> np.ndarray:
    items_total = facts["items_total"].to_numpy(np.float64)
    ratio = facts["amount_to_items_ratio"].to_numpy(np.float64)
    customer = facts["amount_to_customer_median_ratio"].to_numpy(np.float64)
    return np.select(
        [
            ~(items_total > 0),
            ratio >= ORDER_TOTAL_HIGH_RATIO,
            ratio <= ORDER_TOTAL_LOW_RATIO,
            (customer >= CUSTOMER_MEDIAN_RATIO) | (customer <= 1 / CUSTOMER_MEDIAN_RATIO),
        ],
        [RULE_ORDER_WITHOUT_ITEMS, RULE_TOTAL_ABOVE_ITEMS, RULE_TOTAL_BELOW_ITEMS, RULE_TOTAL_VS_CUSTOMER_MEDIAN],
        RULE_UNUSUAL_ORDER,
    )


def _order_sentence(
    rule: str, fact: Mapping[str, Any], at: pd.Timestamp, top: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    total = float(fact["total_amount"])
    items_total = float(fact["items_total"])
    quantity = int(fact["total_quantity"])
    items = _count(quantity, "item")
    used: dict[str, Any] = {
        "created_at": at.isoformat(),
        "customer_id": _customer(fact["customer_id"]),
        "total_amount": total,
        "items_total": items_total,
        "item_count": int(fact["item_count"]),
        "total_quantity": quantity,
    }
    if rule == RULE_ORDER_WITHOUT_ITEMS:
        if int(fact["item_count"]) == 0:
            return f"Order total {_money(total)} but the order has no items", used
        return f"Order total {_money(total)} for {items} that cost nothing", used
    if rule in (RULE_TOTAL_ABOVE_ITEMS, RULE_TOTAL_BELOW_ITEMS):
        ratio = float(fact["amount_to_items_ratio"])
        used["amount_to_items_ratio"] = ratio
        if rule == RULE_TOTAL_ABOVE_ITEMS:
            cost = "costs" if quantity == 1 else "cost"
            return (
                f"Order total {_money(total)} is {_times(ratio)} what its {items} {cost} ({_money(items_total)})",
                used,
            )
        return f"Order total {_money(total)} for {items} costing {_money(items_total)}", used
    if rule == RULE_TOTAL_VS_CUSTOMER_MEDIAN:
        ratio = float(fact["amount_to_customer_median_ratio"])
        median = total / ratio
        used |= {"amount_to_customer_median_ratio": ratio, "customer_median_total": median}
        customer = used["customer_id"]
        whose = f"customer {customer}'s" if customer is not None else "the customer's"
        if ratio >= 1:
            return f"Order total {_money(total)} is {_times(ratio)} {whose} median order ({_money(median)})", used
        return f"Order total {_money(total)} against {whose} median order of {_money(median)}", used
    return f"Order of {items} totalling {_money(total)} at {at:%H:%M} unlike the training data{_strongest(top)}", used


# --- Formatting ----------------------------------------------------------------------------------


def _strongest(top: list[dict[str, Any]]) -> str:
    if not top:
        return ""
    first = top[0]
    value = f" = {_format_value(first['feature'], first['value'])}" if first.get("value") is not None else ""
    return f"; strongest signal: {first['feature']}{value}"


def _session(actions: int, seconds: float) -> str:
    return _count(actions, "action") + (f" over {_duration(seconds)}" if actions > 1 else "")


def _format_value(feature: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if "seconds" in feature or feature.startswith("time_since"):
        return _duration(float(value))
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _money(amount: float) -> str:
    return f"{amount:,.2f}"


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _text(value: Any) -> str | None:
    """A non-empty string, or None for NA / empty."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value)
    return text or None


def _customer(value: Any) -> int | None:
    if value is None or pd.isna(value) or int(value) < 0:
        return None
    return int(value)


def _details(value: Any) -> dict[str, Any]:
    text = _text(value)
    if text is None:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        logger.warning("activity details are not JSON: %.80s", text)
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy scalars unwrapped, NA and non-finite floats as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return value


def with_session_context(
    consolidated: pd.DataFrame, activity_sessions: pd.DataFrame, contexts: pd.DataFrame
) -> pd.DataFrame:
    """`consolidated` plus, for activities, `session_id` and `session_actions` (the session's actions).

    ``activity_sessions``: ``entity_id, session_id`` of the suspicious activities; ``contexts``:
    :func:`session_context` of their sessions. Orders, and activities without a session, get NA.
    """
    _require_columns(activity_sessions, ("entity_id", "session_id"), "activity_sessions")
    _require_columns(contexts, ("session_id", "actions"), "contexts")
    sessions = activity_sessions.assign(entity_type=ENTITY_ACTIVITY).merge(
        contexts[["session_id", "actions"]], on="session_id", how="left"
    )
    merged = consolidated.merge(
        sessions.rename(columns={"actions": "session_actions"}), on=["entity_type", "entity_id"], how="left"
    )
    return merged.astype({"session_id": "str", "session_actions": "str"})
