"""The scale-out services on one machine, for the test, the benchmark and trying it out: PostgreSQL
(Debian's binaries), Redis (Debian's `redis-server`) and dagster-celery workers, on 127.0.0.1 only.

Every server runs in a folder of its own and is stopped, by its process id, when its block ends.
On a real cluster these are a managed PostgreSQL, a managed Redis and worker machines (README
"Scaling out"); nothing here is used by the code location itself.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

POSTGRES_USER = "anomalens"
# initdb and the server refuse to run as root: as root, they run as Debian's `postgres` account.
POSTGRES_SYSTEM_ACCOUNT = "postgres"
READY_TIMEOUT_SECONDS = 60.0
CELERY_QUEUE = "dagster"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_binary(name: str) -> str:
    """Path of a PostgreSQL server program (`initdb`, `pg_ctl`): on PATH, else Debian's newest version."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(
            f"PostgreSQL's `{name}` is not installed: `apt-get install -y postgresql` (`make test` does)"
        )
    return found


@dataclass(frozen=True)
class LocalPostgres:
    host: str
    port: int
    user: str
    password: str

    def dsn(self, database: str) -> str:
        """libpq connection string without the password (it travels in an environment variable)."""
        return f"dbname={database} host={self.host} port={self.port} user={self.user}"


def _as_server_account(command: Sequence[str]) -> list[str]:
    if os.geteuid() != 0:
        return list(command)
    return ["runuser", "-u", POSTGRES_SYSTEM_ACCOUNT, "--", *command]


@contextmanager
def local_postgres(databases: Sequence[str], password: str) -> Iterator[LocalPostgres]:
    """A PostgreSQL server on 127.0.0.1 in a new temporary folder, with `databases` created; stopped after."""
    folder = Path(tempfile.mkdtemp(prefix="anomalens-postgres-"))
    if os.geteuid() == 0:
        account = pwd.getpwnam(POSTGRES_SYSTEM_ACCOUNT)
        os.chown(folder, account.pw_uid, account.pw_gid)
    data, password_file = folder / "data", folder / "password"
    password_file.write_text(password)
    if os.geteuid() == 0:
        os.chown(password_file, account.pw_uid, account.pw_gid)
    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
    subprocess.run(
        _as_server_account(
            [
                postgres_binary("initdb"),
                "-D",
                str(data),
                "-U",
                POSTGRES_USER,
                f"--pwfile={password_file}",
                "-A",
                "scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        **quiet,
    )
    password_file.unlink()
    pg_ctl = postgres_binary("pg_ctl")
    # No durability needed for a throw-away server; the socket stays in its own folder.
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_server_account([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "start"]),
        **quiet,
    )
    server = LocalPostgres("127.0.0.1", port, POSTGRES_USER, password)
    try:
        import psycopg2

        conn = psycopg2.connect(host=server.host, port=port, user=server.user, password=password, dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE refuses a transaction
            with conn.cursor() as cursor:
                for database in databases:
                    cursor.execute(f'CREATE DATABASE "{database}"')
        finally:
            conn.close()
        yield server
    finally:
        subprocess.run(
            _as_server_account([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), **{**quiet, "check": False}
        )
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def local_redis() -> Iterator[str]:
    """A Redis server on 127.0.0.1 without persistence; yields its URL (database 0); stopped after."""
    server = shutil.which("redis-server")
    if not server:
        raise RuntimeError("`redis-server` is not installed: `apt-get install -y redis-server` (`make test` does)")
    folder = Path(tempfile.mkdtemp(prefix="anomalens-redis-"))
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        _wait_until(lambda: _answers(client.ping), "Redis to answer", process)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def celery_workers(
    count: int, concurrency: int, broker: str, backend: str, env: Mapping[str, str], folder: Path
) -> Iterator[list[subprocess.Popen]]:
    """`count` dagster-celery workers of `concurrency` processes each, started with `env`; stopped after.

    They are started the documented way (`dagster-celery worker start -A dagster_celery.app -y ...`),
    each in its own process group, and this waits until every one answers the broker.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "celery.yaml"
    config.write_text(yaml.safe_dump({"execution": {"config": {"broker": broker, "backend": backend}}}))
    command = str(Path(sys.executable).with_name("dagster-celery"))
    workers = []
    try:
        for index in range(count):
            log = open(folder / f"worker-{index}.log", "w")  # noqa: SIM115 - closed with the process
            workers.append(
                subprocess.Popen(
                    [
                        command,
                        "worker",
                        "start",
                        "-A",
                        "dagster_celery.app",
                        "-y",
                        str(config),
                        "-q",
                        CELERY_QUEUE,
                        "--name",
                        f"anomalens-{index}-{os.getpid()}",
                        "-l",
                        "WARNING",
                        "--",
                        f"--concurrency={concurrency}",
                    ],
                    # It starts `celery` by name: this environment's scripts come first on PATH.
                    env={
                        **os.environ,
                        **env,
                        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                    },
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=folder,
                )
            )
        from celery import Celery

        app = Celery(broker=broker, backend=backend)
        names = {f"anomalens-{index}-{os.getpid()}" for index in range(count)}

        def all_answer() -> bool:
            replies = app.control.ping(timeout=1.0) or []
            return names <= {node.split("@", 1)[0] for reply in replies for node in reply}

        _wait_until(all_answer, f"{count} Celery workers to answer", *workers)
        yield workers
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=10)  # Celery's warm shutdown lets running tasks end first
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def _answers(probe) -> bool:
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _wait_until(ready, what: str, *processes: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not _answers(ready):
        exited = [process.args for process in processes if process.poll() is not None]
        if exited:
            raise RuntimeError(f"waiting for {what}: {' '.join(map(str, exited[0]))} exited (see its log)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"waiting for {what}: no answer within {READY_TIMEOUT_SECONDS:g} s")
        time.sleep(0.5)
