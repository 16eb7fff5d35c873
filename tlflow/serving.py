"""The logged MLflow model of every task type: a pyfunc that runs the task's own prediction code.

`mlflow.pyfunc.load_model(uri).predict(frame)` (and `mlflow models serve`) take a table with the
task type's `request_columns` and return one row per request with its `response_fields`, so what
serves is exactly what was evaluated. The Hugging Face model and tokenizer are artifacts (`hf/`,
safetensors); `task.json` holds the `TaskSettings`. The model is logged as code
(`serving_entry.py`), not as a pickle.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import get_model_info, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tlflow.models import TASK_HEADS
from tlflow.task_types.base import RequestError, TaskSettings
from tlflow.task_types.registry import get_task_type
from tlflow.tracking import pip_requirements

HF_DIR, SETTINGS_FILE = "hf", "task.json"


class TaskModel(PythonModel):
    """Pyfunc wrapper around a fine-tuned Hugging Face model of any task type."""

    def load_context(self, context: Any) -> None:
        self.load(Path(context.artifacts[HF_DIR]), Path(context.artifacts[SETTINGS_FILE]))

    def load(self, hf_dir: Path, settings_file: Path) -> TaskModel:
        self.settings = TaskSettings.load(settings_file)
        self.task = get_task_type(self.settings.task)
        self.tokenizer = AutoTokenizer.from_pretrained(hf_dir, use_fast=True)
        self.model = TASK_HEADS[self.settings.task][0].from_pretrained(hf_dir)
        self.model.eval()
        return self

    @classmethod
    def from_parts(
        cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: TaskSettings
    ) -> TaskModel:
        wrapper = cls()
        wrapper.settings, wrapper.task, wrapper.model, wrapper.tokenizer = (
            settings, get_task_type(settings.task), model, tokenizer
        )
        return wrapper

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        try:
            return pd.DataFrame(self.task.predict(self.model, self.tokenizer, model_input, self.settings))
        except RequestError as err:  # the scoring server answers 400 with this message
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None


def log_task_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: TaskSettings, example: pd.DataFrame
) -> str:
    """Log `model` as a `TaskModel` pyfunc with signature and input example; returns its model URI.

    The signature is inferred from a real prediction on `example`, so it documents the actual
    response format.
    """
    output = TaskModel.from_parts(model, tokenizer, settings).predict(None, example)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / HF_DIR
        model.save_pretrained(hf_dir, safe_serialization=True)
        tokenizer.save_pretrained(hf_dir)
        settings_file = settings.save(Path(tmp) / SETTINGS_FILE)
        quiet = logging.getLogger("mlflow")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                # "Inferred schema contains integer column(s)": answer offsets are never missing.
                warnings.simplefilter("ignore", UserWarning)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(Path(__file__).with_name("serving_entry.py")),
                    artifacts={HF_DIR: str(hf_dir), SETTINGS_FILE: str(settings_file)},
                    signature=infer_signature(example, output),
                    input_example=example,
                    pip_requirements=pip_requirements(),
                )
        finally:
            quiet.setLevel(level)
    return info.model_uri


def load_task_model(model_uri: str, settings: TaskSettings | None = None) -> TaskModel:
    """The `TaskModel` behind a logged or registered model (e.g. `models:/sst2@champion`).

    A text-classification model logged with MLflow's transformers flavor (before the task
    interface existed) is wrapped with `settings`, so an older champion can still be re-scored.
    """
    if "transformers" in get_model_info(model_uri).flavors:
        if settings is None:
            raise ValueError(f"{model_uri} is a transformers-flavor model: give the TaskSettings to wrap it")
        parts = mlflow.transformers.load_model(model_uri, return_type="components")
        return TaskModel.from_parts(parts["model"], parts["tokenizer"], settings)
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
