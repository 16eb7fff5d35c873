"""Local Prefect and MLflow servers, started the way users start them, in the background.

`tlflow servers up` (`make serve`) runs `prefect server start` and `mlflow server` (SQLite backend
store `mlflow/mlflow.db`, artifacts under `mlflow/artifacts`) on 127.0.0.1, waits until both
answer, and prints their URLs and the variables that point the pipeline at them. Process ids and
logs are kept in `.cache/tlflow/servers/`; `tlflow servers down` (`make stop`) stops both and
returns once every process they consist of is gone (SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`).
MLflow runs without its job-queue workers (`MLFLOW_SERVER_ENV`), which the pipeline does not use.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from tlflow import paths
from tlflow.errors import TlflowError

STATE_DIR = paths.SERVERS_DIR
#: Seconds a server has to exit after SIGTERM before it gets SIGKILL, and to be gone after that.
STOP_TIMEOUT_S = 30.0
KILL_WAIT_S = 10.0
#: `mlflow server` environment: no job-queue workers (MLflow's GenAI jobs: judges, scorers, trace
#: rollups), which the pipeline never uses; each would be a process of its own (in a session of
#: its own) holding memory.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class ServerError(TlflowError, RuntimeError):
    """A server that does not start or cannot be reached; the message says how to start it."""


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    health_path: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        bindir = Path(sys.executable).parent
        if self.name == "prefect":
            return [str(bindir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        store = paths.MLFLOW_STORE_DIR.resolve()
        return [str(bindir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination", str(store / "artifacts"), "--workers", "1"]

    @property
    def pid_file(self) -> Path:
        return STATE_DIR / f"{self.name}.pid"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


def servers(prefect_port: int = 4200, mlflow_port: int = 5000) -> list[Server]:
    return [Server("prefect", prefect_port, "/api/health"), Server("mlflow", mlflow_port, "/health")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _pid(server: Server) -> int | None:
    try:
        pid = int(server.pid_file.read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def up(prefect_port: int = 4200, mlflow_port: int = 5000, timeout_s: float = 120) -> list[Server]:
    """Start whichever of the two servers is not running yet and wait until both answer."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    paths.MLFLOW_ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": os.environ.get("PREFECT_HOME", str(paths.PREFECT_HOME.resolve())),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    wanted = servers(prefect_port, mlflow_port)
    for server in wanted:
        if _pid(server) is not None or server.healthy():
            continue
        log = open(STATE_DIR / f"{server.name}.log", "ab")  # noqa: SIM115 - the child keeps it
        own_env = {**MLFLOW_SERVER_ENV, **env} if server.name == "mlflow" else env  # the environment wins
        process = subprocess.Popen(server.command(), stdout=log, stderr=subprocess.STDOUT, env=own_env,
                                   start_new_session=True)
        server.pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + timeout_s
    for server in wanted:
        while not server.healthy():
            pid = _pid(server)
            if pid is None and not server.healthy():
                raise ServerError(f"{server.name} server exited at start; see {STATE_DIR / (server.name + '.log')}")
            if time.monotonic() > deadline:
                raise ServerError(f"{server.name} server did not answer on {server.url} within {timeout_s:.0f} s; "
                                  f"see {STATE_DIR / (server.name + '.log')}")
            time.sleep(0.5)
    return wanted


def _tree(pid: int) -> list[psutil.Process]:
    """The processes a server consists of: its process group (it leads one) and every descendant
    of its leader, also those that started a session of their own."""
    found: dict[int, psutil.Process] = {}
    try:
        leader = psutil.Process(pid)
        found = {p.pid: p for p in [leader, *leader.children(recursive=True)]}
    except psutil.NoSuchProcess:
        pass
    for process in psutil.process_iter():
        try:
            if process.pid not in found and os.getpgid(process.pid) == pid:
                found[process.pid] = process
        except (OSError, psutil.Error):
            continue
    return list(found.values())


def stop_tree(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
    """SIGTERM to the server led by `pid` (`_tree`), SIGKILL to what is left after `timeout_s`, and
    wait until every process of it is gone; returns the pids that outlived even SIGKILL."""
    processes = _tree(pid)
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        pass  # no such group any more: its members below are signalled one by one
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    alive = _wait_gone(processes, timeout_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return [process.pid for process in _wait_gone(alive, KILL_WAIT_S)]


def _running(process: psutil.Process) -> bool:
    """Whether `process` still runs: a zombie has ended (its parent, or init, reaps it; a child of
    this process is reaped here)."""
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(process.pid, os.WNOHANG)
            return False
        return process.is_running()
    except psutil.NoSuchProcess:
        return False


def _wait_gone(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to `timeout_s` for `processes` to end; returns those still running."""
    deadline = time.monotonic() + timeout_s
    while (alive := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def down() -> list[str]:
    """Stop the servers started by `up` (their whole process groups and every process they started)
    and wait until all of them are gone; returns the names stopped."""
    stopped = []
    for server in servers():
        pid = _pid(server)
        if pid is not None:
            left = stop_tree(pid)
            if left:
                raise ServerError(f"{server.name} server: processes {', '.join(map(str, left))} survived SIGKILL")
            stopped.append(server.name)
        server.pid_file.unlink(missing_ok=True)
    return stopped


def require(url: str, what: str, how: str) -> None:
    """ServerError naming `what` and `how` to start it when nothing answers at `url`."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            return
    except urllib.error.HTTPError:
        return  # something answers
    except OSError:
        raise ServerError(f"{what} is not reachable at {url}: start it with `{how}`") from None
