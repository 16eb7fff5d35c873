"""Models logged by an older layout of the package still load and predict the same with today's code.

`tests/assets/legacy_task_model` is a tiny text-classification `TaskModel` logged (as code) by the
layout before the library was grouped by concern, and `legacy_task_model_predictions.json` holds
what that code predicted (tests/assets/README.md has the script). A registered champion must keep
serving, and keep being re-scored by the gate, across such reorganisations."""

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

pytestmark = [pytest.mark.integration]

ASSETS = Path(__file__).resolve().parent / "assets"
LEGACY = ASSETS / "legacy_task_model"
EXPECTED = json.loads((ASSETS / "legacy_task_model_predictions.json").read_text(encoding="utf-8"))
TEXTS = pd.DataFrame({"text": [row["text"] for row in EXPECTED]})


def _same_predictions(predictions: pd.DataFrame) -> None:
    assert list(predictions.columns) == ["label", "score"]
    assert list(predictions["label"]) == [row["label"] for row in EXPECTED]
    assert list(predictions["score"]) == pytest.approx([row["score"] for row in EXPECTED], abs=1e-5)


def test_legacy_folder_loads_and_predicts_as_it_did():
    _same_predictions(mlflow.pyfunc.load_model(str(LEGACY)).predict(TEXTS))


@pytest.fixture
def registered(tmp_path, monkeypatch) -> str:
    """The legacy model registered as version 1 of 'legacy' in a fresh sqlite store; its name."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # A copy, so nothing MLflow writes beside the model (e.g. registered_model_meta) touches the asset.
    local = shutil.copytree(LEGACY, tmp_path / "legacy_task_model")
    client = MlflowClient()
    experiment = client.create_experiment("legacy", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(local), "model")
    client.create_registered_model("legacy")
    version = client.create_model_version("legacy", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    assert str(version.version) == "1"
    yield "legacy"
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_legacy_version_loads_from_the_registry(registered):
    _same_predictions(mlflow.pyfunc.load_model(f"models:/{registered}/1").predict(TEXTS))


def test_registry_rescores_the_legacy_version_without_its_stored_code(registered):
    """The gate re-scores a champion by loading its weights with this installation's code
    (`tlflow.registry.champion.load_version`), never by running the model code stored with it."""
    champion = pytest.importorskip("tlflow.registry.champion")
    from tlflow.task_types.registry import get_task_type

    loaded = champion.load_version(f"models:/{registered}/1")
    assert loaded.settings.task == "text-classification" and loaded.settings.max_length == 32
    rows = get_task_type(loaded.settings.task).predict(loaded.model, loaded.tokenizer, TEXTS, loaded.settings)
    _same_predictions(pd.DataFrame(rows))
