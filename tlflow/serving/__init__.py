"""Serving: the pyfunc `TaskModel` (models logged as code import `tlflow.serving.TaskModel`), batch
prediction files and optimized variants."""

from tlflow.serving.model_loading import load_served_model, load_task_model
from tlflow.serving.task_model import TaskModel, log_task_model

__all__ = ["TaskModel", "load_served_model", "load_task_model", "log_task_model"]
