"""The operations path with real servers: `tlflow servers up` starts a Prefect and an MLflow server
on free loopback ports; a process work pool, a deployment of `training_pipeline` with a tiny config,
a run triggered through the Prefect API and executed by a worker; the version and its alias are
then read from the MLflow server's registry. Drift monitoring on the same servers: AG News sentences
predicted by the champion (recorded as `tlflow serve` records them), a deployment of the `monitoring`
flow run by the worker, the report in the MLflow server, and the run of the retraining deployment it
starts, run by the worker too (nothing changed: the champion is kept). Both servers are stopped at
the end, also on failure."""

import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from flows.cli import app
from flows.monitoring import DRIFT_TAG
from tests.flows.test_monitoring import WINDOW, _ag_news
from tlflow.monitoring import decision
from tlflow.monitoring.recording import serve_recorder
from tlflow.registry import tracking
from tlflow.serving.model_loading import load_served_model

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prefect(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "prefect"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@contextmanager
def _prefect_api(env: dict):
    """A Prefect client of the test's server, which also `tlflow trigger` in this process uses (Prefect
    reads PREFECT_API_URL at import, before the test sets it)."""
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        yield client


def _worker_runs(pool: str, env: dict) -> str:
    """One poll of a worker on `pool`: it runs the scheduled flow runs it finds, then exits; its log."""
    worker = _prefect("worker", "start", "--pool", pool, "--run-once", env=env, timeout=600)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    return worker.stdout[-3000:] + worker.stderr[-3000:]


@pytest.mark.slow
def test_deployment_runs_on_a_worker_and_registers_in_the_mlflow_server(project, prefect_home, tiny_config,
                                                                       monkeypatch):
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
        # Judged on a small window; retraining when 2 of the 5 descriptors drift (as tests/flows/test_monitoring.py).
        cfg = tiny_config(**{"name": "served-by-worker", "monitoring.window": str(WINDOW), "monitoring.min_rows": "100",
                             "monitoring.threshold": "0.3"})
        # Training, monitoring and the config's retraining deployment (found by its tags: retraining + the name).
        deploy = subprocess.run([sys.executable, "-c", (
            "import json, sys\n"
            "from prefect import flow\n"
            "config = json.loads(sys.argv[1])\n"
            "for entrypoint, tags in [('flows/training.py:training_pipeline', []),\n"
            "                         ('flows/monitoring.py:monitoring_pipeline', []),\n"
            "                         ('flows/retraining.py:retraining_pipeline', ['retraining', config['name']])]:\n"
            "    print(flow.from_source(source='.', entrypoint=entrypoint).deploy(\n"
            "        name='tiny', work_pool_name='tlflow-test', parameters={'config': config}, tags=tags,\n"
            "        print_next_steps=False))\n"
        ), json.dumps(cfg.to_dict())], env=env, cwd=project, capture_output=True, text=True, timeout=300)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        with _prefect_api(env):
            missing = runner.invoke(app, ["trigger", "training_pipeline/nope"])
            flow_run = runner.invoke(app, ["trigger", "training_pipeline/tiny"])
        assert missing.exit_code == 1 and "no deployment 'training_pipeline/nope'" in missing.stderr
        assert "prefect deploy --all" in missing.stderr
        assert flow_run.exit_code == 0, flow_run.output
        run_id = flow_run.stdout.split("(")[1].split(")")[0]

        log = _worker_runs("tlflow-test", env)
        with _prefect_api(env) as prefect:
            state = prefect.read_flow_run(run_id).state
        assert state.is_completed(), f"{state}\n{log}"

        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
        champion = client.get_model_version_by_alias("served-by-worker", "champion")
        assert str(champion.version) == "1"
        assert champion.tags["prefect_flow_run_id"] == run_id
        # The version carries its run's test accuracy (what `tlflow models` and the gate read).
        assert float(champion.tags["test_accuracy"]) == pytest.approx(
            client.get_run(champion.run_id).data.metrics["test_accuracy"], abs=1e-6)

        # Drift: the champion answers AG News sentences; its window is recorded as `tlflow serve
        # TLFLOW_SERVE_RECORD=1` records it (the version's own monitoring.windows_dir, in this folder).
        tracking.configure()
        served = load_served_model("models:/served-by-worker@champion",
                                   serve_recorder("models:/served-by-worker@champion", "1"))
        served.predict(pd.DataFrame({"text": _ag_news()}))
        assert len(list((project / "monitoring" / "windows" / "served-by-worker").glob("predictions-*.jsonl"))) == 1
        with _prefect_api(env):
            triggered = runner.invoke(app, ["trigger", "monitoring/tiny"])
        assert triggered.exit_code == 0, triggered.output
        monitoring_id = triggered.stdout.split("(")[1].split(")")[0]
        log = _worker_runs("tlflow-test", env)
        with _prefect_api(env) as prefect:
            state = prefect.read_flow_run(monitoring_id).state
            drift_runs = prefect.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[DRIFT_TAG])))
            retraining = prefect.read_deployment_by_name("retraining_pipeline/tiny")
        assert state.is_completed() and "retraining triggered" in state.message, f"{state}\n{log}"
        [drift_run] = drift_runs  # a run of the retraining deployment, left to the work pool
        assert drift_run.deployment_id == retraining.id and str(drift_run.id) in state.message, state.message
        experiment = client.get_experiment_by_name(decision.monitoring_experiment("served-by-worker"))
        [check] = client.search_runs([experiment.experiment_id])
        assert check.data.tags[decision.TRIGGERED_TAG] == "true"
        assert check.data.tags[decision.FLOW_RUN_TAG] == str(drift_run.id)
        assert check.data.metrics["drift_score"] > cfg.monitoring.threshold
        assert [a.path for a in client.list_artifacts(check.info.run_id, "monitoring")] == ["monitoring/drift.html"]
        reason = client.get_model_version("served-by-worker", "1").tags
        assert reason[decision.FLOW_RUN_TAG] == str(drift_run.id) and "drift score" in reason[decision.REASON_TAG]

        # The retraining run on the worker: the data and the config are unchanged, the champion stays.
        log = _worker_runs("tlflow-test", env)
        with _prefect_api(env) as prefect:
            state = prefect.read_flow_run(drift_run.id).state
        assert state.is_completed() and "champion v1 kept" in state.message, f"{state}\n{log}"
        assert str(client.get_model_version_by_alias("served-by-worker", "champion").version) == "1"
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
