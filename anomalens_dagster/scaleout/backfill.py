"""A backfill of many days on DuckLake: one run per day, several days at a time, in dependency phases.

Usage: python -m anomalens_dagster.scaleout.backfill --first 2026-01-01 --days 14 --parallel 4

The phases follow the asset graph: the catalog; each day's store rows; each day's features (which
read the previous day's tail, so every store day is written first); the detectors, trained once on
the window; each day's scores and anomaly records; the tables over every day. Every statement that
creates, migrates or replaces a table runs in a serial step: the runs of the catalog, the training,
the summaries and the first day of each daily phase execute their steps one after the other in one
process (concurrent CREATE TABLE corrupts about one DuckLake commit in four). The other days then
only delete and insert rows of tables that exist: they run `parallel` at a time, each in its own
process, their steps on the configured executor (Celery workers), each committing its own snapshot.

A run that does not finish within `run_timeout` seconds fails the backfill (a worker that cannot
import the code, or none listening, leaves its steps waiting forever): its process is stopped and
the run marked failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass

from anomalens_dagster.constants import DETECTIONS_GROUP, FEATURES_GROUP, STORE_GROUP
from anomalens_dagster.scaleout.configured import (
    CATALOG_JOB,
    DAY_SUMMARIES_PHASE,
    SUMMARIES_JOB,
    days_job_name,
    job_for_name,
)

logger = logging.getLogger(__name__)

BACKFILL_TAG = "anomalens/backfill"
DEFAULT_RUN_TIMEOUT_SECONDS = 900.0
TRAIN_JOB = "train_job"


@dataclass(frozen=True)
class Phase:
    """One step of the backfill: a job run once (`daily` False) or once per day."""

    job_name: str
    daily: bool


PHASES = (
    Phase(CATALOG_JOB, daily=False),
    Phase(days_job_name(STORE_GROUP), daily=True),
    Phase(days_job_name(DAY_SUMMARIES_PHASE), daily=True),
    Phase(days_job_name(FEATURES_GROUP), daily=True),
    Phase(TRAIN_JOB, daily=False),
    Phase(days_job_name(DETECTIONS_GROUP), daily=True),
    Phase(SUMMARIES_JOB, daily=False),
)


@dataclass(frozen=True)
class RunOutcome:
    job_name: str
    partition: str | None
    run_id: str
    succeeded: bool
    seconds: float
    error: str | None = None


class BackfillError(RuntimeError):
    """A run of the backfill failed or timed out; the message names it."""


def execute_run(job_name: str, partition: str | None, backfill_id: str, serial: bool) -> RunOutcome:
    """Execute one run on the instance of DAGSTER_HOME.

    `serial`: its steps one after the other in this process (a step that may create tables);
    otherwise on the code location's executor (Celery workers, in parallel).
    """
    import dagster as dg

    tags = {BACKFILL_TAG: backfill_id, **({"dagster/partition": partition} if partition else {})}
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        if serial:
            result = job_for_name(job_name).execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        else:
            # Named by its module, not `__name__`: run as `python -m`, this module is `__main__`.
            recon_job = dg.build_reconstructable_job(
                job_for_name.__module__, job_for_name.__name__, reconstructable_args=(job_name,)
            )
            result = dg.execute_job(recon_job, instance=instance, tags=tags, raise_on_error=False)
        error = None
        if not result.success:
            failures = [event.message for event in result.all_events if event.is_failure]
            error = "; ".join(failures) or "see the run's log"
        return RunOutcome(job_name, partition, result.run_id, result.success, time.monotonic() - started, error)


def _run_wave(
    pool: ProcessPoolExecutor,
    parallel: int,
    runs: Sequence[tuple[str, str | None]],
    backfill_id: str,
    timeout: float,
    serial: bool,
) -> list[RunOutcome]:
    """Execute `runs` on the pool's `parallel` processes: the wave gets `timeout` seconds per round of
    `parallel` runs, so a run that hangs fails it at most one round late."""
    pending = [
        (job, partition, pool.submit(execute_run, job, partition, backfill_id, serial)) for job, partition in runs
    ]
    rounds = -(-len(runs) // parallel)
    deadline = time.monotonic() + timeout * rounds
    outcomes = []
    for job, partition, future in pending:
        try:
            outcomes.append(future.result(timeout=max(deadline - time.monotonic(), 1.0)))
        except FutureTimeoutError as error:
            raise BackfillError(
                f"{job} for {partition or 'all days'} did not finish within {timeout:g} s per run: are Celery "
                "workers running with the code and the same settings file?"
            ) from error
    failed = [outcome for outcome in outcomes if not outcome.succeeded]
    if failed:
        raise BackfillError(
            "; ".join(
                f"{o.job_name} for {o.partition or 'all days'} failed (run {o.run_id}): {o.error}" for o in failed
            )
        )
    return outcomes


def backfill(
    days: Sequence[dt.date], parallel: int, run_timeout: float = DEFAULT_RUN_TIMEOUT_SECONDS
) -> list[RunOutcome]:
    """Materialise every asset for `days` in the phases above, `parallel` day runs at a time.

    Raises BackfillError at the first failed or timed-out run (runs of the same wave still finish;
    a timed-out run's process is killed and the run marked failed).
    """
    backfill_id = f"{days[0]:%Y%m%d}-{days[-1]:%Y%m%d}-{int(time.time())}"
    partitions = [day.isoformat() for day in days]
    outcomes: list[RunOutcome] = []
    before = set(multiprocessing.active_children())
    # Fresh processes (not forked): each imports the code location with this environment's settings.
    pool = ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn"))
    try:
        for phase in PHASES:
            if not phase.daily:
                waves = [([(phase.job_name, None)], True)]
            else:
                first, *others = partitions
                waves = [([(phase.job_name, first)], True), ([(phase.job_name, day) for day in others], False)]
            for wave, serial in waves:
                if wave:
                    outcomes += _run_wave(pool, parallel, wave, backfill_id, run_timeout, serial)
            logger.info("backfill %s: %s done", backfill_id, phase.job_name)
    except BaseException:
        # Killed, not terminated: a run process turns SIGTERM into an interrupted run and lives on.
        for process in set(multiprocessing.active_children()) - before:
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        _mark_unfinished_runs_failed(backfill_id)
        raise
    pool.shutdown(wait=True)
    return outcomes


def _mark_unfinished_runs_failed(backfill_id: str) -> None:
    """Runs of the backfill whose process was stopped are failed in the instance, not left running."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(
            filters=dg.RunsFilter(
                tags={BACKFILL_TAG: backfill_id},
                statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.QUEUED],
            )
        )
        for run in runs:
            instance.report_run_failed(run, "stopped: the backfill's run timeout passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", type=dt.date.fromisoformat, required=True, help="First day (YYYY-MM-DD).")
    parser.add_argument("--days", type=int, required=True, help="Number of days.")
    parser.add_argument("--parallel", type=int, default=4, help="Day runs at a time.")
    parser.add_argument("--run-timeout", type=float, default=DEFAULT_RUN_TIMEOUT_SECONDS, help="Seconds per run.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    days = [args.first + dt.timedelta(days=offset) for offset in range(args.days)]
    outcomes = backfill(days, args.parallel, args.run_timeout)
    logger.info("backfill of %d days done in %d runs", len(days), len(outcomes))


if __name__ == "__main__":
    main()
