"""Lake maintenance: expire old DuckLake snapshots and delete the Parquet files nothing reads any more.

Rewriting a day adds new files and keeps the old ones for the snapshots that still read them, so a
lake rewritten daily grows until its snapshots expire. On the DuckDB file there is nothing to do
(DuckDB reuses the file's freed blocks).
"""

import dagster as dg

from anomalens_dagster.constants import DUCKDB_WRITER_TAGS
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.scaleout.lake import AnomaLensDuckLake, expire_and_clean
from anomalens_dagster.scaleout.settings import storage_settings


@dg.op(
    description="Merge small files, expire snapshots older than `storage.snapshot_retention_days` and delete the "
    "files only they read (DuckLake); nothing on the DuckDB file."
)
def expire_lake_snapshots(context: dg.OpExecutionContext, duckdb: AnomaLensDuckDB) -> None:
    if not isinstance(duckdb, AnomaLensDuckLake):
        context.log.info("DuckDB file storage: no snapshots to expire")
        return
    retention_days = storage_settings().snapshot_retention_days
    with duckdb.get_connection() as conn:
        outcome = expire_and_clean(conn, retention_days)
    context.log.info(
        f"expired {outcome['snapshots_expired']} snapshots older than {retention_days:g} days, "
        f"deleted {outcome['files_deleted']} files"
    )


@dg.job(description="Expire old DuckLake snapshots and delete the data files only they read.", tags=DUCKDB_WRITER_TAGS)
def lake_maintenance_job() -> None:
    expire_lake_snapshots()


def lake_maintenance_schedules() -> list[dg.ScheduleDefinition]:
    """The nightly maintenance schedule, running by default, where the settings choose DuckLake; none otherwise."""
    if storage_settings().backend != "ducklake":
        return []
    return [
        dg.ScheduleDefinition(
            name="lake_maintenance_schedule",
            job=lake_maintenance_job,
            cron_schedule="30 3 * * *",
            description="Nightly (03:30 UTC): expire DuckLake snapshots past their retention and clean their files.",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
    ]
