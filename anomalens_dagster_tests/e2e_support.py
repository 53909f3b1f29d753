"""Helpers of the end-to-end test: real Dagster processes, their GraphQL API and a headless browser."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
LOG_TAIL_CHARS = 4_000
T = TypeVar("T")

LOCATION_STATUS_QUERY = """
query LocationStatus {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

RUN_ERRORS_QUERY = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey level }
        ... on ErrorEvent { error { message stack } }
      }
    }
    ... on PythonError { message }
  }
}
"""


def free_loopback_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (released again for the server to bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DagsterProcess:
    """A Dagster service started in its own session, with its output in a log file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- last output of {self.name} ({self.log_path}) ---\n{text[-LOG_TAIL_CHARS:]}"

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM the whole process group (the service and the code servers it spawned), then SIGKILL."""
        pgid = self.process.pid  # start_new_session made the service its group's leader
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        # Children may outlive their leader for a moment; they must not outlive the test.
        deadline = time.monotonic() + timeout
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def dagster_service(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Iterator[DagsterProcess]:
    """Run `.venv/bin/<name> <args>` from the repo until the block ends, however it ends."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / name), *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = DagsterProcess(name, process, log_path)
    try:
        yield service
    finally:
        service.stop()


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Call `probe` until it returns something other than None; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Webserver:
    """The webserver's HTTP and GraphQL endpoints."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.services: tuple[DagsterProcess, ...] = ()  # whose logs a failure message shows

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def server_info(self) -> dict[str, Any] | None:
        """`/server_info` once the webserver answers, else None."""
        try:
            response = requests.get(f"{self.url}/server_info", timeout=5)
        except requests.ConnectionError:
            return None
        return response.json() if response.ok else None

    def location_entries(self) -> list[dict[str, Any]]:
        workspace = self.graphql(LOCATION_STATUS_QUERY)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise AssertionError(f"workspace failed to load: {workspace}")
        return workspace["locationEntries"]

    def loaded_locations(self) -> list[dict[str, Any]] | None:
        """The location entries once every one has finished loading (with or without an error)."""
        entries = self.location_entries()
        return entries if entries and all(entry["loadStatus"] == "LOADED" for entry in entries) else None

    def dismiss_community_nux(self) -> None:
        """Mark the UI's "Join the Dagster community" dialog seen, as its Skip button does (it would cover the page)."""
        assert self.graphql("mutation SetNuxSeen { setNuxSeen }")["setNuxSeen"] is True

    def run_errors(self, run_id: str) -> str:
        """The run's error and warning events, readable in a failure message."""
        logs = self.graphql(RUN_ERRORS_QUERY, {"runId": run_id})["logsForRun"]
        if logs["__typename"] != "EventConnection":
            return f"no event log for run {run_id}: {logs}"
        lines = []
        for event in logs["events"]:
            error = event.get("error")
            if error or event.get("level") in ("ERROR", "CRITICAL", "WARNING"):
                lines.append(f"[{event['__typename']} {event.get('stepKey') or ''}] {event.get('message', '')}")
                if error:
                    lines.append(error["message"] + "".join(error["stack"]))
        return "\n".join(lines) or f"run {run_id} logged no error event"


def chromium_path() -> str:
    """Debian's chromium, which `make test` installs; a clear failure (not a skip) when it is missing."""
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        raise AssertionError(
            "chromium is not installed: the end-to-end browser check needs Debian's `chromium`. "
            "Run `make test`, which installs it (apt-get install -y chromium)."
        )
    return path


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
