"""`training_pipeline` end to end under a temporary Prefect server, with a real MLflow store:
a tiny random BERT on a few hundred real SST-2 rows."""

from collections import Counter
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from typer.testing import CliRunner

from flows.cli import app
from flows.training import training_pipeline
from tlflow.data.readers import load_labelled_data
from tlflow.data.split_definition import split_digest
from tlflow.data.validation.stage import DataValidationError
from tlflow.registry import tracking
from tlflow.registry.descriptions import KIND_TAG, NOTE_TAG
from tlflow.registry.ledger import LEDGER_EXPERIMENT
from tlflow.task_types.registry import get_task_type

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]

#: Metric names of a model's or its data's quality, unprefixed: the MLflow UI charts them in its main
#: "Model metrics" section (`pii_rows_<split>`: the share of rows with personal data). Every other
#: metric is bookkeeping and carries a section prefix (`train/`, `data/`, `gap/`, `gate/`, ...),
#: which the UI charts as a section of its own.
QUALITY_PREFIXES = ("test_", "val_", "best_val_", "zeroshot_", "eec_", "pii_")


def _unsectioned_bookkeeping(metrics: dict[str, float]) -> list[str]:
    return sorted(k for k in metrics if "/" not in k and not k.startswith(QUALITY_PREFIXES))


def _client() -> MlflowClient:
    tracking.configure()
    return MlflowClient()


def _broken_copy(root: Path) -> dict[str, str]:
    """SST-2 sample with an unknown label, a blank text and a training row leaked into test."""
    src = Path("data/sst2/dev.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = src[0], src[1:]
    train = rows[:300] + ["a sentence with a strange label\t7", "   \t1"]
    test = rows[300:500] + [rows[10]]
    validation = rows[500:600]
    (root / "bad").mkdir()
    for name, lines in (("train", train), ("test", test), ("validation", validation)):
        (root / "bad" / f"{name}.tsv").write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return {split: f"bad/{split}.tsv" for split in ("train", "validation", "test")}


def test_pipeline_registers_promotes_and_records_lineage(project, prefect_server, tiny_config):
    cfg = tiny_config()
    first = training_pipeline(cfg)

    client = _client()
    assert first.version == "1" and first.decision.alias == "champion"
    assert str(client.get_model_version_by_alias(cfg.name, "champion").version) == "1"

    run = client.get_run(first.run_id)
    expected_md5 = tracking.data_version(project / "data.dvc")
    assert run.data.tags["data_md5"] == expected_md5 != "untracked"
    assert run.data.tags["config_hash"] == cfg.hash()
    assert run.data.tags["prefect_flow_run_id"] not in ("", "none")
    assert run.data.params["finetune.batch_size"] == "32"
    for metric in ("test_accuracy", "test_macro_f1", "val_accuracy", "train/loss", "test_f1_positive"):
        assert metric in run.data.metrics, metric
    # Golden (seeded): one epoch on 400 rows leaves the tiny random BERT answering one label for
    # every row, the minority label of the 200-row test sample (99 rows: the majority share is
    # 0.505), so accuracy 99/200 and the macro-F1 of a constant answer. A change here means the
    # data sample, the model or the training loop changed, not noise.
    test_labels = load_labelled_data(cfg.data, get_task_type(cfg.task.type).dataset_spec()).splits["test"]["label"]
    assert run.data.metrics["data/rows_test"] == len(test_labels) == 200
    assert max(Counter(test_labels).values()) == 101
    assert run.data.metrics["test_accuracy"] == pytest.approx(99 / 200, abs=1e-6)
    assert run.data.metrics["test_macro_f1"] == pytest.approx(0.331104, abs=1e-6)
    assert len(client.get_metric_history(first.run_id, "train/loss")) >= 3
    # 13 steps, validated 4 times by default (every 4 steps and at the end): a curve, not a point.
    assert [m.step for m in client.get_metric_history(first.run_id, "val_accuracy")] == [4, 8, 12, 13]
    assert {i.dataset.digest for i in run.inputs.dataset_inputs} == {  # one per split: data version, definition
        split_digest(cfg.data, split, cfg.task.type, expected_md5) for split in ("train", "validation", "test")}
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/mistakes.json"} <= artifacts
    assert any(a.path.endswith(".html") for a in client.list_artifacts(first.run_id, "validation"))

    version = client.get_model_version(cfg.name, "1")
    assert version.tags["data_md5"] == expected_md5
    # What the MLflow UI shows as descriptions: the experiment, the run, the registered model, the ledger.
    experiment_tags = client.get_experiment(run.info.experiment_id).tags
    assert f"Pipeline runs of config `{cfg.name}`" in experiment_tags[NOTE_TAG]
    assert experiment_tags[KIND_TAG] == "custom_model_development"  # the UI opens it on its Runs tab
    assert run.data.tags[NOTE_TAG].startswith(f"**{cfg.name}** (`training_pipeline`): text-classification on train ")
    assert f"(data version `{expected_md5[:8]}`)" in run.data.tags[NOTE_TAG]
    assert "`champion` is the version to serve" in client.get_registered_model(cfg.name).description
    ledger = client.get_experiment_by_name(LEDGER_EXPERIMENT)
    assert ledger.tags[NOTE_TAG].startswith("Promotion ledger of every registered model")
    entry = client.search_runs([ledger.experiment_id], f"tags.model = '{cfg.name}'")[0]
    assert entry.data.tags[NOTE_TAG].startswith("**promoted** v1: ")
    assert float(version.tags["test_accuracy"]) == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)

    # The registered model loads back through MLflow and predicts label names.
    predictions = mlflow.pyfunc.load_model(f"models:/{cfg.name}@champion").predict(
        pd.DataFrame({"text": ["a gorgeous , witty film", "dull"]})
    )
    assert set(predictions["label"]) <= {"negative", "positive"}

    # Unchanged data, config and code: the run reports v1 and trains (and logs) nothing.
    runs_before = len(client.search_runs([run.info.experiment_id]))
    again = training_pipeline(cfg)
    assert again.reused and again.version == "1" and again.run_id == first.run_id and again.decision is None
    assert "unchanged" in again.summary() and "v1" in again.summary()
    assert len(client.search_runs([run.info.experiment_id])) == runs_before
    assert len(client.search_model_versions(f"name = '{cfg.name}'")) == 1
    assert run.data.tags["code_md5"] == version_tags_code(client, cfg.name, "1")

    # A second model is compared with the champion re-scored on the same test split.
    second = training_pipeline(tiny_config(**{"finetune.seed": "7"}))
    d = second.decision
    assert second.version == "2" and d.champion_version == "1"
    assert d.champion_score == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
    champion = str(client.get_model_version_by_alias(cfg.name, "champion").version)
    assert champion == ("2" if d.promoted else "1")
    assert not d.promoted or d.new_score > d.champion_score
    # Bookkeeping charts in sections, apart from the quality metrics (the champion's score: `gate/`).
    second_metrics = client.get_run(second.run_id).data.metrics
    assert second_metrics["gate/champion_test_accuracy"] == pytest.approx(d.champion_score, abs=1e-6)
    assert {"train/steps", "train/learning_rate", "data/rows_train"} <= set(second_metrics)
    assert _unsectioned_bookkeeping(run.data.metrics) == [] == _unsectioned_bookkeeping(second_metrics)
    assert client.get_model_version(cfg.name, "2").tags["decision"] == d.alias

    # `tlflow models` lists both versions with the alias on the right one.
    listing = CliRunner().invoke(app, ["models", cfg.name]).output.splitlines()
    assert [line.split()[1] for line in listing[1:]] == ["2", "1"]
    assert [line.split()[2] for line in listing[1:] if line.split()[1] == champion] == ["champion"]

    # The Prefect UI shows the run summary as a markdown artifact.
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sst2-tiny-summary"])))
    assert artifacts and any(f"v2: **{d.alias}**" in a.data for a in artifacts)

    # --force trains again on unchanged inputs.
    forced = training_pipeline(cfg, force=True)
    assert not forced.reused and forced.version == "3" and forced.run_id != first.run_id


def version_tags_code(client: MlflowClient, name: str, version: str) -> str:
    return client.get_model_version(name, version).tags["code_md5"]


def test_broken_dataset_stops_before_training_and_registers_nothing(project, prefect_server, tiny_config):
    files = _broken_copy(project)
    cfg = tiny_config(**{"name": "broken", "data.files": str(files), "data.max_eval_rows": "null", "paths.data_roots": "[data, bad]",
                         "data.drop_train_overlap": "false"})
    with pytest.raises(DataValidationError) as err:
        training_pipeline(cfg)
    message = str(err.value)
    assert "bad/train.tsv:302" in message  # the row with the unknown label '7'
    assert "bad/train.tsv:303" in message  # the blank text
    assert "bad/test.tsv:202" in message  # the leaked row
    client = _client()
    assert client.search_registered_models() == []
    runs = client.search_runs([tracking.ensure_experiment("broken")])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["validation"] == "failed"
    assert "train/loss" not in runs[0].data.metrics
