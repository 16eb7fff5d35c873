"""The logged MLflow model of every task type: a pyfunc that runs the task's own prediction code.

`mlflow.pyfunc.load_model(uri).predict(frame)` (and `mlflow models serve`) take a table with the
task type's `request_columns` and return one row per request with its `response_fields`, so what
serves is exactly what was evaluated. The Hugging Face model and tokenizer are artifacts (`hf/`,
safetensors); `task.json` holds the `TaskSettings`. The model is logged as code
(`entry.py`), not as a pickle, and the sha256 of that code is recorded as the run tag
`serving_code_sha256`; tlflow itself loads a logged model with `tlflow.serving.model_loading`,
which checks that digest and never runs the stored code.

An optimized variant (`tlflow.serving.optimized`) is the same pyfunc with `variant.json` naming it:
`torch-int8` keeps the fp32 weights in `hf/` and quantizes them at load time; `onnx-fp32` and
`onnx-int8` keep the graph in `onnx/model.onnx` and only the config and tokenizer in `hf/`. The
task's `predict` runs whichever model the variant loads, so every variant answers in the same
format.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tlflow.registry.tracking import pip_requirements
from tlflow.serving.optimized import (
    FP32,
    ONNX_FILE,
    ONNX_VARIANTS,
    VARIANT_FILE,
    Variant,
    load_variant,
    read_variant_file,
    write_variant_file,
)
from tlflow.serving.stored_code import CODE_DIGEST_TAG, sha256_file
from tlflow.task_types.base import RequestError, TaskSettings
from tlflow.task_types.registry import get_task_type

HF_DIR, SETTINGS_FILE, ONNX_DIR = "hf", "task.json", "onnx"
#: The model code MLflow stores with a logged `TaskModel` (and runs when *it* loads the model).
ENTRY_CODE = Path(__file__).with_name("entry.py")


class TaskModel(PythonModel):
    """Pyfunc wrapper around a fine-tuned Hugging Face model of any task type."""

    variant: str = FP32

    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        optional = {key: Path(artifacts[key]) if key in artifacts else None for key in (VARIANT_FILE, ONNX_DIR)}
        self.load(Path(artifacts[HF_DIR]), Path(artifacts[SETTINGS_FILE]), optional[VARIANT_FILE], optional[ONNX_DIR])

    def load(self, hf_dir: Path, settings_file: Path, variant_file: Path | None = None,
             onnx_dir: Path | None = None) -> TaskModel:
        self.settings = TaskSettings.load(settings_file)
        self.task = get_task_type(self.settings.task)
        self.tokenizer = AutoTokenizer.from_pretrained(hf_dir, use_fast=True)
        self.variant = read_variant_file(variant_file)
        self.model = load_variant(self.variant, self.settings.task, hf_dir, onnx_dir,
                                  speedups=self.settings.inference_speedups)
        return self

    @classmethod
    def from_parts(
        cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: TaskSettings, variant: str = FP32
    ) -> TaskModel:
        """`model` is the Hugging Face model or, for an optimized `variant`, its runnable variant."""
        wrapper = cls()
        wrapper.settings, wrapper.task, wrapper.model, wrapper.tokenizer, wrapper.variant = (
            settings, get_task_type(settings.task), model, tokenizer, variant
        )
        return wrapper

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """`params`: per-request parameters (the task type's `request_params`, e.g. generation
        settings); an unknown one is refused. Through `PyFuncModel.predict` (and so `mlflow models
        serve`) MLflow drops keys missing from the signature's params schema, with a warning, before
        they get here; `tlflow serve` refuses them itself (`tlflow.serving.http_server`). A refused
        request raises MlflowException(INVALID_PARAMETER_VALUE), which the scoring server answers 400."""
        try:
            params = self.task.check_params(params, self.settings)
            extra = {"params": params} if params else {}
            return pd.DataFrame(self.task.predict(self.model, self.tokenizer, model_input, self.settings, **extra))
        except RequestError as err:  # the scoring server answers 400 with this message
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None


def log_task_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    settings: TaskSettings,
    example: pd.DataFrame,
    variant: Variant | None = None,
    source: dict[str, str] | None = None,
) -> str:
    """Log `model` as a `TaskModel` pyfunc with signature and input example; returns its model URI.

    With `variant` (built from `model` by `tlflow.serving.optimized.build_variant`), the variant is logged
    instead: its files beside the config and tokenizer, `variant.json` naming it (plus `source`,
    e.g. the version it was built from), and onnxruntime in the requirements of ONNX variants.
    The signature is inferred from a real prediction on `example` by what is logged, so it
    documents the actual response format.
    """
    name = variant.name if variant is not None else FP32
    runnable = variant.model if variant is not None else model
    output = TaskModel.from_parts(runnable, tokenizer, settings, name).predict(None, example)
    params = get_task_type(settings.task).request_params(settings) or None
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / HF_DIR
        artifacts = {HF_DIR: str(hf_dir)}
        if name in ONNX_VARIANTS:  # the graph holds the weights: keep only config and tokenizer
            model.config.save_pretrained(hf_dir)
            onnx_dir = Path(tmp) / ONNX_DIR
            onnx_dir.mkdir()
            shutil.copyfile(variant.onnx_file, onnx_dir / ONNX_FILE)
            artifacts[ONNX_DIR] = str(onnx_dir)
        else:
            model.save_pretrained(hf_dir, safe_serialization=True)
        tokenizer.save_pretrained(hf_dir)
        artifacts[SETTINGS_FILE] = str(settings.save(Path(tmp) / SETTINGS_FILE))
        if variant is not None:
            artifacts[VARIANT_FILE] = str(write_variant_file(Path(tmp) / VARIANT_FILE, name, source))
        quiet = logging.getLogger("mlflow")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                # "Inferred schema contains integer column(s)": answer offsets are never missing.
                warnings.simplefilter("ignore", UserWarning)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(ENTRY_CODE),
                    artifacts=artifacts,
                    signature=infer_signature(example, output, params=params),
                    input_example=example,
                    pip_requirements=pip_requirements(onnx=name in ONNX_VARIANTS),
                )
        finally:
            quiet.setLevel(level)
    # In the tracking store, out of reach of whoever can write to the artifact store: tlflow's
    # loaders refuse a version whose stored code no longer hashes to it (`tlflow.serving.stored_code`).
    MlflowClient().set_tag(info.run_id, CODE_DIGEST_TAG, sha256_file(ENTRY_CODE))
    return info.model_uri
