"""The promotion lock with a real MLflow store: a lock whose holder died on this host (killed, or its
pid reused) is broken at once, not after `lock_stale_s`; a live or remote holder is waited on with
"held by host:pid since ..." notices; `tlflow unlock NAME --reason` removes a lock and records it
in the ledger."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from flows.cli import app
from tlflow.registry import ledger, tracking
from tlflow.registry.lock import LockTimeout, lock_name, read_holder, registry_lock

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def client(module_project) -> MlflowClient:
    """One store for the module (creating it is most of the time); each test locks its own model."""
    tracking.configure()
    return MlflowClient()


@pytest.fixture
def name(request) -> str:
    return request.node.name.removeprefix("test_")[:40]


def _plant(client: MlflowClient, name: str, holder: str, acquired_at: float, pid_ns: str | None = None) -> None:
    """A lock as another process leaves it (its tags, as `registry_lock` writes them)."""
    tags = {"holder": holder, "acquired_at": f"{acquired_at:.3f}"}
    if pid_ns is not None:
        tags["pid_ns"] = pid_ns
    client.create_registered_model(lock_name(name), tags=tags)


def _locked(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(lock_name(name))
        return True
    except MlflowException:
        return False


def test_lock_of_a_killed_process_is_broken_at_once(client, name):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from mlflow import MlflowClient
        from tlflow.registry import tracking
        from tlflow.registry.lock import registry_lock
        tracking.configure()
        with registry_lock(MlflowClient(), {name!r}):
            print("locked", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert holder.stdout.readline().strip() == "locked"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert read_holder(client, name).label == f"{socket.gethostname()}:{holder.pid}"
    notices: list[str] = []
    start = time.monotonic()
    with registry_lock(client, name, wait_s=60, stale_s=1800, notify=notices.append):
        waited = time.monotonic() - start
    assert waited < 1.0, f"waited {waited:.2f} s for a dead holder's lock"
    assert any(f"{holder.pid}" in n and "its process is gone" in n for n in notices), notices
    assert not _locked(client, name)


def test_a_reused_pid_does_not_keep_the_lock(client, name):
    # The pid runs, but started after the lock was taken: not the process that took it.
    newcomer = subprocess.Popen(["sleep", "60"])
    try:
        _plant(client, name, f"{socket.gethostname()}:{newcomer.pid}", time.time() - 120)
        notices: list[str] = []
        with registry_lock(client, name, wait_s=10, stale_s=1800, notify=notices.append):
            pass
        assert "its process is gone" in notices[0]
    finally:
        newcomer.kill()
        newcomer.wait()


def test_a_live_holder_is_waited_on_with_who_holds_it(client, name):
    live = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.05)
        _plant(client, name, f"{socket.gethostname()}:{live.pid}", time.time())
        notices: list[str] = []
        start = time.monotonic()
        with pytest.raises(LockTimeout, match=f"held by {socket.gethostname()}:{live.pid} since .*tlflow unlock"):
            with registry_lock(client, name, wait_s=1.6, stale_s=1800, poll_s=0.1, notify=notices.append,
                               notice_s=0.5):
                pass
        assert time.monotonic() - start >= 1.6
        assert len(notices) >= 3, notices
        assert all(f"held by {socket.gethostname()}:{live.pid} since " in n for n in notices), notices
        assert _locked(client, name)  # never broken
    finally:
        live.kill()
        live.wait()


def test_a_remote_holder_is_waited_on_until_stale(client, name):
    _plant(client, name, "build-worker-7:4242", time.time(), pid_ns="pid:[1]")
    notices: list[str] = []
    with pytest.raises(LockTimeout):
        with registry_lock(client, name, wait_s=0.5, stale_s=1800, notify=notices.append):
            pass
    assert "held by build-worker-7:4242 since" in notices[0]
    with registry_lock(client, name, wait_s=5, stale_s=0.1, notify=notices.append):
        pass
    assert "older than promote.lock_stale_s" in notices[-1]


def test_unlock_removes_a_remote_lock_and_records_it(client, name):
    runner = CliRunner()
    missing = runner.invoke(app, ["unlock", name])
    assert missing.exit_code == 2 and "--reason" in missing.output
    nothing = runner.invoke(app, ["unlock", name, "--reason", "stuck"])
    assert nothing.exit_code == 1 and f"'{name}' has no promotion lock" in nothing.output

    _plant(client, name, "build-worker-7:4242", time.time() - 60, pid_ns="pid:[1]")
    blank = runner.invoke(app, ["unlock", name, "--reason", "  "])
    assert blank.exit_code == 1 and "needs --reason" in blank.output
    assert _locked(client, name)
    result = runner.invoke(app, ["unlock", name, "--reason", "worker 7 was preempted"])
    assert result.exit_code == 0, result.output
    assert "build-worker-7:4242" in result.output
    assert not _locked(client, name)
    entry = ledger.entries(client, name)[-1]
    assert entry.action == "unlock"
    assert entry.actor.startswith("cli user ")
    assert entry.reason.startswith("worker 7 was preempted")
    assert entry.decision["removed_lock"]["holder"] == "build-worker-7:4242"


def test_unlock_refuses_a_live_holder_on_this_host(client, name):
    _plant(client, name, f"{socket.gethostname()}:{os.getpid()}", time.time())
    result = CliRunner().invoke(app, ["unlock", name, "--reason", "impatient"])
    assert result.exit_code == 1
    assert f"a live process on this host: stop it (kill {os.getpid()})" in result.output
    assert _locked(client, name)
