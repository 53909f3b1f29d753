"""The progress logger of `anomalens run`: step k of n, the steps' messages, failures with their reason."""

import dagster as dg

from anomalens_dagster.progress import PROGRESS_LOGGER, StepProgressHandler, asset_steps, progress_logger


@dg.asset
def first_table(context: dg.AssetExecutionContext) -> None:
    context.log.info("wrote 3 rows")
    context.log.debug("a detail for the run log only")


@dg.asset_check(asset=first_table)
def check_first_table_has_rows() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False)


@dg.asset(deps=[first_table])
def second_table(context: dg.AssetExecutionContext) -> None:
    context.log.warning("no rows in store.orders for 2026-03-03: nothing to compute")
    raise ValueError("the DuckDB file is locked")


def run_with_progress() -> tuple[list[str], StepProgressHandler]:
    lines: list[str] = []
    defs = dg.Definitions(assets=[first_table, second_table], asset_checks=[check_first_table_has_rows])
    job_name = defs.resolve_implicit_global_asset_job_def().name
    handler = StepProgressHandler(asset_steps(defs, job_name), lines.append)
    with_progress = dg.Definitions.merge(defs, dg.Definitions(loggers={PROGRESS_LOGGER: progress_logger(handler)}))
    with_progress.resolve_job_def(job_name).execute_in_process(
        run_config={"loggers": {PROGRESS_LOGGER: {}}}, raise_on_error=False
    )
    return lines, handler


def test_asset_steps_are_counted_with_their_info_messages_and_checks_are_only_tallied():
    lines, handler = run_with_progress()

    assert lines[:2] == ["[1/2] first_table", "        wrote 3 rows"]
    assert "[2/2] second_table" in lines
    assert not any("detail" in line or "check_first_table_has_rows" == line.strip() for line in lines)
    assert handler.checks_summary() == "1 asset checks: 0 passed, 1 failed"


def test_warnings_and_a_failed_step_are_marked_and_the_failure_gives_its_reason_without_a_stack_trace():
    lines, _ = run_with_progress()

    assert "        WARNING: no rows in store.orders for 2026-03-03: nothing to compute" in lines
    assert "        WARNING: check check_first_table_has_rows of first_table failed" in lines
    (failure,) = [line for line in lines if "ERROR: step second_table failed" in line]
    assert "ValueError: the DuckDB file is locked" in failure
    assert "Traceback" not in failure and 'File "' not in failure
