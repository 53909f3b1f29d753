"""Ingest of landing-zone files: validated rows into the store, bad rows and unreadable files recorded."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from anomalens_dagster.configs import IngestConfig
from anomalens_dagster.constants import DUCKDB_POOL, OPS_GROUP, OPS_SCHEMA
from anomalens_dagster.core.landing import (
    INGEST_REJECTIONS,
    INGESTED_FILES,
    STATUS_QUARANTINED,
    FileIngest,
    ensure_ops_tables,
    ingest_delivery,
    list_landing_files,
    move_to_quarantine,
)
from anomalens_dagster.partitions import daily_partitions
from anomalens_dagster.resources import AnomaLensDuckDB, LandingZone

# Metadata key listing the UTC days whose store rows an ingest changed (JSON list of ISO dates).
INGESTED_DAYS_METADATA = "ingested_days"
FILES_METADATA = "files"


@dg.asset(
    name=INGESTED_FILES,
    group_name=OPS_GROUP,
    description=(
        "Log of landing-zone files ingested into the store: rows in, loaded and rejected, status. Each file is "
        "loaded in one transaction; identical content is never loaded twice; unreadable files are quarantined."
    ),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def ingested_files(
    context: dg.AssetExecutionContext, config: IngestConfig, duckdb: AnomaLensDuckDB, landing: LandingZone
) -> dg.MaterializeResult:
    not_names = [name for name in config.files if Path(name).name != name]
    if not_names:
        raise dg.Failure(f"ingest config `files` takes file names inside the landing folder, not paths: {not_names}")
    paths = [landing.path / name for name in config.files] if config.files else list_landing_files(landing.path)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise dg.Failure(f"landing files not found: {missing} (landing zone: {landing.path})")
    with duckdb.get_connection() as conn:
        results = ingest_delivery(conn, paths, datetime.now(UTC))
    for result in results:
        if result.status == STATUS_QUARANTINED:
            moved = move_to_quarantine(landing.path, result.path, result.reason or "")
            context.log.warning(f"{result.file}: quarantined to {moved}: {result.reason}")
    files = ingest_summary(results)
    context.log.info("\n" + (files.to_string(index=False) if len(files) else "no landing files"))
    report_changed_store_days(context, results)
    days = sorted({day.isoformat() for result in results for day in result.days})
    return dg.MaterializeResult(
        metadata={
            FILES_METADATA: dg.MetadataValue.json(files.to_dict(orient="records")),
            "preview": dg.MetadataValue.md(files.to_markdown(index=False) if len(files) else "_no landing files_"),
            INGESTED_DAYS_METADATA: dg.MetadataValue.json(days),
            "rows_in": int(files["rows_in"].sum()) if len(files) else 0,
            "rows_loaded": int(files["rows_loaded"].sum()) if len(files) else 0,
            "rows_rejected": int(files["rows_rejected"].sum()) if len(files) else 0,
        }
    )


def report_changed_store_days(context: dg.AssetExecutionContext, results: list[FileIngest]) -> None:
    """Record a materialisation of each store day a file added rows to (`orders`, `order_items`,
    `user_activities`), naming the file: the UI shows when and by which file a day changed, and the
    days downstream go stale and refresh by their automation condition."""
    existing = set(daily_partitions.get_partition_keys())
    for result in results:
        if not result.rows_loaded:
            continue
        for day in result.days:
            if day.isoformat() not in existing:
                context.log.warning(
                    f"{result.file}: rows of {day} are stored, but {day} is not a partition yet: they are scored "
                    "when the day is materialised"
                )
                continue
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=result.kind,
                    partition=day.isoformat(),
                    description=f"rows landed from {result.file}",
                    metadata={
                        "file": result.file,
                        "sha256": result.sha256,
                        "rows_loaded_from_file": result.rows_loaded,
                    },
                )
            )


def ingest_summary(results: list[FileIngest]) -> pd.DataFrame:
    """One row per file: file, kind, rows_in, rows_loaded, rows_rejected, status, reason."""
    return pd.DataFrame(
        [
            {
                "file": result.file,
                "kind": result.kind,
                "rows_in": result.rows_in,
                "rows_loaded": result.rows_loaded,
                "rows_rejected": result.rows_rejected,
                "status": result.status,
                "reason": result.reason or "",
            }
            for result in results
        ],
        columns=["file", "kind", "rows_in", "rows_loaded", "rows_rejected", "status", "reason"],
    )


@dg.asset_check(
    asset=ingested_files,
    description="Nothing is lost: per ingested file, rows_in = rows_loaded + rows_rejected, one rejection row each.",
    blocking=True,
    pool=DUCKDB_POOL,
)
def check_ingest_conserves_rows(duckdb: AnomaLensDuckDB) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        ensure_ops_tables(conn)
        broken = conn.execute(
            f"""SELECT f.file, f.sha256, f.rows_in, f.rows_loaded, f.rows_rejected, count(r.reason) AS rejection_rows
                FROM {OPS_SCHEMA}.{INGESTED_FILES} AS f
                LEFT JOIN {OPS_SCHEMA}.{INGEST_REJECTIONS} AS r ON r.sha256 = f.sha256 AND r.file = f.file
                GROUP BY ALL
                HAVING f.rows_in <> f.rows_loaded + f.rows_rejected OR count(r.reason) <> f.rows_rejected"""
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
