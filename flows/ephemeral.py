"""The temporary Prefect server of a command that runs flows: started early, owned, never left behind.

With no `PREFECT_API_URL`, a flow run needs a temporary Prefect server (a uvicorn subprocess).
Left to Prefect, it starts when the first flow run asks for it, waits 20 s for it, and on a busy
machine gives up while the server is still coming up: the next caller starts a second server on
the same port and the first one outlives the run; a run killed with `kill -9` leaves it behind too.
This module starts it itself, so that:

- it comes up early, while torch, transformers and MLflow import (on another core meanwhile);
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
import signal
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


@cache
def _server_class() -> type:
    from prefect.server.api.server import SubprocessASGIServer

    class OwnedServer(SubprocessASGIServer):
        """Prefect's temporary server, started with a parent-death signal and waited for here."""

        def _run_uvicorn_command(self) -> subprocess.Popen:
            # Prefect 3's command (prefect/server/api/server.py), plus the parent-death signal.
            import prefect
            from prefect.settings import get_current_settings

            env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                   "PREFECT__SERVER_FINAL": "1", **get_current_settings().to_environment_variables(exclude_unset=True)}
            args = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                    "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "error", "--lifespan", "on"]
            return subprocess.Popen(args, env=env, preexec_fn=die_with_parent())

        def launch(self) -> None:
            """Start the server process (no waiting); Prefect's clients now use it."""
            self.port = self.find_available_port()
            self.server_process = self._run_uvicorn_command()
            self.running = True
            atexit.register(self.stop)

        def ready(self, timeout_s: float) -> str | None:
            """Wait until the server answers; None when it does, else why not."""
            import httpx

            deadline = time.monotonic() + timeout_s
            with httpx.Client(timeout=10) as client:
                while True:
                    process = self.server_process
                    if process is None:
                        return "it was stopped"
                    if (code := process.poll()) is not None:
                        return f"it exited with status {code}"
                    try:
                        if client.get(f"{self.api_url}/health").status_code == 200:
                            return None
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        return f"it did not answer within {timeout_s:.0f} s"
                    time.sleep(0.2)

    return OwnedServer


class EarlyServer:
    """The temporary server of this process, coming up in the background until `wait()`."""

    def __init__(self) -> None:
        self.server = None
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
        self.server = _server_class()()
        if self.server.running or not hasattr(self.server, "launch"):
            self.server = None  # Prefect already started one in this process: it owns it
            return self
        self.timeout_s = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        self.server.launch()
        self.thread = threading.Thread(target=self._watch, name="prefect-server-start", daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        self.problem = self.server.ready(self.timeout_s)

    def wait(self) -> None:
        """Block until the server answers; ServerStartError (server stopped) when it does not."""
        if self.thread is None:
            return
        self.thread.join()
        self.thread = None
        if self.problem and self.problem.endswith(f"status {PORT_TAKEN}"):  # its port was taken meanwhile
            self.server.launch()
            self.problem = self.server.ready(self.timeout_s)
        if self.problem:
            self.server.stop()
            raise ServerStartError(
                f"the temporary Prefect server did not start: {self.problem} (a busy machine: raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start one with `make serve` and set "
                "PREFECT_API_URL)")


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
