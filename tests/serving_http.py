"""Helpers of the tests that start a real model server as a subprocess on a free loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes | dict) -> tuple[int, str]:
    """(status, body) of a JSON POST; an HTTP error status is returned, not raised."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def start(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """The server process (its output in `cwd/server-<port>.log`, never a pipe that could fill up)
    and its base URL (the port is the value after `--port`)."""
    port = command[command.index("--port") + 1]
    with open(Path(cwd) / f"server-{port}.log", "w", encoding="utf-8") as log:
        server = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    server.log = log.name
    return server, f"http://127.0.0.1:{port}"


def wait_ready(server: subprocess.Popen, base: str, timeout: float = 180) -> None:
    """Until GET /ping answers 200; fails with the server's log when it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, Path(server.log).read_text(encoding="utf-8")[-3000:]
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"model server {base} did not start"
        time.sleep(0.5)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
