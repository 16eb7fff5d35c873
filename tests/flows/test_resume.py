"""A `tlflow run` killed mid-training resumes from its last checkpoint when started again."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tlflow.registry import tracking

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]

SETS = [
    "name=resume", "model.init=random", "model.num_layers=2", "model.hidden_size=64", "model.num_heads=2",
    "model.intermediate_size=128", "model.max_length=64", "data.max_train_rows=3000", "data.max_eval_rows=200",
    "finetune.epochs=2", "finetune.checkpoint_every_steps=20", "finetune.learning_rate=1e-3",
    "promote.trivial_baseline=false", "privacy.pii=off",
]


def _tlflow_run(project: Path) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).parent / "tlflow"), "run", "configs/sst2.yaml"]
    for s in SETS:
        cmd += ["--set", s]
    env = {**os.environ, "PREFECT_HOME": str(project / ".prefect")}
    env.pop("PREFECT_API_URL", None)  # its own ephemeral server, as a user's shell would have
    return subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _checkpoints(project: Path) -> list[Path]:
    return sorted(project.glob(".cache/tlflow/checkpoints/resume/*/step-*"))


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(project, prefect_home):
    proc = _tlflow_run(project)
    deadline = time.monotonic() + 240
    while not any(p.name >= "step-0000040" for p in _checkpoints(project)):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = max(int(p.name.removeprefix("step-")) for p in _checkpoints(project))

    proc = _tlflow_run(project)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "resume v1 became champion" in output

    tracking.configure()
    client = MlflowClient()
    run = client.search_runs([tracking.ensure_experiment("resume")], "attributes.status = 'FINISHED'")[0]
    assert run.data.metrics["train/resumed_from_step"] >= saved >= 40
    assert run.data.metrics["train/steps"] == 188  # 2 epochs of ceil(3000 / 32) steps, not fewer
    assert [str(v.version) for v in client.search_model_versions("name = 'resume'")] == ["1"]
