"""`MLFLOW_TRACKING_URI` must point at an MLflow server: a plain HTTP server (which answers the old
`/health` check too) is a one-line error before any work; a server that stops answering mid-way is
a one-line error within MLflow's bounded retries (`tracking.HTTP_BOUNDS`), not minutes later."""

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tlflow.registry import tracking

pytestmark = [pytest.mark.integration]


class _Server(BaseHTTPRequestHandler):
    """`mode` "any": 200 to everything. "dying": answers /health and /version like MLflow, then
    closes every API request unanswered. "hanging": the same, but API requests never get an answer."""

    mode = "any"
    release = threading.Event()

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.mode != "any" and self.path.startswith("/api/"):
            if self.mode == "hanging":
                self.release.wait(60)
            self.close_connection = True
            return
        body = (mlflow.__version__ if self.path == "/version" and self.mode != "any" else "OK").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@contextmanager
def _serve(mode: str) -> Iterator[str]:
    handler = type("Handler", (_Server,), {"mode": mode, "release": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        handler.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def bounds_unset(monkeypatch):
    """MLflow's HTTP settings as a user leaves them (restored afterwards: `configure` sets them)."""
    for key in tracking.HTTP_BOUNDS:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


@pytest.mark.parametrize("command", [["models"], ["run", "configs/sst2.yaml"]])
def test_a_server_that_is_not_mlflow_is_a_one_line_error(project, monkeypatch, command):
    with _serve("any") as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        start = time.monotonic()
        result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert time.monotonic() - start < 15
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"error: MLFLOW_TRACKING_URI={uri} is not an MLflow tracking server: BaseHTTP/")
    assert "answered GET /version with 200 'OK'" in lines[0]
    assert "Traceback" not in result.output and len(lines) <= 2  # `run` adds what was left undone


@pytest.mark.parametrize("mode, timeout", [("dying", None), ("hanging", "2")])
def test_a_server_that_stops_answering_is_a_bounded_one_line_error(project, monkeypatch, bounds_unset, mode,
                                                                     timeout):
    if timeout:  # a hung server costs (retries + 1) * timeout: a small one keeps the test short
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", timeout)
    with _serve(mode) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        start = time.monotonic()
        result = CliRunner().invoke(app, ["models"])
        took = time.monotonic() - start
    assert result.exit_code == 1, result.output
    assert took < 25, f"{took:.0f} s"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == tracking.HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == (timeout or tracking.HTTP_BOUNDS["MLFLOW_HTTP_REQUEST_TIMEOUT"])
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read the registry at {uri}"), result.output


def test_an_mlflow_version_answer_passes(monkeypatch):
    with _serve("dying") as uri:
        assert tracking.check_server(uri) == mlflow.__version__
