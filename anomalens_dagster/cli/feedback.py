"""The analyst's loop: `anomalens feedback` (a verdict on an incident or an entity, appended to
ops.analyst_feedback) and `anomalens thresholds` (thresholds calibrated on those verdicts, applied)."""

from __future__ import annotations

import datetime as dt
import getpass

import click

from anomalens_dagster.cli.common import DB_HELP, checked_db_path, import_dagster_quietly
from anomalens_dagster.cli.settings import settings_file_path
from anomalens_dagster.constants import ALLOW_KINDS, MIN_CALIBRATION_VERDICTS
from anomalens_dagster.core.calibration import STATUS_PROPOSED, calibrate_store
from anomalens_dagster.core.feedback import FeedbackError, Verdict, checked_verdict, parse_entity, record_verdicts
from anomalens_dagster.resources import AnomaLensDuckDB
from anomalens_dagster.settings import SettingsFile

FEEDBACK_SOURCE_CLI = "cli"
CALIBRATION_TABLE_COLUMNS = [
    "entity_type",
    "detector",
    "n_verdicts",
    "n_confirmed",
    "n_missed",
    "current_threshold",
    "proposed_threshold",
    "precision_before",
    "recall_before",
    "f1_before",
    "precision_after",
    "recall_after",
    "f1_after",
    "status",
]


def default_analyst() -> str | None:
    """The login name of whoever runs the command: a verdict says who gave it unless `--by` does."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@click.command(name="feedback")
@click.argument("target_and_verdict", nargs=-1, metavar="[INCIDENT_ID] confirm|dismiss")
@click.option("--entity", default=None, metavar="TYPE:ID", help="Judge one row instead: activity:ID or order:ID.")
@click.option("--note", default=None, help="Why: kept with the verdict.")
@click.option("--by", "analyst", default=None, help="Who gives the verdict (default: your login name).")
@click.option(
    "--allow",
    "allow_kind",
    type=click.Choice(ALLOW_KINDS),
    default=None,
    help="With dismiss: allow the incident's (or entity's) IPs or customers, so their incidents raise no alert.",
)
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None, help="How long --allow lasts.")
@click.option("--db", default=None, help=DB_HELP)
def feedback(
    target_and_verdict: tuple[str, ...],
    entity: str | None,
    note: str | None,
    analyst: str | None,
    allow_kind: str | None,
    days: float | None,
    db: str | None,
) -> None:
    """Confirm or dismiss an incident (INCIDENT_ID) or one entity (--entity activity:ID | order:ID).

    Verdicts are appended to ops.analyst_feedback: the last one on a target wins, the history stays.
    Confirming an entity that no detector flagged records a miss, which calibration uses to lower thresholds.
    """
    expected = 1 if entity else 2
    if len(target_and_verdict) != expected:
        raise click.UsageError(
            "give INCIDENT_ID and a verdict (`anomalens feedback INC confirm`) or --entity TYPE:ID and a verdict "
            f"(`anomalens feedback --entity order:42 dismiss`); got {' '.join(target_and_verdict) or 'nothing'}"
        )
    if (allow_kind is None) != (days is None):
        raise click.UsageError("--allow and --days go together: `--allow ip --days 30`")
    *incident, verdict_name = target_and_verdict
    try:
        entity_type, entity_id = parse_entity(entity) if entity else (None, None)
        verdict = Verdict(
            verdict_name,
            incident_id=incident[0] if incident else None,
            entity_type=entity_type,
            entity_id=entity_id,
            note=note,
            analyst=analyst or default_analyst(),
            allow_kind=allow_kind,
            allow_days=days,
        )
        checked_verdict(verdict)  # a bad value fails before the file is opened
        db_path = checked_db_path(db)
        if not db_path.exists():
            raise click.ClickException(f"{db_path} does not exist: nothing to judge yet")
        with AnomaLensDuckDB(database=str(db_path)).get_connection() as conn:
            (recorded,) = record_verdicts(
                conn, [verdict], FEEDBACK_SOURCE_CLI, dt.datetime.now(dt.UTC).replace(tzinfo=None)
            )
    except FeedbackError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Recorded {recorded.verdict.verdict} on {recorded.verdict.target} ({recorded.feedback_id}).")
    if recorded.is_miss:
        click.echo("No detector flagged it: recorded as a miss (threshold calibration can lower thresholds for it).")
    if recorded.allowed_values:
        click.echo(
            f"Allowed {recorded.verdict.allow_kind} {', '.join(recorded.allowed_values)} until "
            f"{recorded.allow_until:%Y-%m-%d %H:%M} UTC: their incidents are recorded, suppressed from alerts."
        )


@click.command(name="thresholds")
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Register the proposed thresholds as new model versions and write them into the settings file.",
)
@click.option(
    "--min-verdicts",
    type=click.IntRange(min=2),
    default=MIN_CALIBRATION_VERDICTS,
    show_default=True,
    help="Judged rows of an entity type needed before its thresholds are calibrated.",
)
@click.option("--db", default=None, help=DB_HELP)
def thresholds(apply_: bool, min_verdicts: int, db: str | None) -> None:
    """Show the threshold per detector (and the ensemble) that would have maximised F1 on the analysts'
    verdicts so far; with --apply, apply them as new model versions and in the settings file
    (detection.thresholds), so the next retraining keeps them."""
    import_dagster_quietly()
    from anomalens_dagster.assets.feedback import apply_store_calibration, calibration_summary, ensemble_thresholds

    db_path = checked_db_path(db)
    if not db_path.exists():
        raise click.ClickException(f"{db_path} does not exist: nothing to calibrate yet")
    settings = SettingsFile(path=str(settings_file_path()))
    resource = AnomaLensDuckDB(database=str(db_path))
    with resource.read_connection() as conn:
        store = calibrate_store(conn, ensemble_thresholds(settings), min_verdicts)
    click.echo(calibration_summary(store) + ".")
    if len(store.calibration):
        shown = store.calibration[CALIBRATION_TABLE_COLUMNS]
        click.echo(shown.to_string(index=False, float_format=lambda value: f"{value:.4g}"))
    if not apply_:
        if (store.calibration["status"] == STATUS_PROPOSED).any():
            click.echo("Run `anomalens thresholds --apply` to apply the proposed thresholds.")
        return
    applied = apply_store_calibration(resource, settings, min_verdicts)
    if not applied.applied:
        click.echo("Nothing applied.")
        return
    for record in applied.records:
        click.echo(f"Registered {record.model_name} (threshold {record.metrics['threshold']:.6g}, from calibration).")
    click.echo(f"Wrote detection.thresholds into {settings.path}: the next retraining and scoring keep them.")
