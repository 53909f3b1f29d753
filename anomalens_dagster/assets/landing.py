"""Ingest of landing-zone files: validated rows into the store, bad rows and unreadable files recorded."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from anomalens_dagster.configs import LANDING_SECTION, IngestConfig
from anomalens_dagster.constants import DUCKDB_POOL, OPS_GROUP, OPS_SCHEMA
from anomalens_dagster.core.landing import (
    CATALOG_KINDS,
    INGEST_REJECTIONS,
    INGESTED_FILES,
    PENDING_ROWS,
    STATUS_QUARANTINED,
    FileIngest,
    LandingSettings,
    PendingRetry,
    ensure_ops_tables,
    ingest_delivery,
    list_landing_files,
    move_to_quarantine,
    retry_pending_rows,
)
from anomalens_dagster.partitions import daily_partitions
from anomalens_dagster.resources import AnomaLensDuckDB, LandingZone
from anomalens_dagster.settings import SettingsFile

# Metadata key listing the UTC days whose store rows an ingest changed (JSON list of ISO dates).
INGESTED_DAYS_METADATA = "ingested_days"
FILES_METADATA = "files"
ROW_COUNT_COLUMNS = ["rows_loaded", "rows_updated", "rows_already_loaded", "rows_pending", "rows_rejected"]
SUMMARY_COLUMNS = ["file", "kind", "delivery_id", "rows_in", *ROW_COUNT_COLUMNS, "status", "reason"]


@dg.asset(
    name=INGESTED_FILES,
    group_name=OPS_GROUP,
    description=(
        "Log of landing-zone files delivered to the store: per delivery, rows in and where each went (loaded, "
        "updated, already loaded, pending, rejected), and the file's status. Each file is written in one "
        "transaction; rows pending a reference load once it arrives; unreadable files are quarantined."
    ),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def ingested_files(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    duckdb: AnomaLensDuckDB,
    landing: LandingZone,
    settings: SettingsFile,
) -> dg.MaterializeResult:
    not_names = [name for name in config.files if Path(name).name != name]
    if not_names:
        raise dg.Failure(f"ingest config `files` takes file names inside the landing folder, not paths: {not_names}")
    paths = [landing.path / name for name in config.files] if config.files else list_landing_files(landing.path)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise dg.Failure(f"landing files not found: {missing} (landing zone: {landing.path})")
    # Read from the settings file at run time: the landing sensor's runs carry no run config.
    landing_settings = LandingSettings.from_section(settings.sections().get(LANDING_SECTION))
    now = datetime.now(UTC)
    with duckdb.get_connection() as conn:
        results = ingest_delivery(conn, paths, now, landing_settings)
        retry = retry_pending_rows(conn, now, landing_settings)
    for result in results:
        if result.status == STATUS_QUARANTINED:
            moved = move_to_quarantine(landing.path, result.path, result.reason or "")
            context.log.warning(f"{result.file}: quarantined to {moved}: {result.reason}")
    files = ingest_summary(results)
    context.log.info("\n" + (files.to_string(index=False) if len(files) else "no landing files"))
    report_changed_store_days(context, results, retry)
    days = sorted(
        {day.isoformat() for result in results for day in result.days}
        | {day.isoformat() for kind_days in retry.days_by_kind.values() for day in kind_days}
    )
    unknown_values = _unknown_values(results)
    return dg.MaterializeResult(
        metadata={
            FILES_METADATA: dg.MetadataValue.json(files.to_dict(orient="records")),
            "preview": dg.MetadataValue.md(files.to_markdown(index=False) if len(files) else "_no landing files_"),
            INGESTED_DAYS_METADATA: dg.MetadataValue.json(days),
            "rows_in": int(files["rows_in"].sum()) if len(files) else 0,
            **{name: int(files[name].sum()) if len(files) else 0 for name in ROW_COUNT_COLUMNS},
            "pending_rows_settled": retry.loaded + retry.updated + retry.already_loaded + retry.rejected,
            "pending_rows_loaded": retry.loaded,
            "pending_rows_rejected": retry.rejected,
            "pending_rows_waiting": retry.still_pending,
            "unknown_values": dg.MetadataValue.json(unknown_values),
        }
    )


def report_changed_store_days(
    context: dg.AssetExecutionContext, results: list[FileIngest], retry: PendingRetry | None = None
) -> None:
    """Record a materialisation of each store day a delivery added rows to (`orders`, `order_items`,
    `user_activities`), naming the file, and of each catalogue table it changed (unpartitioned): the
    UI shows when and by which file a table changed, and what depends on it goes stale and refreshes
    by its automation condition. Rows of earlier deliveries that were pending and loaded now count too."""
    existing = set(daily_partitions.get_partition_keys())
    for result in results:
        if not result.changed_store:
            continue
        metadata = {
            "file": result.file,
            "sha256": result.sha256,
            "delivery_id": result.delivery_id,
            "rows_loaded_from_file": result.rows_loaded,
            "rows_updated_from_file": result.rows_updated,
        }
        if result.kind in CATALOG_KINDS:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=result.kind, description=f"rows landed from {result.file}", metadata=metadata
                )
            )
            continue
        for day in result.days:
            if _is_partition(context, result.file, day.isoformat(), existing):
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=result.kind,
                        partition=day.isoformat(),
                        description=f"rows landed from {result.file}",
                        metadata=metadata,
                    )
                )
    if retry is None:
        return
    for kind in sorted(retry.catalog_kinds_changed):
        context.log_event(dg.AssetMaterialization(asset_key=kind, description="pending rows landed"))
    for kind, kind_days in sorted(retry.days_by_kind.items()):
        for day in sorted(kind_days):
            if _is_partition(context, "pending rows", day.isoformat(), existing):
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=kind, partition=day.isoformat(), description="pending rows landed"
                    )
                )


def _is_partition(context: dg.AssetExecutionContext, what: str, day: str, existing: set[str]) -> bool:
    if day in existing:
        return True
    context.log.warning(
        f"{what}: rows of {day} are stored, but {day} is not a partition yet: they are scored when the day is "
        "materialised"
    )
    return False


def _unknown_values(results: list[FileIngest]) -> dict[str, dict[str, dict[str, int]]]:
    """Per kind and column, the values outside the vocabulary that loaded as given, with their counts."""
    merged: dict[str, dict[str, dict[str, int]]] = {}
    for result in results:
        for column, counts in result.unknown_values.items():
            into = merged.setdefault(str(result.kind), {}).setdefault(column, {})
            for value, count in counts.items():
                into[value] = into.get(value, 0) + count
    return merged


def ingest_summary(results: list[FileIngest]) -> pd.DataFrame:
    """One row per delivered file: file, kind, delivery id, rows in, rows per outcome, status, reason."""
    return pd.DataFrame(
        [
            {
                "file": result.file,
                "kind": result.kind,
                "delivery_id": result.delivery_id,
                "rows_in": result.rows_in,
                "rows_loaded": result.rows_loaded,
                "rows_updated": result.rows_updated,
                "rows_already_loaded": result.rows_already_loaded,
                "rows_pending": result.rows_pending,
                "rows_rejected": result.rows_rejected,
                "status": result.status,
                "reason": result.reason or "",
            }
            for result in results
        ],
        columns=SUMMARY_COLUMNS,
    )


@dg.asset_check(
    asset=ingested_files,
    description=(
        "Nothing is lost: per delivery, rows_in = loaded + updated + already_loaded + pending + rejected, with one "
        "rejection row per rejected row and one parked row per pending row."
    ),
    blocking=True,
    pool=DUCKDB_POOL,
)
def check_ingest_conserves_rows(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        ensure_ops_tables(conn)
        # Deliveries logged before delivery ids existed match their rejections by file and content.
        broken = conn.execute(
            f"""WITH rejected AS (
                    SELECT f.delivery_id, f.file, f.sha256, count(r.reason) AS rejection_rows
                    FROM {OPS_SCHEMA}.{INGESTED_FILES} AS f
                    LEFT JOIN {OPS_SCHEMA}.{INGEST_REJECTIONS} AS r
                        ON (r.delivery_id = f.delivery_id)
                        OR (f.delivery_id IS NULL AND r.delivery_id IS NULL AND r.sha256 = f.sha256 AND r.file = f.file)
                    GROUP BY ALL),
                parked AS (
                    SELECT delivery_id, count(*) AS pending_rows FROM {OPS_SCHEMA}.{PENDING_ROWS} GROUP BY ALL)
                SELECT f.file, f.sha256, f.delivery_id, f.rows_in, f.rows_loaded, f.rows_updated,
                       f.rows_already_loaded, f.rows_pending, f.rows_rejected, r.rejection_rows,
                       coalesce(p.pending_rows, 0) AS pending_rows
                FROM {OPS_SCHEMA}.{INGESTED_FILES} AS f
                JOIN rejected AS r ON r.file = f.file AND r.sha256 = f.sha256
                    AND r.delivery_id IS NOT DISTINCT FROM f.delivery_id
                LEFT JOIN parked AS p ON p.delivery_id = f.delivery_id
                WHERE f.rows_in <> f.rows_loaded + coalesce(f.rows_updated, 0) + coalesce(f.rows_already_loaded, 0)
                                   + coalesce(f.rows_pending, 0) + f.rows_rejected
                   OR r.rejection_rows <> f.rows_rejected
                   OR coalesce(p.pending_rows, 0) <> coalesce(f.rows_pending, 0)"""
        ).df()
        (files,) = conn.execute(f"SELECT count(*) FROM {OPS_SCHEMA}.{INGESTED_FILES}").fetchall()[0]
    return dg.AssetCheckResult(
        passed=broken.empty,
        metadata={
            "files_checked": files,
            "files_not_conserved": len(broken),
            "not_conserved": dg.MetadataValue.json(json.loads(broken.to_json(orient="records"))),
        },
    )


landing_checks = [check_ingest_conserves_rows]
