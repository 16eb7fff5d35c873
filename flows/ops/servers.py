"""Local Prefect and MLflow servers, started the way users start them, in the background.

`tlflow servers up` (`make serve`) runs `prefect server start` and `mlflow server` (SQLite backend
store `mlflow/mlflow.db`, artifacts under `mlflow/artifacts`) on 127.0.0.1, waits until both
answer, and prints their URLs and the variables that point the pipeline at them. Process ids and
logs are kept in `.cache/tlflow/servers/`; `tlflow servers down` (`make stop`) stops both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tlflow import paths
from tlflow.errors import TlflowError

STATE_DIR = paths.SERVERS_DIR


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
        process = subprocess.Popen(server.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
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


def down() -> list[str]:
    """Stop the servers started by `up` (their whole process groups); returns the names stopped."""
    stopped = []
    for server in servers():
        pid = _pid(server)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.1)
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
