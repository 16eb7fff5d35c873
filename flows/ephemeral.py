"""Start Prefect's temporary local server early, while the pipeline's libraries are still importing.

With no `PREFECT_API_URL`, the first flow run starts a temporary Prefect server (a uvicorn
subprocess) and waits for it, longer with a new database than with an existing one, all of it
added to the flow's wall time. Started from a background thread before torch,
transformers and MLflow are imported, the server comes up on another core meanwhile, and the
flow finds it ready. `wait()` must be called before the first flow run (Prefect would otherwise
start a second server while the first is still coming up).
"""

from __future__ import annotations

import threading


class EarlyServer:
    def __init__(self) -> None:
        self.thread: threading.Thread | None = None

    def start(self) -> EarlyServer:
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

        if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            return self  # a configured server, or none allowed: nothing to start
        from prefect.server.api.server import SubprocessASGIServer  # imported here, not in the thread

        self.thread = threading.Thread(target=SubprocessASGIServer().start, name="prefect-server-start", daemon=True)
        self.thread.start()
        return self

    def wait(self) -> None:
        """Block until the server answers (or its start failed: the flow run then starts it itself)."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None


def start_early() -> EarlyServer:
    """Start the temporary Prefect server in the background when the flow would need one."""
    return EarlyServer().start()
