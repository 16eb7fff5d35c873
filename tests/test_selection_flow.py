"""`tlflow select` end to end on two tiny candidates and four trials: the first run, on a local Dask
cluster of two workers, is killed once two trials have finished; the second resumes the study (no
finished trial is run again) on an existing Dask cluster the test started (`select.dask_address`),
trials worse than the finished ones are pruned and marked so, and the winner is retrained on train
+ validation (`select.retrain_on`) and registered with its selection lineage.

The data are a tiny synthetic sentiment set ('good' vs 'bad' among filler words) that a 2-layer
BERT learns in a dozen steps, so a trial with a learning rate of 1e-9 to 3e-9 is surely worse. The
TPE sampler is seeded per slot (seed + k) and draws at random before its tenth trial, so with seed 23
slots 0 and 1 train with 3e-3 (one candidate each) and slots 2 to 11 (and the retries of killed
trials) with 1e-9 to 3e-9: every trial after the first two is worse than both at some evaluation.
"""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from transformers import BertConfig, BertModel

from tlflow.modeling.models import load_tokenizer
from tlflow.registry import tracking
from tlflow.registry.fingerprint import load_fingerprint

pytestmark = [pytest.mark.flow, pytest.mark.slow]

FILLER = "the a film movie plot actor scene story music ending quite very rather really".split()


def _write_split(path: Path, n: int, rng: random.Random, seen: set[str]) -> None:
    rows = ["text,label"]
    while len(rows) <= n:
        label = rng.choice(["positive", "negative"])
        words = rng.sample(FILLER, 3) + ["good" if label == "positive" else "bad"] * 3
        rng.shuffle(words)
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            rows.append(f"{text},{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _tiny_base(path: Path, hidden: int) -> str:
    tokenizer = load_tokenizer("minilm-l6")
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=2 * hidden, max_position_embeddings=64)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def selection_config(project) -> Path:
    synthetic = project / "synthetic"
    synthetic.mkdir()
    rng, seen = random.Random(0), set()
    for split, n in (("train", 200), ("dev", 60), ("test", 60)):
        _write_split(synthetic / f"{split}.csv", n, rng, seen)
    bases = [_tiny_base(project / "bases" / name, hidden) for name, hidden in (("tiny-a", 32), ("tiny-b", 48))]
    config = {
        "name": "sel",
        "data": {"format": "csv", "files": {"train": "synthetic/train.csv", "validation": "synthetic/dev.csv",
                                            "test": "synthetic/test.csv"},
                 "text_columns": ["text"], "label_names": ["negative", "positive"]},
        "task": {"type": "text-classification", "primary_metric": "accuracy"},
        "model": {"base": bases[0], "max_length": 32},
        "finetune": {"epochs": 1, "min_steps": 0, "batch_size": 8, "eval_every_steps": 4, "log_every_steps": 4,
                     "checkpoint_every_steps": 100, "gap_rows": 30, "speedups": []},
        "privacy": {"pii": "off"},
        "evaluate": {"misclassified_examples": 3},
        "promote": {"bootstrap_samples": 100},
        "paths": {"data_roots": ["data", "synthetic"], "model_roots": ["bases"]},
        "select": {"candidates": bases, "trials": 4, "seed": 23, "study_name": "sel-study", "pruner": "median",
                   "pruner_startup_trials": 1, "workers": 2, "heartbeat_s": 2, "retrain_on": "train_and_validation",
                   "space": {"learning_rate": {"choices": [3e-3, 1e-9, 2e-9, 3e-9]}}},
    }
    path = project / "select_tiny.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _tlflow_select(project: Path, config: Path, *sets: str) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(project / ".prefect")}
    env.pop("PREFECT_API_URL", None)  # its own temporary server, as a user's shell would have
    command = [str(Path(sys.executable).parent / "tlflow"), "select", str(config), *(f"--set={s}" for s in sets)]
    return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _external_cluster(project: Path, monkeypatch):
    """A Dask cluster of two worker processes that is none of `tlflow select`'s own (as a shared one
    would be), its workers in the project with the environment the command gets."""
    from distributed import LocalCluster

    monkeypatch.setenv("PREFECT_HOME", str(project / ".prefect"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # the command's server reaches the workers with each task
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")


def _ran_on(cluster) -> Counter:
    """Tasks the cluster's scheduler saw finish, by function (a Prefect task run's key is
    `<function>-<token>`: run_trial, run_probe)."""
    keys = {str(t.key) for t in cluster.scheduler.transition_log if t.finish == "memory"}
    return Counter(key.rsplit("-", 1)[0] for key in keys)


def _states(project: Path) -> list[str]:
    db = project / ".cache" / "tlflow" / "selection" / "optuna.db"
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return [s for (s,) in conn.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:  # tables not made yet
        return []


def summary_candidates(output: str) -> list[str]:
    """Candidates of the printed table whose linear probe was scored."""
    return [line.split("|")[1].strip() for line in output.splitlines()
            if line.startswith("| /") and line.split("|")[4].strip() != "-"]


def winner_candidates(trials) -> list[str]:
    return sorted({t.params["candidate"] for t in trials if t.state.name == "COMPLETE"})


def test_selection_resumes_prunes_and_registers_the_winner(project, prefect_home, selection_config, monkeypatch):
    first = _tlflow_select(project, selection_config)
    deadline = time.monotonic() + 420
    while _states(project).count("COMPLETE") < 2:
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "two trials did not finish within 420 s"
        time.sleep(0.3)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = _states(project)
    time.sleep(5)  # two heartbeats (select.heartbeat_s 2): a trial the kill left RUNNING is stale now

    cluster = _external_cluster(project, monkeypatch)
    try:
        second = _tlflow_select(project, selection_config, f"select.dask_address={cluster.scheduler_address}")
        output, _ = second.communicate(timeout=600)
        assert second.returncode == 0, output
        ran = _ran_on(cluster)
    finally:
        cluster.close()

    import optuna

    study = optuna.load_study(study_name="sel-study",
                              storage=f"sqlite:///{project / '.cache/tlflow/selection/optuna.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    states = [t.state.name for t in trials]
    assert states[:2] == ["COMPLETE", "COMPLETE"] and before[:2] == ["COMPLETE", "COMPLETE"]  # kept, not rerun
    assert states.count("COMPLETE") + states.count("PRUNED") == 4 and "RUNNING" not in states
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned and all(t.params["learning_rate"] < 1e-8 for t in pruned)
    for t in trials:  # a trial the kill interrupted is failed, and its settings ran again; one killed
        if t.state.name == "FAIL" and t.params:  # between asking and drawing has no settings to retry
            assert any(u.system_attrs.get("failed_trial") == t.number for u in trials), t.number

    tracking.configure()
    client = MlflowClient()
    experiment = tracking.ensure_experiment("sel")
    for t in pruned:  # the pruned trial's run: KILLED, tagged, its curve cut short
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["trial_state"] == "pruned"
        assert run.data.tags["selection_trial"] == str(t.number) and run.info.experiment_id == experiment
    versions = client.search_model_versions("name = 'sel'")
    assert len(versions) == 1
    tags = versions[0].tags
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    winner = min(finished, key=lambda t: (-t.value, t.user_attrs["seconds"], t.number))  # ties: the cheaper
    assert tags["selection_study"] == "sel-study" and tags["selection_trial"] == str(winner.number)
    assert tags["selection_candidate"] == winner.params["candidate"] and winner.params["learning_rate"] == 3e-3
    selection_run = client.get_run(tags["selection_run_id"])
    assert {a.path for a in client.list_artifacts(selection_run.info.run_id, "selection")} >= {
        "selection/trials.md", "selection/trials.json", "selection/candidates.md", "selection/history.png",
        "selection/candidates.png"}
    assert selection_run.data.metrics["trials/pruned"] >= 1
    trial_run = client.get_run(winner.user_attrs["mlflow_run_id"])
    assert "gap/accuracy" in trial_run.data.metrics and "gap/train_accuracy" in trial_run.data.metrics
    assert "linear probe val_accuracy" in output and set(summary_candidates(output)) == set(winner_candidates(trials))
    assert "sel v1 became champion" in output
    # the resumed trials and the linear probes ran on the cluster of select.dask_address, nothing else did
    resumed = 4 - before.count("COMPLETE") - before.count("PRUNED")
    assert ran == {"run_trial": resumed, "run_probe": len(winner_candidates(trials))}, ran

    # the winner's final run trained on train + validation (200 + 60 rows, all fingerprinted), unvalidated
    final = client.get_run(versions[0].run_id)
    assert tags["selection_retrain_on"] == final.data.tags["selection_retrain_on"] == "train_and_validation"
    assert final.data.params["data.train_on_validation"] == "true" and final.data.metrics["data/rows_trained"] == 260
    assert not any(k.startswith(("val_", "gap/")) for k in final.data.metrics) and "test_accuracy" in final.data.metrics
    assert load_fingerprint(final.info.run_id).rows == 260
