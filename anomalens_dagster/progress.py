"""What `anomalens run` prints while its run goes: which step of how many, and what each step says.

Dagster's console logger prefixes every line with the time, job, run id and step, and at DEBUG
prints every event; a person at a terminal wants to know which step runs, how far the run is and
what the steps report. This logger prints that and the failures; the run's whole log stays in
the instance (`make dev` shows it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from dagster_shared.error import SerializableErrorInfo

PROGRESS_LOGGER = "progress"
MESSAGE_INDENT = " " * 8


class StepProgressHandler(logging.Handler):
    """Turns a run's log records into progress lines: "[ 3/20] activity_features", then the step's
    INFO messages indented below it, warnings and errors marked as such.

    `asset_steps` are the steps counted and announced (asset checks run silently unless they fail;
    they are tallied in `checks_passed` / `checks_failed`).
    """

    def __init__(self, asset_steps: Collection[str], write: Callable[[str], None]) -> None:
        super().__init__(level=logging.DEBUG)
        self.asset_steps = frozenset(asset_steps)
        self.write = write
        self.started = 0
        self.checks_passed = 0
        self.checks_failed = 0

    def emit(self, record: logging.LogRecord) -> None:
        # Dagster hands its loggers each record with the step, the event (if any) and the message
        # as logged in `dagster_meta` (its `DagsterLogRecordMetadata`).
        meta = getattr(record, "dagster_meta", None)
        if meta is None:
            return
        event: dg.DagsterEvent | None = meta["dagster_event"]
        if event is None:
            if record.levelno >= logging.INFO:
                self.write(_marked(record.levelno, meta["orig_message"]))
        elif event.is_step_start and event.step_key in self.asset_steps:
            self.started += 1
            width = len(str(len(self.asset_steps)))
            self.write(f"[{self.started:>{width}}/{len(self.asset_steps)}] {event.step_key}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            if evaluation.passed:
                self.checks_passed += 1
            else:
                self.checks_failed += 1
                asset = evaluation.asset_key.to_user_string()
                self.write(_marked(logging.WARNING, f"check {evaluation.check_name} of {asset} failed"))
        elif event.is_step_failure:
            error = _error_messages(event.step_failure_data.error)
            self.write(_marked(logging.ERROR, f"step {event.step_key} failed: {error}"))

    def checks_summary(self) -> str:
        checks = self.checks_passed + self.checks_failed
        return f"{checks} asset checks: {self.checks_passed} passed, {self.checks_failed} failed"


def _marked(level: int, message: str) -> str:
    prefix = "" if level < logging.WARNING else f"{logging.getLevelName(level)}: "
    return MESSAGE_INDENT + prefix + message.replace("\n", "\n" + MESSAGE_INDENT)


def _error_messages(error: SerializableErrorInfo | None) -> str:
    """The messages of an error and its causes, without the stack traces (the UI has those) and
    without Dagster's "Error occurred while executing op" wrapper around the step's own error."""
    messages = []
    while error is not None:
        if not (error.cls_name == "DagsterExecutionStepExecutionError" and error.cause is not None):
            messages.append(error.message.strip())
        error = error.cause
    return "\n".join(messages)


def progress_logger(handler: StepProgressHandler) -> dg.LoggerDefinition:
    """A Dagster logger whose only output is `handler`'s progress lines."""

    @dg.logger(description="Step k of n and each step's messages, for a terminal (`anomalens run`).")
    def progress(_init_context: dg.InitLoggerContext) -> logging.Logger:
        logger = logging.Logger(PROGRESS_LOGGER, level=logging.DEBUG)
        logger.addHandler(handler)
        return logger

    return progress


def asset_steps(defs: dg.Definitions, job_name: str) -> list[str]:
    """The steps of a job that materialise assets, as opposed to those that run asset checks."""
    asset_graph = defs.resolve_asset_graph()
    check_steps = {defs.get_asset_checks_def(key).node_def.name for key in asset_graph.asset_check_keys}
    return [node.name for node in defs.resolve_job_def(job_name).graph.nodes if node.name not in check_steps]
