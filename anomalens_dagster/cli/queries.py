"""Read-only queries: what `run` prints (row counts, store summary, top anomalies, evaluation), the
`anomalies` command, and what the store holds (landed rows, days with data, trained models)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
import duckdb
import pandas as pd

from anomalens_dagster.cli.common import (
    DB_HELP,
    canonical_severity,
    existing_db_path,
    read_connection,
    report_frame,
)
from anomalens_dagster.constants import (
    ANOMALIES,
    CONSOLIDATED_ANOMALIES,
    DETECTIONS_SCHEMA,
    DETECTOR_ENSEMBLE,
    DETECTOR_EVALUATION,
    ENTITY_ACTIVITY,
    ENTITY_ORDER,
    EVALUATION_ALL_KINDS,
    ML_SCHEMA,
    MODEL_REGISTRY,
    ORDER_ITEMS,
    ORDERS,
    SEVERITIES,
    SIMULATOR_SOURCE,
    STORE_SCHEMA,
    STORE_SUMMARY,
    USER_ACTIVITIES,
)
from anomalens_dagster.core.calibration import LABELS_VERDICTS
from anomalens_dagster.core.evaluation import NOT_EVALUATED, SPLIT_ALL, SPLIT_OUT_OF_TIME

TOP_ANOMALIES = 10


def table_row_counts(db_path: Path) -> list[tuple[str, int]]:
    """Rows of every table in the DuckDB file, schema by schema."""
    with read_connection(db_path) as conn:
        tables = conn.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY schema_name, table_name"
        ).fetchall()
        return [(table, int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])) for (table,) in tables]


def store_summary_rows(db_path: Path) -> pd.DataFrame | None:
    """The store_summary report table, or None before it was built."""
    return report_frame(
        db_path, f"SELECT table_name, rows, simulated_rows, landed_rows FROM {DETECTIONS_SCHEMA}.{STORE_SUMMARY}"
    )


def top_anomalies(db_path: Path, limit: int = TOP_ANOMALIES) -> pd.DataFrame | None:
    """The suspicious entities with the highest ensemble score, with the ensemble's reason."""
    return report_frame(
        db_path,
        f"""SELECT c.entity_type, c.entity_id, c.overall_severity AS severity,
                   round(c.ensemble_score, 2) AS ensemble, c.detectors,
                   coalesce(a.description, '') AS reason
            FROM {DETECTIONS_SCHEMA}.{CONSOLIDATED_ANOMALIES} AS c
            LEFT JOIN {DETECTIONS_SCHEMA}.{ANOMALIES} AS a
              ON a.entity_type = c.entity_type AND a.entity_id = c.entity_id AND a.detector_name = $ensemble
            ORDER BY c.ensemble_score DESC NULLS LAST, c.entity_type, c.entity_id
            LIMIT $limit""",
        {"ensemble": DETECTOR_ENSEMBLE, "limit": limit},
    )


def detection_quality(db_path: Path) -> pd.DataFrame | None:
    """The evaluation's headline rows (every anomaly kind pooled; every scored row, then the out-of-time rows
    when some day was scored after its models' training window), or None before any evaluation."""
    return report_frame(
        db_path,
        f"""SELECT split, entity_type, detector, n_flagged AS anomalies, precision, recall, f1, pr_auc,
                   episode_recall, normal_flag_rate, n_positive + n_unscored_positive AS labelled
            FROM {DETECTIONS_SCHEMA}.{DETECTOR_EVALUATION}
            WHERE anomaly_kind = $all AND split IN ($every_row, $out_of_time)
            ORDER BY split, entity_type, detector""",
        {"all": EVALUATION_ALL_KINDS, "every_row": SPLIT_ALL, "out_of_time": SPLIT_OUT_OF_TIME},
    )


def evaluation_labels_used(db_path: Path) -> str:
    """Which labels the stored evaluation used: the simulator's, or analysts' verdicts on a store without them."""
    with read_connection(db_path) as conn:
        try:
            rows = conn.execute(f"SELECT DISTINCT labels FROM {DETECTIONS_SCHEMA}.{DETECTOR_EVALUATION}").fetchall()
        except duckdb.Error:  # an evaluation stored before it said which labels it used
            rows = []
    return "analysts' verdicts" if rows == [(LABELS_VERDICTS,)] else "simulator's labels"


def print_detection_quality(db_path: Path) -> None:
    """Print the evaluation's headline rows, or that the days were not evaluated (no labels)."""
    evaluation = detection_quality(db_path)
    if evaluation is None:
        return
    if evaluation.empty or evaluation["labelled"].sum() == 0:
        click.echo(f"\nAnomalies found: {int(evaluation['anomalies'].sum()):,}; detection quality {NOT_EVALUATED}.")
        return
    click.echo(
        "\nAnomalies found and detection quality against the "
        f"{evaluation_labels_used(db_path)} (all kinds; split all = every "
        "scored day, out_of_time = the days after the models' training window):"
    )
    everything = evaluation["split"] == SPLIT_ALL
    if not everything.all():  # the anomalies found are those of every day: counted once
        click.echo(f"Anomalies found: {int(evaluation.loc[everything, 'anomalies'].sum()):,} (every scored day)")
    shown = evaluation.drop(columns="labelled")
    click.echo(shown.to_string(index=False, float_format=lambda value: f"{value:.3f}"))


ANOMALY_LIST_COLUMNS = (
    "event_timestamp",
    "entity_type",
    "entity_id",
    "detector_name",
    "severity",
    "anomaly_score",
    "customer_id",
    "ip_address",
    "session_id",
    "incident_id",
    "description",
)


def anomaly_records(
    db_path: Path,
    *,
    customer: int | None = None,
    ip: str | None = None,
    severity: str | None = None,
    since: dt.date | None = None,
    limit: int = 100,
) -> pd.DataFrame | None:
    """Anomaly records matching every filter given, newest first; None before any was written."""
    conditions, params = [], {"limit": limit}
    for column, value in (("customer_id", customer), ("ip_address", ip), ("severity", severity)):
        if value is not None:
            conditions.append(f"{column} = ${column}")
            params[column] = value
    if since is not None:
        conditions.append("event_timestamp >= $since")
        params["since"] = dt.datetime.combine(since, dt.time())
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return report_frame(
        db_path,
        f"""SELECT {", ".join(ANOMALY_LIST_COLUMNS)} FROM {DETECTIONS_SCHEMA}.{ANOMALIES} {where}
            ORDER BY event_timestamp DESC, entity_type, entity_id, detector_name LIMIT $limit""",
        params,
    )


@click.command(name="anomalies")
@click.option("--customer", type=int, default=None, help="Only this customer's anomalies (orders and activities).")
@click.option("--ip", default=None, help="Only activities from this IP address.")
@click.option(
    "--severity", type=click.Choice(SEVERITIES, case_sensitive=False), default=None, help="Only this severity."
)
@click.option(
    "--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Only events on or after this day."
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many records.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--db", default=None, help=DB_HELP)
def anomalies(
    customer: int | None,
    ip: str | None,
    severity: str | None,
    since: dt.datetime | None,
    limit: int,
    output_format: str,
    db: str | None,
) -> None:
    """List anomaly records, newest first: who (customer), where (IP, session), what and how severe.

    Reads read-only, waiting (bounded) while a run writes the file.
    """
    db_path = existing_db_path(db)
    try:
        records = anomaly_records(
            db_path,
            customer=customer,
            ip=ip,
            severity=canonical_severity(severity),
            since=since.date() if since else None,
            limit=limit,
        )
    except duckdb.BinderException as error:
        raise click.ClickException(
            f"the anomaly records in {db_path} predate the customer, IP, session or incident columns: "
            f"run `anomalens rebuild {ANOMALIES}` ({error})"
        ) from error
    if records is None:
        raise click.ClickException(f"{db_path} holds no anomaly records yet: materialise the {ANOMALIES} asset first")
    if output_format == "csv":
        click.echo(records.to_csv(index=False), nl=False)
    elif output_format == "json":
        click.echo(records.to_json(orient="records", date_format="iso", indent=2))
    elif records.empty:
        click.echo("No anomaly records match.")
    else:
        with pd.option_context("display.max_colwidth", 100, "display.width", 250):
            click.echo(records.to_string(index=False))


FACT_TABLES = (ORDERS, ORDER_ITEMS, USER_ACTIVITIES)


def landed_row_count(db_path: Path) -> int:
    """Store rows that came from landing files (any `source` but the simulator's); 0 for a new file."""
    if not db_path.exists():
        return 0
    counts = [
        report_frame(
            db_path,
            f"SELECT count(*) AS n FROM {STORE_SCHEMA}.{table} WHERE source <> $simulator",
            {"simulator": SIMULATOR_SOURCE},
        )
        for table in FACT_TABLES
    ]
    return sum(int(frame["n"].item()) for frame in counts if frame is not None)


def store_rows_between(db_path: Path, first: dt.date, last: dt.date) -> int:
    """Orders and activities the store holds from `first` to `last` (UTC days, inclusive)."""
    if not db_path.exists():
        return 0
    window = {"start": dt.datetime.combine(first, dt.time()), "end": dt.datetime.combine(last, dt.time())}
    window["end"] += dt.timedelta(days=1)
    counts = [
        report_frame(
            db_path,
            f"SELECT count(*) AS n FROM {STORE_SCHEMA}.{table} WHERE {column} >= $start AND {column} < $end",
            window,
        )
        for table, column in ((ORDERS, "created_at"), (USER_ACTIVITIES, "timestamp"))
    ]
    return sum(int(frame["n"].item()) for frame in counts if frame is not None)


def store_rows_by_entity(db_path: Path) -> dict[str, int]:
    """Rows the store holds per entity type (orders, activities), whatever their day."""
    if not db_path.exists():
        return {}
    counts = {}
    for entity_type, table in ((ENTITY_ORDER, ORDERS), (ENTITY_ACTIVITY, USER_ACTIVITIES)):
        frame = report_frame(db_path, f"SELECT count(*) AS n FROM {STORE_SCHEMA}.{table}")
        counts[entity_type] = 0 if frame is None else int(frame["n"].item())
    return counts


def registered_models(db_path: Path) -> set[tuple[str, str]]:
    """(detector, entity_type) of every detector with a version in the model registry."""
    if not db_path.exists():
        return set()
    models = report_frame(db_path, f"SELECT DISTINCT detector, entity_type FROM {ML_SCHEMA}.{MODEL_REGISTRY}")
    return set() if models is None else set(models.itertuples(index=False, name=None))
