"""A registered version loaded to be re-scored, with this installation's own code.

The gate compares a candidate with the champion on the same test split, so the registry loads
registered versions itself: it downloads the version's Hugging Face weights and tokenizer
(artifact `hf`) and its task settings (artifact `task.json`) and builds the model with
`tlflow.modeling` for the task type of `tlflow.task_types`. The model code stored with a logged
`TaskModel` (MLflow "models from code") is never run, so a version logged by an older layout of
the package loads as long as its files do. A text-classification version logged with MLflow's
transformers flavor (before the task interface existed) loads through `mlflow.transformers`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.models import Model
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tlflow.modeling.models import load_task_head
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type
from tlflow.training.speedups import apply_inference_speedups

#: Artifacts of a logged `TaskModel` (`tlflow.serving.task_model`): the Hugging Face folder, the settings.
HF_ARTIFACT, SETTINGS_ARTIFACT = "hf", "task.json"


@dataclass(frozen=True)
class LoadedVersion:
    model: PreTrainedModel  # in eval mode, with the inference speed-ups its settings name
    tokenizer: PreTrainedTokenizerBase
    settings: TaskSettings


def load_version(model_uri: str, settings: TaskSettings | None = None) -> LoadedVersion:
    """The fp32 model, tokenizer and settings of a logged or registered model (e.g.
    `models:/sst2/3`). `settings` wraps a transformers-flavor model, which has none of its own."""
    info = Model.load(model_uri)  # the MLmodel file only: no code of the model runs
    if "transformers" in info.flavors:
        if settings is None:
            raise ValueError(f"{model_uri} is a transformers-flavor model: give the TaskSettings to wrap it")
        parts = mlflow.transformers.load_model(model_uri, return_type="components")
        model = apply_inference_speedups(parts["model"], settings.inference_speedups)
        return LoadedVersion(model.eval(), parts["tokenizer"], settings)
    artifacts = (info.flavors.get("python_function") or {}).get("artifacts") or {}
    missing = [key for key in (HF_ARTIFACT, SETTINGS_ARTIFACT) if key not in artifacts]
    if missing:
        raise ValueError(f"{model_uri} is not a logged TaskModel (no artifact {', '.join(missing)})")
    with tempfile.TemporaryDirectory(prefix="tlflow-version-") as tmp:
        local = {
            key: Path(mlflow.artifacts.download_artifacts(f"{model_uri.rstrip('/')}/{artifacts[key]['path']}",
                                                          dst_path=str(Path(tmp) / key.replace(".", "_"))))
            for key in (HF_ARTIFACT, SETTINGS_ARTIFACT)
        }
        own = TaskSettings.load(local[SETTINGS_ARTIFACT])
        model = apply_inference_speedups(load_task_head(get_task_type(own.task).model_head[0], local[HF_ARTIFACT]), own.inference_speedups)
        tokenizer = AutoTokenizer.from_pretrained(local[HF_ARTIFACT], use_fast=True)
    return LoadedVersion(model, tokenizer, own)
