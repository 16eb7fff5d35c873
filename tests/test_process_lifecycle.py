"""A run leaves nothing behind, whatever ends it, and survives a starved CPU.

- `tlflow run` beside busy loops (the CPU oversubscribed), killed with SIGKILL mid-training: the
  temporary Prefect server it started dies with it. The next run marks the killed run's MLflow run
  KILLED with a note and resumes from its last checkpoint (the model trains its steps in all, not
  fewer); its Prefect API is killed mid-training: one line, exit 1. The run after it completes
  (resuming from the last checkpoint, or finding the version registered before the loss surfaced);
  no process of any of them survives.
- A temporary server that does not come up in time: one line, and the server is stopped.
- Runs of dead processes: marked KILLED with a note; live, remote or unrecorded owners are left.
- `tlflow servers down`: returns once every process of a server is gone (also one in a session of
  its own, or one that ignores SIGTERM); the MLflow server runs without job-queue workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.commands import pipelines
from flows.ops import servers
from tlflow.registry import tracking
from tlflow.registry.abandoned_runs import (
    KILLED_TAG,
    NOTE_TAG,
    PROCESS_NS_TAG,
    PROCESS_TAG,
    close_abandoned_runs,
    owner_tags,
)

pytestmark = [pytest.mark.integration]

BIN = Path(sys.executable).parent
#: Busy loops beside the run, all on one core (BUSY_CORE): the run gets a third of it, its temporary
#: Prefect server a quarter while both start, so that the server needs more than Prefect's default
#: 20 s to start. On one core only, the starved run leaves the machine's other cores to other work
#: (the other pytest-xdist worker) instead of starving it too.
BUSY_LOOPS = 2
BUSY_CORE = max(os.sched_getaffinity(0))
CHECKPOINTS = ".cache/tlflow/checkpoints/lifecycle/*"
SETS = [
    "name=lifecycle", "model.init=random", "model.num_layers=2", "model.hidden_size=64", "model.num_heads=2",
    "model.intermediate_size=128", "model.max_length=64", "data.max_train_rows=800", "data.max_eval_rows=100",
    "fairness.eec=null", "privacy.pii=off", "finetune.checkpoint_every_steps=5", "finetune.learning_rate=1e-3", "evaluate.misclassified_examples=5",
    "finetune.min_steps=0", "finetune.epochs=3",  # 75 steps: checkpoints to kill after, no more
]


def _wait_for(condition: Callable[[], object], timeout_s: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        time.sleep(0.2)
    return result


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session(sid: int) -> list[psutil.Process]:
    """Live processes of session `sid` (a run started with `start_new_session` and all it started)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if os.getsid(process.pid) == sid and _running(process):
                found.append(process)
        except (OSError, psutil.Error):
            continue
    return found


def _on_busy_core() -> None:
    os.sched_setaffinity(0, {BUSY_CORE})  # inherited by every process the run starts


def _tlflow_run(project: Path, busy: bool = False) -> subprocess.Popen:
    cmd = [str(BIN / "tlflow"), "run", "configs/sst2.yaml"]
    for s in SETS:
        cmd += ["--set", s]
    env = {**os.environ, "PREFECT_HOME": str(project / ".prefect")}
    env.pop("PREFECT_API_URL", None)  # a temporary server of its own, as in a user's shell
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_on_busy_core if busy else None)


def _kill_session(proc: subprocess.Popen) -> None:
    """Whatever a failed test left of a run (nothing, when the code under test works)."""
    for process in _session(proc.pid):
        process.kill()
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """BUSY_LOOPS processes spinning at nice 0 on BUSY_CORE (each gives up after 15 minutes on its own)."""
    loop = "import time\nend = time.monotonic() + 900\nwhile time.monotonic() < end:\n    pass\n"
    loops = [subprocess.Popen([sys.executable, "-S", "-c", loop], preexec_fn=_on_busy_core) for _ in range(BUSY_LOOPS)]
    try:
        yield
    finally:
        for process in loops:
            process.kill()
            process.wait()


def _temporary_server(run: subprocess.Popen) -> psutil.Process | None:
    children = psutil.Process(run.pid).children()
    return next((c for c in children if "uvicorn" in " ".join(c.cmdline())), None)


def _last_step(project: Path) -> int:
    return max((int(p.name.removeprefix("step-")) for p in project.glob(f"{CHECKPOINTS}/step-*")), default=0)


@pytest.mark.slow
@pytest.mark.needs_data
def test_killed_and_cut_off_runs_leave_nothing_and_the_next_run_resumes_on_a_busy_cpu(project, busy_cpu, monkeypatch):
    runs: list[subprocess.Popen] = []
    try:
        # 1. SIGKILL mid-training: the temporary Prefect server dies with the run.
        killed = _tlflow_run(project, busy=True)
        runs.append(killed)
        server = _wait_for(lambda: _temporary_server(killed), 300, "temporary Prefect server", killed)
        _wait_for(lambda: _last_step(project), 400, "checkpoint", killed)
        os.kill(killed.pid, signal.SIGKILL)  # the run's process only, as `kill -9 PID` does
        killed.wait()
        saved = _last_step(project)  # the newest checkpoint the killed run left
        assert not psutil.wait_procs([server], timeout=15)[1], "the temporary server outlived the killed run"
        assert not _session(killed.pid), "a process of the killed run survived it"

        # 2. The Prefect API goes away mid-training: one line, exit 1, nothing left running.
        monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", "1")  # give up on the dead API sooner
        cut_off = _tlflow_run(project, busy=True)
        runs.append(cut_off)
        before = _last_step(project)
        server = _wait_for(lambda: _temporary_server(cut_off), 300, "temporary Prefect server", cut_off)
        _wait_for(lambda: _last_step(project) > before, 400, "checkpoint of its own", cut_off)
        server.kill()
        output, _ = cut_off.communicate(timeout=600)
        assert cut_off.returncode == 1, output[-3000:]
        assert "error: the Prefect API (the temporary Prefect server) stopped answering (ConnectError" in output
        assert pipelines.RESUMABLE in output
        for noise in ("Traceback", "--- Error logging to API ---", "| ERROR"):
            assert noise not in output, output[-3000:]
        assert not _session(cut_off.pid), "a process of the cut-off run survived it"
        monkeypatch.delenv("PREFECT_CLIENT_MAX_RETRIES")

        # 3. The next run completes, on the same busy CPU.
        last = _tlflow_run(project, busy=True)
        runs.append(last)
        output, _ = last.communicate(timeout=900)
        assert last.returncode == 0, output[-3000:]
        # The API loss surfaced before registration (the run resumes) or after it (the version is found).
        assert "lifecycle v1 became champion" in output or "unchanged: lifecycle v1" in output, output[-3000:]
        assert "Traceback" not in output and "Timed out" not in output, output[-3000:]
        assert not _session(last.pid), "a process of the completed run survived it"
    finally:
        for proc in runs:
            _kill_session(proc)

    tracking.configure()
    client = MlflowClient()
    found = client.search_runs([tracking.ensure_experiment("lifecycle")], order_by=["attributes.start_time ASC"])
    statuses = [r.info.status for r in found]
    assert statuses[0] == "KILLED" and statuses[1] in ("FAILED", "FINISHED") and statuses[2:] in ([], ["FINISHED"])
    dead, cut = found[:2]
    assert dead.data.tags[PROCESS_TAG].endswith(f":{killed.pid}")
    assert f"found by run {cut.info.run_id}" in dead.data.tags[KILLED_TAG]
    assert dead.data.tags[KILLED_TAG] in dead.data.tags[NOTE_TAG]
    assert cut.data.metrics["train/resumed_from_step"] >= saved >= 5  # from the killed run's last checkpoint
    if len(found) == 3:  # trained on from a later checkpoint, the cut-off run's
        assert found[2].data.metrics["train/resumed_from_step"] > cut.data.metrics["train/resumed_from_step"]
    trained = [r.data.metrics["train/steps"] for r in found if "train/steps" in r.data.metrics]
    assert max(trained) == 75  # 3 epochs of 25 steps in all, not fewer, by whichever run finished training
    assert [str(v.version) for v in client.search_model_versions("name = 'lifecycle'")] == ["1"]


@pytest.mark.flow
@pytest.mark.needs_data
def test_a_temporary_server_that_does_not_come_up_is_one_line_and_is_stopped(project, monkeypatch):
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "1")
    proc = _tlflow_run(project)
    try:
        output, _ = proc.communicate(timeout=300)
        assert not _session(proc.pid), "the temporary Prefect server outlived the failed start"
    finally:
        _kill_session(proc)
    assert proc.returncode == 1, output
    assert output.strip().splitlines() == [
        "error: the temporary Prefect server did not start: it did not answer within 1 s (a busy machine: raise "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start one with `make serve` and set PREFECT_API_URL)",
        "Nothing was trained or registered."]


def _dead_pid() -> int:
    proc = subprocess.Popen(["sleep", "60"])
    proc.kill()
    proc.wait()
    return proc.pid


def test_runs_of_dead_processes_on_this_host_are_marked_killed_with_a_note(project):
    tracking.configure()
    client = MlflowClient()
    experiment_id = tracking.ensure_experiment("abandoned")
    here, pid_ns = socket.gethostname(), owner_tags()[PROCESS_NS_TAG]

    def run(process: str | None, start_s: float | None = None, **tags: str) -> str:
        owner = {PROCESS_TAG: process, PROCESS_NS_TAG: pid_ns} if process else {}
        start_time = int(1000 * (start_s or time.time()))
        return client.create_run(experiment_id, start_time=start_time, tags={**owner, **tags}).info.run_id

    dead = run(f"{here}:{_dead_pid()}", **{NOTE_TAG: "fine-tune of the nightly job"})
    reused = run(f"{here}:{os.getpid()}", start_s=psutil.Process().create_time() - 3600)  # a pid since reused
    live = run(f"{here}:{os.getpid()}")
    remote = run(f"elsewhere:{_dead_pid()}")
    unrecorded = run(None)
    finished = run(f"{here}:{_dead_pid()}")
    client.set_terminated(finished)

    assert close_abandoned_runs(client, experiment_id, found_by="new-run") == [reused, dead]  # oldest first
    status = {r: client.get_run(r).info.status for r in (dead, reused, live, remote, unrecorded, finished)}
    assert status == {dead: "KILLED", reused: "KILLED", live: "RUNNING", remote: "RUNNING", unrecorded: "RUNNING",
                      finished: "FINISHED"}
    tags = client.get_run(dead).data.tags
    assert tags[KILLED_TAG].startswith(f"KILLED: its process {tags[PROCESS_TAG]} ended without closing the run")
    assert "found by run new-run" in tags[KILLED_TAG]
    assert tags[NOTE_TAG] == f"fine-tune of the nightly job\n\n{tags[KILLED_TAG]}"
    assert close_abandoned_runs(client, experiment_id, found_by="another-run") == []  # closed once


#: A server as `servers up` starts one (leading its own process group): a worker in its group that
#: takes a second to stop on SIGTERM, and one in a session of its own that ignores SIGTERM.
SERVER_TREE = textwrap.dedent("""
    import signal, subprocess, sys, time
    slow = "import signal, sys, time\\nsignal.signal(signal.SIGTERM, lambda *a: (time.sleep(1), sys.exit(0)))\\n" \\
           "print(flush=True)\\ntime.sleep(600)"
    stubborn = "import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\nprint(flush=True)\\ntime.sleep(600)"
    children = [subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE),
                subprocess.Popen([sys.executable, "-c", stubborn], stdout=subprocess.PIPE, start_new_session=True)]
    for child in children:
        child.stdout.readline()  # its SIGTERM handler is in place
    print(" ".join(str(c.pid) for c in children), flush=True)
    time.sleep(600)
""")


def test_stopping_a_server_waits_until_every_process_of_it_is_gone(monkeypatch):
    monkeypatch.setattr(servers, "KILL_WAIT_S", 5.0)
    leader = subprocess.Popen([sys.executable, "-c", SERVER_TREE], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    tree = [psutil.Process(leader.pid)]
    try:
        tree += [psutil.Process(int(pid)) for pid in leader.stdout.readline().split()]
        assert len(tree) == 3
        began = time.monotonic()
        assert servers.stop_tree(leader.pid, timeout_s=3) == []
        assert [p.pid for p in tree if _running(p)] == []
        assert time.monotonic() - began >= 3  # the stubborn one was waited for, then killed
    finally:
        for process in tree:
            if _running(process):
                process.kill()
        leader.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_servers_down_returns_once_both_servers_are_gone_and_mlflow_has_no_job_workers(project, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(project / ".prefect"))
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    runner = CliRunner()
    prefect_port, mlflow_port = _free_port(), _free_port()
    try:
        result = runner.invoke(app, ["servers", "up", "--prefect-port", str(prefect_port),
                                     "--mlflow-port", str(mlflow_port)])
        assert result.exit_code == 0, result.output
        leaders = {s.name: int(s.pid_file.read_text()) for s in servers.servers()}
        trees = {name: servers._tree(pid) for name, pid in leaders.items()}
        commands = [" ".join(p.cmdline()) for p in trees["mlflow"] if _running(p)]
        assert not [c for c in commands if "huey" in c or "job" in c], commands
        result = runner.invoke(app, ["servers", "down"])
        assert result.exit_code == 0, result.output
        assert "stopped: prefect, mlflow" in result.output
        left = [p for tree in trees.values() for p in tree if _running(p)]
        assert left == [], [p.cmdline() for p in left]
    finally:
        servers.down()
