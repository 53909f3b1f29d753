"""Incidents: the ensemble's flagged rows grouped into what happened, one row per incident.

An analyst does not want twenty rows for one credential-stuffing run. :func:`group_incidents`
links the rows the ensemble flagged (its anomaly records: the ensemble is what the top anomalies,
the report and the alerts show; rows a single detector flagged stay records without an incident)
and returns one row per connected group, with the columns of ``INCIDENT_DTYPES``.

Links (one entity type per incident; an order and its purchase activity are two incidents)
    Two flagged rows of one entity type are linked when they share a key and lie at most ``gap``
    apart (default ``DEFAULT_INCIDENT_GAP_MINUTES``), across midnight: for each key the rows are
    sorted by time and each is linked to the next one with the same key. An incident is a connected
    component of those links, so a chain of rows each within the gap of the next is one incident
    however long it lasts. The keys:

    - the session (activities): one visitor's consecutive actions;
    - the customer: one account's activities or orders;
    - the IP address, for anonymous rows only (no customer): a credential-stuffing run or a bot
      from one address. Logged-in rows are not linked by IP: an office, campus or mobile-carrier
      IP carries many customers at once, and linking them by it would chain unrelated customers'
      rows into one incident.

Identity
    ``incident_id`` = ``"inc-"`` + 16 hex digits of ``BLAKE2b("anomalens:incident:<entity_type>:
    <entity_id>")`` of the incident's earliest row (by time, then id). It depends on nothing else, so
    re-scoring the same days (a new model, new thresholds) keeps the ids that verdicts and alerts
    refer to, as long as the earliest row stays flagged.

Columns
    ``first_seen`` / ``last_seen``: the rows' earliest and latest event time. ``customer_ids``,
    ``ip_addresses``, ``session_ids``: the distinct known values, sorted. ``order_ids``: the ids of
    an order incident's orders (empty for activities). ``max_severity``: the worst severity among
    every record of its rows, whichever detector wrote it (as ``consolidated_anomalies`` rates an
    entity). ``ensemble_score``: the highest ensemble score of its rows, as the scores table holds
    it. ``top_features``: the ``INCIDENT_TOP_FEATURES`` features that most often drove its rows'
    explanations (count, then mean rank). ``suppressed``: every row's IP or customer is covered by
    an allow rule (``ops.active_allow_rules``; an order by its customer). ``summary``:
    :func:`~anomalens_dagster.core.incident_summaries.summarise_incident`.

:func:`episode_incident_agreement` measures the grouping against the simulator's episodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from anomalens_dagster.constants import (
    DEFAULT_INCIDENT_GAP_MINUTES,
    DETECTOR_ENSEMBLE,
    ENTITY_ORDER,
    ENTITY_TYPES,
    SEVERITIES,
)
from anomalens_dagster.core.frames import empty_frame, require_columns
from anomalens_dagster.core.incident_summaries import summarise_incident

logger = logging.getLogger(__name__)

INCIDENT_DTYPES: dict[str, str] = {
    "incident_id": "str",
    "entity_type": "str",
    "first_seen": "datetime64[us]",  # naive UTC
    "last_seen": "datetime64[us]",
    "row_count": "int64",
    "customer_ids": "object",  # list[int]
    "ip_addresses": "object",  # list[str]
    "session_ids": "object",  # list[str]
    "order_ids": "object",  # list[int]
    "max_severity": "str",
    "ensemble_score": "float64",
    "top_features": "object",  # list[str]
    "suppressed": "bool",
    "summary": "str",
}
INCIDENT_COLUMNS: tuple[str, ...] = tuple(INCIDENT_DTYPES)
# The DuckDB types of the columns (contract A of the issue): list columns keep their element type
# even when every list is empty.
INCIDENT_SQL_TYPES: dict[str, str] = {
    "incident_id": "VARCHAR NOT NULL",
    "entity_type": "VARCHAR NOT NULL",
    "first_seen": "TIMESTAMP",
    "last_seen": "TIMESTAMP",
    "row_count": "BIGINT",
    "customer_ids": "BIGINT[]",
    "ip_addresses": "VARCHAR[]",
    "session_ids": "VARCHAR[]",
    "order_ids": "BIGINT[]",
    "max_severity": "VARCHAR",
    "ensemble_score": "DOUBLE",
    "top_features": "VARCHAR[]",
    "suppressed": "BOOLEAN",
    "summary": "VARCHAR",
}
MEMBER_DTYPES: dict[str, str] = {"entity_type": "str", "entity_id": "int64", "incident_id": "str"}

# What group_incidents reads of each anomaly record.
RECORD_COLUMNS: tuple[str, ...] = (
    "entity_type",
    "entity_id",
    "detector_name",
    "severity",
    "details",
    "anomaly_score",
    "event_timestamp",
    "customer_id",
    "ip_address",
    "session_id",
)
ALLOW_RULE_COLUMNS: tuple[str, ...] = ("allow_kind", "allow_value")
ALLOW_IP = "ip"
ALLOW_CUSTOMER = "customer"

INCIDENT_TOP_FEATURES = 3
_ID_PREFIX = "anomalens:incident"
_SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class IncidentGrouping:
    """The incidents (``INCIDENT_DTYPES``, by first_seen) and which entity belongs to which
    (``MEMBER_DTYPES``: one row per grouped entity)."""

    incidents: pd.DataFrame
    members: pd.DataFrame


def incident_id(entity_type: str, entity_id: int) -> str:
    """The id of the incident whose earliest row is (entity_type, entity_id); see the module docstring."""
    digest = hashlib.blake2b(f"{_ID_PREFIX}:{entity_type}:{int(entity_id)}".encode(), digest_size=8)
    return f"inc-{digest.hexdigest()}"


def group_incidents(
    records: pd.DataFrame,
    gap: timedelta = timedelta(minutes=DEFAULT_INCIDENT_GAP_MINUTES),
    allow_rules: pd.DataFrame | None = None,
    *,
    link_logged_in_rows_by_ip: bool = False,
) -> IncidentGrouping:
    """Group the ensemble-flagged rows of ``records`` into incidents (see the module docstring).

    ``records``: anomaly records (``detections.anomalies`` rows) with at least ``RECORD_COLUMNS``,
    any detector; only entities with an ensemble record become incidents, the other detectors'
    records count towards their severity. ``allow_rules``: ``allow_kind`` ('ip' | 'customer') and
    ``allow_value`` of the allow rules in force (None: no rule). ``link_logged_in_rows_by_ip``: link
    every row by IP, not only anonymous ones (what the shared-IP rule avoids; for measuring it). Raises ValueError for a missing
    column, an unknown entity type or severity, a non-positive gap, or an entity with two ensemble
    records.
    """
    require_columns(records, RECORD_COLUMNS, "records")
    if gap <= timedelta(0):
        raise ValueError(f"gap must be positive, got {gap}")
    unknown_types = sorted(set(records["entity_type"].astype("str")) - set(ENTITY_TYPES))
    unknown_levels = sorted(set(records["severity"].astype("str")) - set(SEVERITIES))
    if unknown_types or unknown_levels:
        raise ValueError(
            f"records: unknown entity types {unknown_types} or severities {unknown_levels}; expected "
            f"{list(ENTITY_TYPES)} and {list(SEVERITIES)}"
        )
    rows = _ensemble_rows(records)
    if rows.empty:
        return IncidentGrouping(empty_frame(INCIDENT_DTYPES), empty_frame(MEMBER_DTYPES))
    rows["component"] = _components(rows, gap, link_logged_in_rows_by_ip)
    rows = _with_incident_ids(rows)
    rows["severity_rank"] = _entity_severity_ranks(records, rows)
    rows["allowed"] = _allowed(rows, allow_rules)
    incidents = _incident_rows(rows)
    members = rows[["entity_type", "entity_id", "incident_id"]].astype(MEMBER_DTYPES).reset_index(drop=True)
    logger.info("%d flagged rows grouped into %d incidents (gap %s)", len(rows), len(incidents), gap)
    return IncidentGrouping(incidents, members)


def top_incidents(incidents: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The `limit` incidents an analyst should look at first: worst severity, then highest ensemble
    score, then most rows, then the latest (the ensemble caps its score, so scores alone can tie)."""
    ranked = incidents.assign(_rank=incidents["max_severity"].map(_SEVERITY_RANK))
    ranked = ranked.sort_values(
        ["_rank", "ensemble_score", "row_count", "first_seen", "incident_id"],
        ascending=[False, False, False, False, True],
        kind="stable",
    )
    return ranked.drop(columns="_rank").head(limit).reset_index(drop=True)


# --- Linking -------------------------------------------------------------------------------------


def _ensemble_rows(records: pd.DataFrame) -> pd.DataFrame:
    """One row per ensemble-flagged entity, with its parsed rule, facts and top features."""
    ensemble = records.loc[records["detector_name"].astype("str") == DETECTOR_ENSEMBLE]
    rows = pd.DataFrame(
        {
            "entity_type": ensemble["entity_type"].astype("str").to_numpy(),
            "entity_id": ensemble["entity_id"].to_numpy(np.int64),
            "event_timestamp": ensemble["event_timestamp"].to_numpy().astype("datetime64[us]"),
            "score": ensemble["anomaly_score"].to_numpy(np.float64),
            "customer_id": ensemble["customer_id"].astype("Int64").array,
            "ip_address": ensemble["ip_address"].astype("str").array,
            "session_id": ensemble["session_id"].astype("str").array,
            "details": ensemble["details"].astype("str").array,
        }
    )
    repeated = rows.loc[rows.duplicated(["entity_type", "entity_id"]), ["entity_type", "entity_id"]]
    if len(repeated):
        raise ValueError(
            f"records: {len(repeated)} entities have more than one ensemble record, e.g. "
            f"{list(repeated.head(3).itertuples(index=False, name=None))}"
        )
    return rows.sort_values(["event_timestamp", "entity_type", "entity_id"], kind="stable").reset_index(drop=True)


def _components(rows: pd.DataFrame, gap: timedelta, every_row_by_ip: bool) -> np.ndarray:
    """Connected-component label of each row over the links of the module docstring."""
    anonymous = rows["customer_id"].isna().to_numpy() | every_row_by_ip
    keys = {
        "session": rows["session_id"],
        "customer": rows["customer_id"].astype("str").where(rows["customer_id"].notna()),
        # Logged-in rows get no IP key: a shared IP must not chain different customers' rows.
        "ip": rows["ip_address"].where(anonymous),
    }
    times = rows["event_timestamp"].to_numpy().astype("datetime64[us]").astype(np.int64)
    gap_us = int(gap / timedelta(microseconds=1))
    sources, targets = [], []
    for name, key in keys.items():
        known = key.notna().to_numpy() & (key.astype("str") != "").to_numpy()
        index = np.flatnonzero(known)
        if len(index) < 2:
            continue
        frame = pd.DataFrame(
            {
                "row": index,
                "key": rows["entity_type"].to_numpy()[index] + "|" + name + "|" + key.astype("str").to_numpy()[index],
                "time": times[index],
            }
        ).sort_values(["key", "time", "row"], kind="stable")
        same_key = frame["key"].to_numpy()[1:] == frame["key"].to_numpy()[:-1]
        close = np.diff(frame["time"].to_numpy()) <= gap_us
        linked = np.flatnonzero(same_key & close)
        ordered = frame["row"].to_numpy()
        sources.append(ordered[linked])
        targets.append(ordered[linked + 1])
    n = len(rows)
    source = np.concatenate(sources) if sources else np.empty(0, dtype=np.int64)
    target = np.concatenate(targets) if targets else np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(source), dtype=np.int8), (source, target)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def _with_incident_ids(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (sorted by time) with the id of their incident: that of the component's earliest row."""
    earliest = rows.groupby("component", sort=False).head(1)  # rows are in (time, type, id) order
    ids = {
        component: incident_id(entity_type, entity_id)
        for component, entity_type, entity_id in earliest[["component", "entity_type", "entity_id"]].itertuples(
            index=False, name=None
        )
    }
    return rows.assign(incident_id=rows["component"].map(ids))


def _entity_severity_ranks(records: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """The worst severity rank among all records of each row's entity."""
    ranks = pd.DataFrame(
        {
            "entity_type": records["entity_type"].astype("str").to_numpy(),
            "entity_id": records["entity_id"].to_numpy(np.int64),
            "rank": records["severity"].astype("str").map(_SEVERITY_RANK).to_numpy(np.int64),
        }
    )
    worst = ranks.groupby(["entity_type", "entity_id"])["rank"].max()
    keys = pd.MultiIndex.from_frame(rows[["entity_type", "entity_id"]])
    return worst.reindex(keys).to_numpy(np.int64)


def _allowed(rows: pd.DataFrame, allow_rules: pd.DataFrame | None) -> np.ndarray:
    """Whether each row's IP or customer is covered by an allow rule."""
    if allow_rules is None or allow_rules.empty:
        return np.zeros(len(rows), dtype=bool)
    require_columns(allow_rules, ALLOW_RULE_COLUMNS, "allow_rules")
    kinds = allow_rules["allow_kind"].astype("str")
    values = allow_rules["allow_value"].astype("str").str.strip()
    unknown = sorted(set(kinds) - {ALLOW_IP, ALLOW_CUSTOMER})
    if unknown:
        raise ValueError(f"allow_rules: unknown allow_kind {unknown}; expected '{ALLOW_IP}' or '{ALLOW_CUSTOMER}'")
    ips = set(values[kinds == ALLOW_IP])
    customers = set(values[kinds == ALLOW_CUSTOMER])
    by_ip = rows["ip_address"].isin(ips).to_numpy(dtype=bool)
    by_customer = rows["customer_id"].astype("str").isin(customers).to_numpy(dtype=bool)
    return by_ip | by_customer


# --- One row per incident ------------------------------------------------------------------------


def _incident_rows(rows: pd.DataFrame) -> pd.DataFrame:
    parsed = [_parsed_details(text) for text in rows["details"]]
    rows = rows.assign(
        rule=[details.get("rule") for details in parsed],
        facts=[details.get("facts") or {} for details in parsed],
        features=[_feature_names(details) for details in parsed],
    )
    groups = rows.groupby("incident_id", sort=False)
    incidents = groups.agg(
        entity_type=("entity_type", "first"),
        first_seen=("event_timestamp", "min"),
        last_seen=("event_timestamp", "max"),
        row_count=("entity_id", "size"),
        severity_rank=("severity_rank", "max"),
        ensemble_score=("score", "max"),
        suppressed=("allowed", "all"),
    )
    incidents["customer_ids"] = _distinct(rows, "customer_id", int)
    incidents["ip_addresses"] = _distinct(rows, "ip_address", str)
    incidents["session_ids"] = _distinct(rows, "session_id", str)
    orders = rows.loc[rows["entity_type"] == ENTITY_ORDER]
    incidents["order_ids"] = _distinct(orders, "entity_id", int).reindex(incidents.index)
    incidents["order_ids"] = incidents["order_ids"].apply(lambda value: value if isinstance(value, list) else [])
    incidents["max_severity"] = np.asarray(SEVERITIES, dtype=object)[incidents["severity_rank"].to_numpy()]
    incidents["top_features"] = groups["features"].agg(_top_features)
    incidents["summary"] = _summaries(rows, incidents)
    incidents = incidents.reset_index().sort_values(["first_seen", "incident_id"], kind="stable")
    return incidents[list(INCIDENT_COLUMNS)].astype(INCIDENT_DTYPES).reset_index(drop=True)


def _summaries(rows: pd.DataFrame, incidents: pd.DataFrame) -> list[str]:
    """Each incident's sentence, from its rows in time order (rows are sorted by time)."""
    known = rows[["customer_id", "ip_address"]].astype(object)
    known = known.where(rows[["customer_id", "ip_address"]].notna(), None)
    by_incident: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for incident, at, rule, facts, customer, ip in zip(
        rows["incident_id"].tolist(),
        rows["event_timestamp"].tolist(),
        rows["rule"].tolist(),
        rows["facts"].tolist(),
        known["customer_id"].tolist(),
        known["ip_address"].tolist(),
        strict=True,
    ):
        customer_id = None if customer is None else int(customer)
        by_incident[incident].append(
            {"event_timestamp": at, "rule": rule, "facts": facts, "customer_id": customer_id, "ip_address": ip}
        )
    return [
        summarise_incident(entity_type, by_incident[incident], (features or [None])[0])
        for incident, entity_type, features in zip(
            incidents.index, incidents["entity_type"], incidents["top_features"], strict=True
        )
    ]


def _distinct(rows: pd.DataFrame, column: str, kind: type) -> pd.Series:
    """Per incident, the sorted distinct known values of `column` as a list (empty when none)."""
    known = rows.loc[rows[column].notna() & (rows[column].astype("str") != ""), ["incident_id", column]]
    known = known.drop_duplicates().sort_values(["incident_id", column])
    lists: dict[str, list] = {incident: [] for incident in rows["incident_id"].unique()}
    for incident, value in zip(known["incident_id"].tolist(), known[column].tolist(), strict=True):
        lists[incident].append(kind(value))
    return pd.Series(lists, dtype="object").rename_axis("incident_id")


def _parsed_details(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        logger.warning("anomaly record details are not JSON: %.80s", text)
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _feature_names(details: dict[str, Any]) -> list[str]:
    return [str(item["feature"]) for item in details.get("top_features") or [] if isinstance(item, dict)]


def _top_features(per_row: pd.Series) -> list[str]:
    """The features named most often across the rows' explanations; ties by mean rank, then name."""
    counts: Counter[str] = Counter()
    ranks: Counter[str] = Counter()
    for features in per_row:
        for rank, name in enumerate(features):
            counts[name] += 1
            ranks[name] += rank
    ordered = sorted(counts, key=lambda name: (-counts[name], ranks[name] / counts[name], name))
    return ordered[:INCIDENT_TOP_FEATURES]


# --- Measured against the simulator's episodes ---------------------------------------------------

AGREEMENT_DTYPES: dict[str, str] = {
    "entity_type": "str",  # or "all"
    "caught_episodes": "int64",  # (episode, entity type) pairs with at least one row in an incident
    "episodes_in_one_incident": "int64",
    "episode_share": "float64",  # episodes_in_one_incident / caught_episodes (NaN when none)
    "incidents_with_episode": "int64",  # incidents holding at least one labelled row
    "incidents_with_one_episode": "int64",
    "incident_share": "float64",  # incidents_with_one_episode / incidents_with_episode
    "incidents_without_episode": "int64",  # incidents of unlabelled rows only: false alarms
}


def episode_incident_agreement(members: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """How well incidents match the simulator's injected episodes, per entity type and for all.

    ``members``: :attr:`IncidentGrouping.members`; ``labels``: ``simulation_labels`` rows
    (``entity_type, entity_id, episode_id``). An episode is caught for an entity type when one of
    its rows of that type is in an incident; it is counted per entity type, since an incident holds
    one type (an abnormal order and its purchase activity are one episode, two incidents). The
    grouping is right when each caught episode lies in one incident (``episode_share``) and each
    incident that holds labelled rows holds one episode (``incident_share``).
    """
    require_columns(members, tuple(MEMBER_DTYPES), "members")
    require_columns(labels, ("entity_type", "entity_id", "episode_id"), "labels")
    joined = members.merge(
        labels[["entity_type", "entity_id", "episode_id"]].astype({"entity_type": "str", "entity_id": "int64"}),
        on=["entity_type", "entity_id"],
        how="left",
    )
    rows = []
    for entity_type in (*ENTITY_TYPES, "all"):
        part = joined if entity_type == "all" else joined.loc[joined["entity_type"] == entity_type]
        labelled = part.loc[part["episode_id"].notna()]
        per_episode = labelled.groupby(["entity_type", "episode_id"])["incident_id"].nunique()
        per_incident = labelled.groupby("incident_id")["episode_id"].nunique()
        all_incidents = part["incident_id"].nunique()
        rows.append(
            {
                "entity_type": entity_type,
                "caught_episodes": len(per_episode),
                "episodes_in_one_incident": int((per_episode == 1).sum()),
                "episode_share": _share(int((per_episode == 1).sum()), len(per_episode)),
                "incidents_with_episode": len(per_incident),
                "incidents_with_one_episode": int((per_incident == 1).sum()),
                "incident_share": _share(int((per_incident == 1).sum()), len(per_incident)),
                "incidents_without_episode": all_incidents - len(per_incident),
            }
        )
    return pd.DataFrame(rows).astype(AGREEMENT_DTYPES)


def _share(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")
