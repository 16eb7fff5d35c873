"""Serving: the pyfunc `TaskModel` (models logged as code import `tlflow.serving.TaskModel`), batch
prediction files and optimized variants.

The names below load on first use (PEP 562), so that importing a light submodule such as
`tlflow.serving.request_limits` (the command line's option defaults) does not import torch,
transformers and MLflow."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlflow.serving.model_loading import load_served_model, load_task_model
    from tlflow.serving.task_model import TaskModel, log_task_model

_HOMES = {
    "TaskModel": "tlflow.serving.task_model",
    "log_task_model": "tlflow.serving.task_model",
    "load_served_model": "tlflow.serving.model_loading",
    "load_task_model": "tlflow.serving.model_loading",
}

__all__ = ["TaskModel", "load_served_model", "load_task_model", "log_task_model"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
