"""`anomalens incidents`, and the top incidents `run` and `ingest --detect` print."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
import pandas as pd

from anomalens_dagster.cli.common import DB_HELP, canonical_severity, existing_db_path, report_frame
from anomalens_dagster.constants import DETECTIONS_SCHEMA, INCIDENTS, SEVERITIES

TOP_INCIDENTS = 10

INCIDENT_LIST_COLUMNS = (
    "incident_id",
    "entity_type",
    "first_seen",
    "last_seen",
    "row_count",
    "max_severity",
    "ensemble_score",
    "suppressed",
    "customer_ids",
    "ip_addresses",
    "top_features",
    "summary",
)
# What an analyst looks at first: the worst severity, then the highest score, then the biggest, then the latest
# (the ensemble caps its score, so scores alone can tie).
INCIDENT_ORDER = (
    "list_position($severities, max_severity) DESC, ensemble_score DESC NULLS LAST, row_count DESC, "
    "first_seen DESC, incident_id"
)


def incident_rows(
    db_path: Path,
    *,
    customer: int | None = None,
    ip: str | None = None,
    severity: str | None = None,
    since: dt.date | None = None,
    limit: int = 100,
) -> pd.DataFrame | None:
    """Incidents matching every filter given, most severe first; None before any was written.

    ``since`` is event time: incidents still going on that day or later (``last_seen``) match.
    """
    conditions, params = [], {"limit": limit, "severities": list(SEVERITIES)}
    if customer is not None:
        conditions.append("list_contains(customer_ids, $customer)")
        params["customer"] = customer
    if ip is not None:
        conditions.append("list_contains(ip_addresses, $ip)")
        params["ip"] = ip
    if severity is not None:
        conditions.append("max_severity = $severity")
        params["severity"] = severity
    if since is not None:
        conditions.append("last_seen >= $since")
        params["since"] = dt.datetime.combine(since, dt.time())
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return report_frame(
        db_path,
        f"""SELECT {", ".join(INCIDENT_LIST_COLUMNS)} FROM {DETECTIONS_SCHEMA}.{INCIDENTS} {where}
            ORDER BY {INCIDENT_ORDER} LIMIT $limit""",
        params,
    )


def top_incidents(db_path: Path, limit: int = TOP_INCIDENTS) -> pd.DataFrame | None:
    """The incidents to look at first, in a few columns that fit a terminal; None before any was written."""
    return report_frame(
        db_path,
        f"""SELECT incident_id, max_severity AS severity, round(ensemble_score, 2) AS ensemble,
                   row_count AS "rows", strftime(first_seen, '%Y-%m-%d %H:%M') AS first_seen, summary
            FROM {DETECTIONS_SCHEMA}.{INCIDENTS} ORDER BY {INCIDENT_ORDER} LIMIT $limit""",
        {"limit": limit, "severities": list(SEVERITIES)},
    )


def print_top_incidents(db_path: Path) -> None:
    """Print the top incidents, when the incidents table exists."""
    top = top_incidents(db_path)
    if top is None:
        return
    if top.empty:
        click.echo("\nNo incidents: the ensemble flagged nothing.")
        return
    click.echo(
        f"\nTop {len(top)} incidents (most severe, then highest ensemble score; `anomalens incidents` lists all):"
    )
    with pd.option_context("display.max_colwidth", 110, "display.width", 250):
        click.echo(top.to_string(index=False))


@click.command(name="incidents")
@click.option(
    "--severity", type=click.Choice(SEVERITIES, case_sensitive=False), default=None, help="Only this severity."
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only incidents whose events reach this day or later (event time, UTC).",
)
@click.option("--customer", type=int, default=None, help="Only incidents involving this customer.")
@click.option("--ip", default=None, help="Only incidents involving this IP address.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--db", default=None, help=DB_HELP)
def incidents(
    severity: str | None,
    since: dt.datetime | None,
    customer: int | None,
    ip: str | None,
    limit: int,
    output_format: str,
    db: str | None,
) -> None:
    """List incidents (flagged rows grouped by session, customer or IP), most severe first.

    Reads read-only, waiting (bounded) while a run writes the file.
    """
    db_path = existing_db_path(db)
    rows = incident_rows(
        db_path,
        customer=customer,
        ip=ip,
        severity=canonical_severity(severity),
        since=since.date() if since else None,
        limit=limit,
    )
    if rows is None:
        raise click.ClickException(f"{db_path} holds no incidents yet: materialise the {INCIDENTS} asset first")
    if output_format == "json":
        click.echo(rows.to_json(orient="records", date_format="iso", indent=2))
        return
    # Lists read as "a;b" in a table or a CSV cell.
    shown = rows.assign(
        **{column: rows[column].map(_joined) for column in ("customer_ids", "ip_addresses", "top_features")}
    )
    if output_format == "csv":
        click.echo(shown.to_csv(index=False), nl=False)
    elif shown.empty:
        click.echo("No incidents match.")
    else:
        # A terminal's width: times to the second, scores to what a person compares.
        readable = shown.assign(
            first_seen=shown["first_seen"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            last_seen=shown["last_seen"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            ensemble_score=shown["ensemble_score"].round(2),
        )
        with pd.option_context("display.max_colwidth", 110, "display.width", 250):
            click.echo(readable.to_string(index=False))


def _joined(values) -> str:
    return ";".join(str(value) for value in values) if values is not None else ""
