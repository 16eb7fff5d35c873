"""Stage 5: evaluate on the held-out test split and log the evidence."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tlflow.config import PipelineConfig
from tlflow.data.readers import LoadedData
from tlflow.task_types.base import Evaluation, TaskSettings
from tlflow.task_types.registry import get_task_type


@task(name="evaluate", cache_policy=NO_CACHE, persist_result=False)
def evaluate_model(
    cfg: PipelineConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, loaded: LoadedData
) -> Evaluation:
    """The task type's metrics on the test split as `test_*` metrics (classification: accuracy,
    macro-F1, per-class P/R/F1; entities: seqeval P/R/F1 overall and per type; answers: EM/F1);
    the confusion matrix (classification, PNG) and a table of mistakes as artifacts."""
    test = loaded.splits["test"]
    evaluation = get_task_type(cfg.task.type).evaluate(
        model, tokenizer, test, loaded.label_names, TaskSettings.from_config(cfg), cfg.evaluate.misclassified_examples
    )
    mlflow.log_metrics({f"test_{k}": v for k, v in evaluation.metrics.items()})
    with tempfile.TemporaryDirectory() as tmp:
        png = evaluation.confusion_png(Path(tmp) / "confusion_matrix.png", f"{cfg.name}: test split")
        if png is not None:
            mlflow.log_artifact(str(png), "evaluation")
    if evaluation.mistakes:
        rows = evaluation.mistakes
        mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, artifact_file="evaluation/mistakes.json")
    get_run_logger().info(
        "test %s on %d examples",
        ", ".join(f"{k} {evaluation.metrics[k]:.4f}" for k in evaluation.headline), len(test),
    )
    return evaluation
