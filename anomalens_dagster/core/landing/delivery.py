"""A delivery of landing files prepared against the store and written, one transaction per file."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from anomalens_dagster.constants import CUSTOMERS, OPS_SCHEMA, ORDER_ITEMS, ORDERS, USER_ACTIVITIES
from anomalens_dagster.core.feedback import RecordedVerdict, ensure_feedback_tables, insert_feedback_rows
from anomalens_dagster.core.landing.ids import IdMap
from anomalens_dagster.core.landing.mapping import LandingSettings, parse_timestamps
from anomalens_dagster.core.landing.readers import RawFile, file_sha256, landing_file_kind, read_landing_file
from anomalens_dagster.core.landing.rules import (
    FACT_KINDS,
    FEEDBACK_KIND,
    FILE_KINDS,
    INGESTED_FILES,
    LANDING_KINDS,
    STATUS_DUPLICATE,
    STATUS_LOADED,
    STATUS_PARTIAL,
    STATUS_QUARANTINED,
    STATUS_REJECTED,
    TIME_COLUMN_BY_KIND,
    UnreadableFileError,
    landing_columns,
    naive_utc,
    rejection_frame,
    store_columns,
)
from anomalens_dagster.core.landing.validation import INTEGER_TEXT, unknown_values_of, validate_rows
from anomalens_dagster.core.landing.verdicts import landed_feedback_rows, validate_feedback_rows
from anomalens_dagster.core.landing.writes import (
    compare_with_store,
    days_of,
    ensure_ops_tables,
    insert_id_map,
    insert_new_rows,
    insert_rejections,
    order_days,
    park_pending_rows,
    replace_rows,
    store_id_map,
    store_key_lookup,
)
from anomalens_dagster.core.warehouse import ensure_store_tables, qualified, table_exists, transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FileIngest:
    """What ingesting one delivered file does: every row of it in exactly one outcome, and its status.

    `loaded` (new rows) and `updated` (changed catalogue rows) have the store table's columns
    (`source` = file, for facts); `rows_already_loaded` counts rows identical to the stored ones;
    `pending` holds the text rows waiting for a reference; `rejections` REJECTION_COLUMNS. `days`
    are the days (UTC) of the loaded fact rows — an order item's is its order's — so the caller can
    refresh those partitions. `delivery_id` names this delivery of the file (the same bytes
    delivered again are another delivery). `reason` says why a file was quarantined;
    `unknown_values` counts values outside a column's vocabulary (loaded as given).
    """

    path: Path
    file: str
    kind: str | None
    sha256: str
    rows_in: int
    loaded: pd.DataFrame
    rejections: pd.DataFrame
    status: str
    reason: str | None = None
    days: tuple[dt.date, ...] = ()
    delivery_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    updated: pd.DataFrame = field(default_factory=pd.DataFrame)
    rows_already_loaded: int = 0
    pending: pd.DataFrame = field(default_factory=pd.DataFrame)
    unknown_values: dict[str, dict[str, int]] = field(default_factory=dict)
    new_ids: pd.DataFrame = field(default_factory=pd.DataFrame)  # ops.id_map rows for its text ids
    verdicts: tuple[RecordedVerdict, ...] = ()  # a feedback file's verdicts to append (`loaded` lists them)

    def __post_init__(self) -> None:
        accounted = self.rows_loaded + self.rows_updated + self.rows_already_loaded + self.rows_pending
        if self.rows_in != accounted + self.rows_rejected:
            raise ValueError(
                f"{self.file}: {self.rows_in} rows in but {self.rows_loaded} loaded + {self.rows_updated} updated + "
                f"{self.rows_already_loaded} already loaded + {self.rows_pending} pending + "
                f"{self.rows_rejected} rejected"
            )

    @property
    def rows_loaded(self) -> int:
        return len(self.loaded)

    @property
    def rows_updated(self) -> int:
        return len(self.updated)

    @property
    def rows_pending(self) -> int:
        return len(self.pending)

    @property
    def rows_rejected(self) -> int:
        return len(self.rejections)

    @property
    def changed_store(self) -> bool:
        return bool(self.rows_loaded or self.rows_updated)


def file_status(rows_in: int, rows_rejected: int, changed_store: bool, delivered_before: bool) -> str:
    """`rejected` (every row), `partial` (some rows rejected), `duplicate` (bytes delivered before that
    changed nothing), else `loaded`."""
    if rows_in and rows_rejected == rows_in:
        return STATUS_REJECTED
    if rows_rejected:
        return STATUS_PARTIAL
    return STATUS_DUPLICATE if delivered_before and not changed_store else STATUS_LOADED


def prepare_delivery(
    conn: duckdb.DuckDBPyConnection,
    paths: Iterable[str | os.PathLike],
    now: dt.datetime,
    settings: LandingSettings | None = None,
) -> list[FileIngest]:
    """Read and validate a delivery of landing files against the store; writes nothing.

    Kinds are taken in dependency order (LANDING_KINDS): references see the store and the good rows
    of the kinds before them in the delivery (first-time customers with their first orders).
    Results come in that order (each kind's files in the given order), unknown kinds last: write
    them in this order. An unreadable file is `quarantined` with its reason; `settings` maps the
    store's columns and values (default: none, naive timestamps in UTC).
    """
    settings = settings or LandingSettings()
    paths = sorted(dict.fromkeys(Path(path) for path in paths), key=_kind_rank)
    lookup = store_key_lookup(conn)
    id_map = store_id_map(conn)
    results: dict[Path, FileIngest] = {}
    raw_by_kind: dict[str, list[tuple[Path, str, RawFile]]] = {kind: [] for kind in FILE_KINDS}
    seen: set[str] = set()
    delivered_before: dict[Path, bool] = {}
    for path in paths:
        sha = file_sha256(path)
        delivered_before[path] = sha in seen or _delivered_before(conn, sha)
        seen.add(sha)
        try:
            kind = landing_file_kind(path)
            raw = read_landing_file(path, settings.mapping(kind))
        except UnreadableFileError as error:
            results[path] = _empty_result(path, sha, STATUS_QUARANTINED, reason=error.reason)
            continue
        raw_by_kind[raw.kind].append((path, sha, raw))

    delivered: dict[str, np.ndarray] = {}
    good_by_kind: dict[str, pd.DataFrame] = {}
    for kind in LANDING_KINDS:
        files = raw_by_kind[kind]
        if not files:
            continue
        rows = pd.concat([raw.rows.assign(file=raw.file) for _, _, raw in files], ignore_index=True)
        validated = validate_rows(
            kind, rows, now=now, in_store=lookup, delivered=delivered, timezone=settings.timezone, id_map=id_map
        )
        delivered[kind] = validated.good["id"].to_numpy(dtype="int64")
        good_by_kind[kind] = validated.good
        compared = compare_with_store(conn, kind, validated.good)
        rejections = pd.concat([validated.rejections, compared.conflicts], ignore_index=True)
        new = compared.new
        if kind == CUSTOMERS:
            new = _first_seen(new, raw_by_kind, settings, id_map, now)
        for path, sha, raw in files:
            mine = new[new["file"] == raw.file].reset_index(drop=True)
            refused = pd.concat(
                [raw.unreadable_rows, rejections[rejections["file"] == raw.file]], ignore_index=True
            ).sort_values("line", kind="stable", ignore_index=True)
            updated = compared.updated[compared.updated["file"] == raw.file].reset_index(drop=True)
            result = FileIngest(
                path,
                raw.file,
                kind,
                sha,
                raw.rows_in,
                mine,
                refused,
                STATUS_LOADED,
                days=_fact_days(conn, kind, mine, good_by_kind),
                updated=updated,
                rows_already_loaded=int((compared.identical["file"] == raw.file).sum()),
                pending=validated.pending[validated.pending["file"] == raw.file].reset_index(drop=True),
                unknown_values=unknown_values_of(kind, validated.good[validated.good["file"] == raw.file]),
                new_ids=id_map.assigned(kind, validated.good.loc[validated.good["file"] == raw.file, "id"]),
            )
            status = file_status(result.rows_in, result.rows_rejected, result.changed_store, delivered_before[path])
            results[path] = _with_status(result, status)
            logger.info(
                "%s: %d rows in, %d new, %d updated, %d already loaded, %d pending, %d rejected",
                raw.file,
                result.rows_in,
                result.rows_loaded,
                result.rows_updated,
                result.rows_already_loaded,
                result.rows_pending,
                result.rows_rejected,
            )
    for path, sha, raw in raw_by_kind[FEEDBACK_KIND]:
        results[path] = _feedback_ingest(conn, path, sha, raw, now, delivered, delivered_before[path])
    return [results[path] for path in paths]


def _feedback_ingest(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    sha: str,
    raw: RawFile,
    now: dt.datetime,
    delivered: dict[str, np.ndarray],
    delivered_before: bool,
) -> FileIngest:
    """A feedback file: its valid verdicts to append (already loaded when these bytes were delivered
    before: appending them again would undo the verdicts given since), and a rejection per bad row."""
    verdicts, rejections = validate_feedback_rows(conn, raw.rows, raw.file, now, delivered)
    rejections = pd.concat([raw.unreadable_rows, rejections], ignore_index=True).sort_values(
        "line", kind="stable", ignore_index=True
    )
    appended = () if delivered_before else tuple(verdicts)
    loaded = pd.DataFrame(
        {
            "feedback_id": [item.feedback_id for item in appended],
            "target": [item.verdict.target for item in appended],
            "verdict": [item.verdict.verdict for item in appended],
        }
    )
    result = FileIngest(
        path,
        raw.file,
        FEEDBACK_KIND,
        sha,
        raw.rows_in,
        loaded,
        rejections,
        STATUS_LOADED,
        rows_already_loaded=len(verdicts) - len(appended),
        pending=pd.DataFrame(),
        verdicts=appended,
    )
    status = file_status(result.rows_in, result.rows_rejected, result.changed_store, delivered_before)
    logger.info(
        "%s: %d rows in, %d verdicts, %d already loaded, %d rejected",
        raw.file,
        result.rows_in,
        result.rows_loaded,
        result.rows_already_loaded,
        result.rows_rejected,
    )
    return _with_status(result, status)


def _with_status(result: FileIngest, status: str) -> FileIngest:
    return FileIngest(**{**result.__dict__, "status": status})


def _first_seen(
    customers: pd.DataFrame, raw_by_kind: dict, settings: LandingSettings, id_map: IdMap, now: dt.datetime
) -> pd.DataFrame:
    """New customers without `created_at`: the first time the delivery's orders or activities show
    them, else the time of the ingest (the store needs a sign-up time)."""
    missing = customers["created_at"].isna()
    if not missing.any():
        return customers
    seen: list[pd.DataFrame] = []
    for kind, column in ((ORDERS, "created_at"), (USER_ACTIVITIES, "timestamp")):
        for _, _, raw in raw_by_kind[kind]:
            ids = _customer_ids(raw.rows["customer_id"], id_map)
            times = parse_timestamps(raw.rows[column], settings.timezone)
            seen.append(pd.DataFrame({"id": ids, "at": times}).dropna())
    first = pd.concat(seen).groupby("id")["at"].min().to_dict() if seen else {}
    ingest_time = pd.Timestamp(naive_utc(now))
    filled = pd.Series([first.get(int(i), ingest_time) for i in customers["id"]], index=customers.index)
    customers = customers.copy()
    customers["created_at"] = customers["created_at"].where(~missing, filled).astype("datetime64[us]")
    return customers


def _customer_ids(text: pd.Series, id_map: IdMap) -> pd.Series:
    """Customer references as written in a file, as the store's integer ids (NA where unknown)."""
    stripped = text.str.strip()
    integer = stripped.str.fullmatch(INTEGER_TEXT).fillna(False).to_numpy(dtype=bool)
    textual = stripped.notna().to_numpy() & ~integer
    ids = pd.Series(pd.NA, index=text.index, dtype="Int64")
    ids[integer] = pd.to_numeric(stripped[integer].str.replace(r"\.0*$", "", regex=True)).to_numpy(dtype="int64")
    if textual.any():
        # `.array` keeps Int64 (see validation._text_ids_resolved).
        ids[textual] = id_map.resolve(CUSTOMERS, stripped[textual], assign=False).array
    return ids


def _fact_days(conn, kind: str, loaded: pd.DataFrame, good_by_kind: dict[str, pd.DataFrame]) -> tuple[dt.date, ...]:
    if kind not in FACT_KINDS or loaded.empty:
        return ()
    if kind == ORDER_ITEMS:
        orders = good_by_kind.get(ORDERS, pd.DataFrame({"id": [], "created_at": []}))
        return order_days(conn, loaded["order_id"], orders[["id", "created_at"]])
    return days_of(loaded[TIME_COLUMN_BY_KIND[kind]])


def write_file_ingest(conn: duckdb.DuckDBPyConnection, result: FileIngest, ingested_at: dt.datetime) -> FileIngest:
    """Write one delivered file in one transaction: its new and updated rows, its rejections, its
    pending rows and its line in ops.ingested_files. A quarantined or duplicate file gets its line too.

    Writing the same result twice writes it once, and new rows whose id the store meanwhile holds
    (a re-run after a write that did commit) are left alone, so no row loads twice. Returns the result.
    """
    ensure_store_tables(conn)
    ensure_ops_tables(conn)
    ingested_at = naive_utc(ingested_at)
    with transaction(conn):
        if _recorded(conn, result.delivery_id):
            return result
        if result.kind == FEEDBACK_KIND and result.verdicts:
            ensure_feedback_tables(conn)
            insert_feedback_rows(conn, landed_feedback_rows(list(result.verdicts), result.file, ingested_at))
        elif result.kind is not None and result.status != STATUS_QUARANTINED:
            insert_new_rows(conn, result.kind, result.loaded)
            replace_rows(conn, result.kind, result.updated)
            park_pending_rows(conn, result.kind, result.pending, result.delivery_id, ingested_at)
            insert_id_map(conn, result.new_ids, ingested_at)
        insert_rejections(conn, result.rejections, result.sha256, result.delivery_id, ingested_at)
        conn.execute(
            f"""INSERT INTO {qualified(INGESTED_FILES, OPS_SCHEMA)}
                (file, kind, sha256, rows_in, rows_loaded, rows_rejected, status, reason, ingested_at,
                 delivery_id, rows_updated, rows_already_loaded, rows_pending)
                VALUES ($file, $kind, $sha256, $rows_in, $rows_loaded, $rows_rejected, $status, $reason, $at,
                        $delivery, $rows_updated, $rows_already_loaded, $rows_pending)""",
            {
                "file": result.file,
                "kind": result.kind,
                "sha256": result.sha256,
                "rows_in": result.rows_in,
                "rows_loaded": result.rows_loaded,
                "rows_rejected": result.rows_rejected,
                "status": result.status,
                "reason": result.reason,
                "at": ingested_at,
                "delivery": result.delivery_id,
                "rows_updated": result.rows_updated,
                "rows_already_loaded": result.rows_already_loaded,
                "rows_pending": result.rows_pending,
            },
        )
    return result


def ingest_delivery(
    conn: duckdb.DuckDBPyConnection,
    paths: Iterable[str | os.PathLike],
    now: dt.datetime,
    settings: LandingSettings | None = None,
) -> list[FileIngest]:
    """Prepare a delivery and write each file's result (one transaction per file), in order.

    Retrying pending rows is a separate step (`retry_pending_rows`), after the delivery is written.
    Moving quarantined files away is left to the caller (`move_to_quarantine`).
    """
    return [write_file_ingest(conn, result, now) for result in prepare_delivery(conn, paths, now, settings)]


def _kind_rank(path: Path) -> int:
    try:
        return FILE_KINDS.index(landing_file_kind(path))
    except UnreadableFileError:
        return len(FILE_KINDS)


def _delivered_before(conn: duckdb.DuckDBPyConnection, sha256: str) -> bool:
    if not table_exists(conn, INGESTED_FILES, OPS_SCHEMA):
        return False
    # fetchall, not fetchone: a half-read result blocks the connection for the statements that follow.
    ((found,),) = conn.execute(
        f"SELECT count(*) FROM {qualified(INGESTED_FILES, OPS_SCHEMA)} WHERE sha256 = $sha256 AND status <> $bad",
        {"sha256": sha256, "bad": STATUS_QUARANTINED},
    ).fetchall()
    return found > 0


def _recorded(conn: duckdb.DuckDBPyConnection, delivery_id: str) -> bool:
    ((found,),) = conn.execute(
        f"SELECT count(*) FROM {qualified(INGESTED_FILES, OPS_SCHEMA)} WHERE delivery_id = $delivery",
        {"delivery": delivery_id},
    ).fetchall()
    return found > 0


def _empty_result(path: Path, sha256: str, status: str, reason: str | None = None) -> FileIngest:
    try:
        kind: str | None = landing_file_kind(path)
    except UnreadableFileError:
        kind = None
    loaded = pd.DataFrame(columns=list(store_columns(kind))) if kind else pd.DataFrame()
    pending = pd.DataFrame(columns=["file", "line", *landing_columns(kind)]) if kind else pd.DataFrame()
    return FileIngest(
        path, path.name, kind, sha256, 0, loaded, rejection_frame([], path.name), status, reason, pending=pending
    )
