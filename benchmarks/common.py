"""Helpers shared by the benchmark scripts: timing, peak memory and table printing."""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Read from VmHWM in /proc (Linux): `getrusage`'s ru_maxrss survives exec, so a freshly spawned
    worker would report its parent's peak.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields a list that holds, once the block ends, the elapsed wall seconds and this process's CPU seconds.

    CPU seconds add up every thread of the process (DuckDB's workers included): divided by the
    number of cores, they bound how fast the same work could run if it used every core fully.
    """
    elapsed = [0.0, 0.0]
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield elapsed
    finally:
        elapsed[:] = [time.perf_counter() - start, time.process_time() - cpu_start]


@contextmanager
def benchmark_folder(path: str | None) -> Iterator[Path]:
    """Where a benchmark keeps its DuckDB file and Dagster instance: `path` (created and kept), else a
    temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(path or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table (pastes straight into the README)."""
    cells = [[_format(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(value.rjust(w) for value, w in zip(row, widths, strict=True)) + " |")


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
