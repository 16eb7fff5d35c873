"""Drift monitoring end to end: a tiny champion trained on SST-2 sentences, its predictions
recorded by `batch_predict`, and the `monitoring` flow against real Evidently, Prefect and MLflow.
Held-out SST-2 sentences do not trigger retraining; AG News sentences do (a run of the retraining
deployment, left scheduled, with the reason on the champion version), once."""

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterTags

from flows.batch import batch_predict
from flows.monitoring import DRIFT_TAG, monitoring_pipeline
from flows.retraining import retraining_from_file
from flows.training import training_pipeline
from tlflow.monitoring import decision
from tlflow.monitoring.recording import serve_recorder
from tlflow.registry import tracking
from tlflow.serving.model_loading import load_served_model

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]

WINDOW = 240


def _sst2(root: Path) -> tuple[dict[str, str], list[str]]:
    """Train/validation/test files cut from SST-2's labelled test sentences, and held-out sentences."""
    lines = Path("data/sst2/test.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    (root / "mydata").mkdir()
    parts = {"train": rows[:300], "validation": rows[300:400], "test": rows[400:500]}
    for split, part in parts.items():
        (root / "mydata" / f"{split}.tsv").write_text("\n".join([header, *part]) + "\n", encoding="utf-8")
    return {split: f"mydata/{split}.tsv" for split in parts}, [r.split("\t")[0] for r in rows[900:900 + WINDOW]]


def _ag_news() -> list[str]:
    with open("data/ag_news/test.csv", encoding="utf-8", newline="") as fh:
        return [row[2].replace("\\", " ") for _, row in zip(range(WINDOW), csv.reader(fh))]


def _predict(root: Path, texts: list[str], stem: str) -> None:
    (root / f"{stem}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    batch_predict("watched", f"{stem}.jsonl", f"out/{stem}.jsonl")


def _drift_runs() -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[DRIFT_TAG])))


def test_shifted_window_triggers_retraining_and_unshifted_does_not(project, prefect_server, tiny_config):
    files, heldout = _sst2(project)
    cfg = tiny_config(**{"name": "watched", "data.files": str(files), "data.max_train_rows": "null",
                         "data.max_eval_rows": "null", "data.drop_train_overlap": "false",
                         "paths.data_roots": "[data, mydata]", "monitoring.window": str(WINDOW),
                         "monitoring.min_rows": "100", "monitoring.reference_rows": "300",
                         "monitoring.threshold": "0.3", "fairness.eec": "null", "finetune.eval_every_steps": "100",
                         "privacy.pii": "off"})
    assert training_pipeline(cfg).version == "1"
    retraining_from_file.to_deployment(name="retrain-watched", tags=["retraining", "watched"],
                                       parameters={"config_file": "configs/sst2.yaml"}).apply()
    tracking.configure()
    client = MlflowClient()

    _predict(project, heldout, "sst2")
    window = sorted((project / "monitoring" / "windows" / "watched").glob("predictions-*.jsonl"))
    record = json.loads(window[0].read_text(encoding="utf-8").splitlines()[0])
    assert "text" not in record and record["source"] == "batch" and len(record["cls"]) == 64  # statistics only
    same = monitoring_pipeline(cfg)
    assert same.result is not None and same.window_rows == WINDOW and not same.due, same.summary()
    assert same.result.score <= cfg.monitoring.threshold
    assert _drift_runs() == []

    _predict(project, _ag_news(), "news")
    shifted = monitoring_pipeline(cfg)
    assert shifted.due and shifted.result.score > cfg.monitoring.threshold, shifted.summary()
    assert {"text_length", "embedding_distance"} <= set(shifted.result.drifted)
    [run] = _drift_runs()
    assert run.deployment_id is not None and run.state.is_scheduled()  # left to the work pool
    tags = client.get_model_version("watched", "1").tags
    assert tags[decision.FLOW_RUN_TAG] == str(run.id) and "drift score" in tags[decision.REASON_TAG]

    runs = client.search_runs([client.get_experiment_by_name("watched-monitoring").experiment_id],
                              order_by=["attributes.start_time ASC"])
    assert [r.data.tags.get(decision.TRIGGERED_TAG) for r in runs] == [None, "true"]
    assert [a.path for a in client.list_artifacts(runs[1].info.run_id, "monitoring")] == ["monitoring/drift.html"]
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["watched-monitoring"])))
    assert any("embedding_distance" in a.data and "retraining triggered" in a.data for a in artifacts)

    again = monitoring_pipeline(cfg)  # the same drift within the cooldown starts nothing more
    assert again.drifted and not again.due and len(_drift_runs()) == 1


    # what `tlflow serve` answers is recorded when TLFLOW_SERVE_RECORD is set, never otherwise
    assert serve_recorder("models:/watched@champion", None) is None
    served = load_served_model("models:/watched@champion", serve_recorder("models:/watched@champion", "1"))
    served.predict(pd.DataFrame({"text": ["a gorgeous , witty movie .", "dull"]}))
    lines = [json.loads(line) for f in window for line in f.read_text(encoding="utf-8").splitlines()]
    assert [r["source"] for r in lines[-2:]] == ["serve", "serve"] and lines[-1]["model_alias"] == "champion"
