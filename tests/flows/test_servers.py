"""The operations path with real servers: `tlflow servers up` starts a Prefect and an MLflow server
on free loopback ports; a process work pool, a deployment of `training_pipeline` with a tiny config,
a run triggered through the Prefect API and executed by a worker; the version and its alias are
then read from the MLflow server's registry. Both servers are stopped at the end, also on failure."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "prefect"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_deployment_runs_on_a_worker_and_registers_in_the_mlflow_server(project, tiny_config, monkeypatch):
    prefect_port, mlflow_port = _free_port(), _free_port()
    for package in ("flows", "tasks", "tlflow"):  # the worker imports the entrypoint from its folder
        (project / package).symlink_to(REPO / package, target_is_directory=True)
    env = {**os.environ, "PREFECT_HOME": str(project / ".prefect"),
           "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
           "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}"}
    for key in ("PREFECT_HOME", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["servers", "up", "--prefect-port", str(prefect_port),
                                     "--mlflow-port", str(mlflow_port)])
        assert result.exit_code == 0, result.output
        assert f"http://127.0.0.1:{mlflow_port}" in result.output

        created = _prefect("work-pool", "create", "tlflow-test", "--type", "process", env=env)
        assert created.returncode == 0, created.stdout + created.stderr

        # The repository's prefect.yaml deploys as users deploy it (its pool first).
        assert _prefect("work-pool", "create", "tlflow-process", "--type", "process", env=env).returncode == 0
        limited = _prefect("work-pool", "set-concurrency-limit", "tlflow-process", "1", env=env)  # as documented
        assert limited.returncode == 0, limited.stdout + limited.stderr
        deployed = subprocess.run([str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"],
                                  env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        names = subprocess.run([sys.executable, "-c", (
            "from prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c:\n"
            "    for d in c.read_deployments():\n"
            "        options = d.concurrency_options.collision_strategy.value if d.concurrency_options else None\n"
            "        limit = d.global_concurrency_limit.limit if d.global_concurrency_limit else None\n"
            "        print(d.name, limit, options,"
            " *[s.schedule.cron for s in d.schedules if hasattr(s.schedule, 'cron')], sep='|')\n"
        )], env=env, capture_output=True, text=True, timeout=120).stdout.splitlines()
        served = {line.split("|")[0]: line.split("|")[1:] for line in names}
        # The nightly retrainings arrive staggered, one run per deployment at a time (queued).
        crons = {f"retrain-{c}": served[f"retrain-{c}"] for c in ("sst2", "emotion", "ag-news", "mrpc", "conll2003",
                                                                  "squad")}
        assert crons["retrain-sst2"] == ["1", "ENQUEUE", "0 2 * * *"], crons
        assert len({fields[2] for fields in crons.values()}) == len(crons), crons
        assert all(fields[:2] == ["1", "ENQUEUE"] for fields in crons.values()), crons
        assert {"training", "pretraining", "transfer-report"} <= set(served)
        cfg = tiny_config(name="served-by-worker")
        deploy = subprocess.run([sys.executable, "-c", (
            "import json, sys\n"
            "from prefect import flow\n"
            "d = flow.from_source(source='.', entrypoint='flows/training.py:training_pipeline').deploy(\n"
            "    name='tiny', work_pool_name='tlflow-test', parameters={'config': json.loads(sys.argv[1])},\n"
            "    print_next_steps=False)\n"
            "print(d)\n"
        ), json.dumps(cfg.to_dict())], env=env, cwd=project, capture_output=True, text=True, timeout=300)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        tlflow = [str(Path(sys.executable).parent / "tlflow")]
        missing = subprocess.run([*tlflow, "trigger", "training_pipeline/nope"], env=env, cwd=project,
                                 capture_output=True, text=True, timeout=120)
        assert missing.returncode == 1 and "no deployment 'training_pipeline/nope'" in missing.stderr
        assert "prefect deploy --all" in missing.stderr
        flow_run = subprocess.run([*tlflow, "trigger", "training_pipeline/tiny"], env=env, cwd=project,
                                  capture_output=True, text=True, timeout=120)
        assert flow_run.returncode == 0, flow_run.stderr
        run_id = flow_run.stdout.split("(")[1].split(")")[0]

        worker = _prefect("worker", "start", "--pool", "tlflow-test", "--run-once", env=env, timeout=600)
        assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
        state = subprocess.run([sys.executable, "-c", (
            "import sys\nfrom prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c:\n    print(c.read_flow_run(sys.argv[1]).state.type.value)\n"
        ), run_id], env=env, capture_output=True, text=True, timeout=60)
        assert state.stdout.strip() == "COMPLETED", state.stdout + state.stderr + worker.stdout[-3000:]

        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
        champion = client.get_model_version_by_alias("served-by-worker", "champion")
        assert str(champion.version) == "1"
        assert champion.tags["prefect_flow_run_id"] == run_id
        # The version carries its run's test accuracy (what `tlflow models` and the gate read).
        assert float(champion.tags["test_accuracy"]) == pytest.approx(
            client.get_run(champion.run_id).data.metrics["test_accuracy"], abs=1e-6)
    finally:
        result = runner.invoke(app, ["servers", "down"])
    assert "prefect" in result.output and "mlflow" in result.output


@pytest.mark.integration  # no Prefect: the MLflow check fails first
def test_unreachable_server_is_a_clear_error(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    result = CliRunner().invoke(app, ["run", "configs/sst2.yaml"])
    assert result.exit_code == 1
    assert "MLflow tracking server (MLFLOW_TRACKING_URI) is not reachable" in result.output
    assert "make serve" in result.output
