"""The temporary Prefect server of a command that runs flows: started early, owned, never left behind.

With no `PREFECT_API_URL`, a flow run needs a temporary Prefect server (a uvicorn subprocess).
Left to Prefect, it starts when the first flow run asks for it, waits 20 s for it, and on a busy
machine gives up while the server is still coming up: the next caller starts a second server on
the same port and the first one outlives the run; a run killed with `kill -9` leaves it behind too.
This module starts it itself, so that:

- it comes up early, while torch, transformers and MLflow import (on another core meanwhile); this
  process does not even import the server's code before starting it, only before its first flow;
- it dies with this process however the process ends: a parent-death signal (Linux
  `PR_SET_PDEATHSIG`, SIGKILL) covers `kill -9`, an exit handler stops it on a normal exit;
- one server is started, and waited for up to `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`
  (`tlflow.runtime.RESILIENCE_DEFAULTS`: minutes, not Prefect's 20 s); Prefect's clients find it
  registered as *the* temporary server (`SubprocessASGIServer`'s one instance) and start no other;
- a server that does not come up is one line (`ServerStartError`), with the process stopped.

`start_early()` must be called from the main thread (the parent-death signal follows the thread
that started the child), and `wait()` before the first flow run.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

from tlflow.errors import TlflowError

#: prctl option: signal sent to this process when the thread that started it ends.
PR_SET_PDEATHSIG = 1
#: uvicorn's exit status when it cannot bind its port (Prefect picks another port then, as here).
PORT_TAKEN = 3
#: Where Prefect looks for a free port for its temporary server (`SubprocessASGIServer._port_range`).
PORT_RANGE = range(8000, 9000)


class ServerStartError(TlflowError, RuntimeError):
    """The temporary Prefect server did not come up (it is stopped, nothing ran)."""


class PrefectApiLost(TlflowError, RuntimeError):
    """The Prefect API stopped answering during a flow run."""


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when this process (the calling thread)
    ends, or exit at once if it already has; None where prctl is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child only calls it
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return set_parent_death_signal


def _uvicorn(port: int) -> subprocess.Popen:
    """Prefect 3's command for its temporary server (prefect/server/api/server.py), plus the
    parent-death signal; started without importing the server's code in this process."""
    import prefect
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1", **get_current_settings().to_environment_variables(exclude_unset=True)}
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error", "--lifespan", "on"]
    return subprocess.Popen(args, env=env, preexec_fn=die_with_parent())


def _free_port() -> int:
    """A free port in Prefect's range for its temporary server (as `find_available_port` picks it)."""
    for _ in range(10):
        port = random.choice(PORT_RANGE)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                time.sleep(random.uniform(0.1, 0.5))
    raise ServerStartError("the temporary Prefect server did not start: no free port in 8000-8999")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(process: subprocess.Popen, api_url: str, timeout_s: float) -> str | None:
    """Wait until the server answers; None when it does, else why not."""
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10) as client:
        while True:
            if (code := process.poll()) is not None:
                return f"it exited with status {code}"
            try:
                if client.get(f"{api_url}/health").status_code == 200:
                    return None
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                return f"it did not answer within {timeout_s:.0f} s"
            time.sleep(0.2)


def _already_running() -> bool:
    """Whether Prefect's temporary server already runs in this process (without importing its code
    when nothing here has)."""
    module = sys.modules.get("prefect.server.api.server")
    server = module.SubprocessASGIServer._instances.get(None) if module is not None else None
    return bool(server is not None and server.running)


@cache
def _server_class() -> type:
    from prefect.server.api.server import SubprocessASGIServer

    class OwnedServer(SubprocessASGIServer):
        """Prefect's temporary server, run by the process this module started."""

        def _run_uvicorn_command(self) -> subprocess.Popen:
            return _uvicorn(self.port)

        def adopt(self, port: int, process: subprocess.Popen) -> None:
            """Prefect's clients now use the server `process` on `port`."""
            self.port = port
            self.server_process = process
            self.running = True

    return OwnedServer


class EarlyServer:
    """The temporary server of this process, coming up in the background until `wait()`.

    `start()` only launches the server's process (Prefect's server code, seconds of imports, loads
    there); `wait()` registers it with Prefect's clients as *the* temporary server, once the
    command's own imports are done."""

    def __init__(self) -> None:
        self.server = None
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.thread: threading.Thread | None = None
        self.problem: str | None = None
        self.timeout_s = 0.0

    def start(self) -> EarlyServer:
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_SERVER_EPHEMERAL_ENABLED,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        )

        if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            return self  # a configured server, or none allowed: nothing to start
        if _already_running():
            return self  # an earlier command of this process (or Prefect) started it: it owns it
        self.timeout_s = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        self._launch()
        atexit.register(self.stop)
        return self

    def _launch(self) -> None:
        self.port = _free_port()
        self.process = _uvicorn(self.port)
        self.thread = threading.Thread(target=self._watch, args=(self.process,), name="prefect-server-start",
                                       daemon=True)
        self.thread.start()

    def _watch(self, process: subprocess.Popen) -> None:
        self.problem = _ready(process, f"http://127.0.0.1:{self.port}/api", self.timeout_s)

    @property
    def api_url(self) -> str | None:
        """The server's API address, once `wait()` has returned (None without a temporary server)."""
        return self.server.api_url if self.server is not None else None

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        if self.server is not None:
            self.server.running = False

    def wait(self) -> None:
        """Block until the server answers, then hand it to Prefect's clients; ServerStartError
        (server stopped) when it does not answer."""
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        if self.problem and self.problem.endswith(f"status {PORT_TAKEN}"):  # its port was taken meanwhile
            self._launch()
            self.thread.join()
            self.thread = None
        if self.problem:
            self.stop()
            raise ServerStartError(
                f"the temporary Prefect server did not start: {self.problem} (a busy machine: raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start one with `make serve` and set "
                "PREFECT_API_URL)")
        server = _server_class()()
        if server.running:  # Prefect started one of its own meanwhile: it owns that one
            self.stop()
            return
        server.adopt(self.port, self.process)
        self.server = server


def start_early() -> EarlyServer:
    """Start the temporary Prefect server in the background when the flow would need one."""
    return EarlyServer().start()


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or "the temporary Prefect server"


@contextmanager
def api_loss_is_one_line() -> Iterator[None]:
    """Turn a Prefect API that stopped answering during the block (after the client's retries)
    into one line (`PrefectApiLost`). From here on, for the rest of the process, a log handler
    that cannot reach the API stays silent (`logging.raiseExceptions`): Prefect's log shipper
    would otherwise print an error for every batch it could not send."""
    import logging

    import httpx

    logging.raiseExceptions = False
    try:
        yield
    except httpx.TransportError as err:
        detail = str(err).splitlines()[0] if str(err) else "no answer"
        raise PrefectApiLost(f"the Prefect API ({_api_url()}) stopped answering ({type(err).__name__}: {detail}); "
                             "the flow run stopped") from None
