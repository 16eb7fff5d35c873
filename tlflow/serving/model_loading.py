"""tlflow's loader of a logged `TaskModel`: this installation's code over the model's data files.

`mlflow.pyfunc.load_model` would run the model code stored with the model (`entry.py`, MLflow
"models from code"), a file anyone with write access to the artifact store can change. tlflow's
loaders (`tlflow serve`, `tlflow predict`, `load_task_model`) instead download the model folder,
check its stored code against the digest recorded when it was logged (`tlflow.serving.stored_code`:
a mismatch is refused, naming the version), read only data from it (`MLmodel` as YAML, the
safetensors weights and tokenizer in `hf/`, `task.json`, `variant.json`, `onnx/`) and build the
installed `TaskModel` from them. The stored code is never imported or executed.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import Model
from mlflow.pyfunc import PyFuncModel, PythonModelContext

from tlflow.serving.stored_code import recorded_code, verify_stored_code
from tlflow.serving.task_model import HF_DIR, SETTINGS_FILE, TaskModel
from tlflow.task_types.base import TaskSettings
from tlflow.training.speedups import apply_inference_speedups


class _InstalledPyfunc:
    """The `model_impl` of a `PyFuncModel` whose `predict` is the installed `TaskModel`'s; with a
    `recorder` (`tlflow.monitoring.window.PredictionRecorder`), each answered batch is also
    appended to the prediction window (a failure to record is logged, never the request's)."""

    def __init__(self, model: TaskModel, recorder: Any = None):
        self.python_model = model  # what `PyFuncModel.unwrap_python_model` returns
        self.recorder = recorder

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        predictions = self.python_model.predict(None, model_input, params)
        if self.recorder is not None:
            try:
                self.recorder.record(self.python_model, model_input, predictions)
            except Exception as err:  # noqa: BLE001 - monitoring must not fail a prediction
                logging.getLogger(__name__).warning("prediction window not written: %s", err)
        return predictions


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"artifact path {relative!r} points outside the model folder")
    return path


def _load(model_uri: str, settings: TaskSettings | None) -> tuple[TaskModel, Model]:
    recorded = recorded_code(MlflowClient(), model_uri)
    with tempfile.TemporaryDirectory(prefix="tlflow-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=recorded.uri, dst_path=tmp))
        meta = Model.load(str(local))  # YAML only
        if "transformers" in meta.flavors:  # logged before the task interface: weights only, no code
            if settings is None:
                raise ValueError(f"{model_uri} is a transformers-flavor model: give the TaskSettings to wrap it")
            parts = mlflow.transformers.load_model(str(local), return_type="components")
            model = apply_inference_speedups(parts["model"], settings.inference_speedups)
            return TaskModel.from_parts(model.eval(), parts["tokenizer"], settings), meta
        verify_stored_code(local, meta, recorded.label, recorded.digest)
        artifacts = (meta.flavors.get("python_function") or {}).get("artifacts") or {}
        missing = [key for key in (HF_DIR, SETTINGS_FILE) if key not in artifacts]
        if missing:
            raise ValueError(f"{recorded.label} is not a logged TaskModel (no artifact {', '.join(missing)})")
        paths = {key: str(_inside(local, info["path"])) for key, info in artifacts.items()}
        model = TaskModel()
        model.load_context(PythonModelContext(artifacts=paths, model_config=None))
    return model, meta


def load_task_model(model_uri: str, settings: TaskSettings | None = None) -> TaskModel:
    """The `TaskModel` behind a logged or registered model (e.g. `models:/sst2@champion`), built
    by this installation's code (its stored code checked, never run).

    A text-classification model logged with MLflow's transformers flavor (before the task
    interface existed) is wrapped with `settings`, so an older champion can still be re-scored.
    """
    return _load(model_uri, settings)[0]


def load_served_model(model_uri: str, recorder: Any = None) -> PyFuncModel:
    """The model at `model_uri` as an MLflow `PyFuncModel` (signature enforcement, params schema:
    what MLflow's scoring app and `predict` expect) around the installed `TaskModel`; with a
    `recorder`, its predictions are appended to the prediction window."""
    model, meta = _load(model_uri, None)
    return PyFuncModel(model_meta=meta, model_impl=_InstalledPyfunc(model, recorder))
