"""Per-entity views of the anomaly records: one row per suspicious entity, and each suspicious
activity's session history.

- :func:`consolidate` -- one row per entity: which detectors fired, when, the worst severity and
  the ensemble score.
- :func:`session_context` -- the session history of suspicious activities, one JSON list per session.
- :func:`with_session_context` -- the consolidated rows with their activity's session attached.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from anomalens_dagster.constants import DETECTOR_ENSEMBLE, ENTITY_ACTIVITY, SEVERITIES
from anomalens_dagster.core.descriptions import EMAIL_MASK, EMAIL_PATTERN
from anomalens_dagster.core.frames import empty_frame, require_columns

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

_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


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
    require_columns(anomalies, ANOMALY_INPUT_COLUMNS, "anomalies")
    unknown = sorted(set(anomalies["severity"].astype("str")) - set(SEVERITIES))
    if unknown:
        raise ValueError(f"anomalies: unknown severities {unknown}; expected one of {list(SEVERITIES)}")
    if anomalies.empty:
        return empty_frame(CONSOLIDATED_DTYPES)
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
    require_columns(activities, SESSION_ACTIVITY_COLUMNS, "activities")
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
        return empty_frame(SESSION_CONTEXT_DTYPES)
    rows = rows.sort_values(["session_id", "timestamp", "id"], kind="stable")
    action_json = rows["action_type"].map({value: json.dumps(value) for value in rows["action_type"].unique()})
    details_json = rows["details"].str.replace(EMAIL_PATTERN, EMAIL_MASK, regex=True).fillna("null")
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


def with_session_context(
    consolidated: pd.DataFrame, activity_sessions: pd.DataFrame, contexts: pd.DataFrame
) -> pd.DataFrame:
    """`consolidated` plus, for activities, `session_id` and `session_actions` (the session's actions).

    ``activity_sessions``: ``entity_id, session_id`` of the suspicious activities; ``contexts``:
    :func:`session_context` of their sessions. Orders, and activities without a session, get NA.
    """
    require_columns(activity_sessions, ("entity_id", "session_id"), "activity_sessions")
    require_columns(contexts, ("session_id", "actions"), "contexts")
    sessions = activity_sessions.assign(entity_type=ENTITY_ACTIVITY).merge(
        contexts[["session_id", "actions"]], on="session_id", how="left"
    )
    merged = consolidated.merge(
        sessions.rename(columns={"actions": "session_actions"}), on=["entity_type", "entity_id"], how="left"
    )
    return merged.astype({"session_id": "str", "session_actions": "str"})


def _ensemble_score_series(ensemble_scores: pd.DataFrame) -> pd.Series:
    require_columns(ensemble_scores, ("entity_type", "entity_id", "score"), "ensemble_scores")
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
