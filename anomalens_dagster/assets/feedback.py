"""The analyst's loop in Dagster: verdicts recorded from the launchpad."""

from datetime import UTC, datetime

import dagster as dg

from anomalens_dagster.configs import RecordFeedbackConfig
from anomalens_dagster.constants import DUCKDB_POOL
from anomalens_dagster.core.feedback import FeedbackError, Verdict, parse_entity, record_verdicts
from anomalens_dagster.resources import AnomaLensDuckDB

FEEDBACK_SOURCE_JOB = "job"


@dg.op(
    description=(
        "Append an analyst's verdict (confirm or dismiss, on an incident or one entity, with note and allow rule) to "
        "ops.analyst_feedback; the last verdict on a target wins, the history stays."
    ),
    pool=DUCKDB_POOL,
)
def record_feedback(context: dg.OpExecutionContext, config: RecordFeedbackConfig, duckdb: AnomaLensDuckDB) -> None:
    try:
        entity_type, entity_id = parse_entity(config.entity) if config.entity else (None, None)
        verdict = Verdict(
            config.verdict,
            incident_id=config.incident_id,
            entity_type=entity_type,
            entity_id=entity_id,
            note=config.note,
            analyst=config.by,
            allow_kind=config.allow,
            allow_days=config.days,
        )
        with duckdb.get_connection() as conn:
            (recorded,) = record_verdicts(conn, [verdict], FEEDBACK_SOURCE_JOB, datetime.now(UTC).replace(tzinfo=None))
    except FeedbackError as error:
        raise dg.Failure(f"record_feedback: {error}") from error
    context.log.info(
        f"recorded {recorded.verdict.verdict} on {recorded.verdict.target} ({recorded.feedback_id})"
        + (": no detector flagged it, a miss" if recorded.is_miss else "")
        + (
            f"; allowed {recorded.verdict.allow_kind} {', '.join(recorded.allowed_values)} until {recorded.allow_until}"
            if recorded.allowed_values
            else ""
        )
    )
