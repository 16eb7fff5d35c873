"""Stage 5: evaluate on the held-out test split and log the evidence."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tlflow.classification import Evaluation, evaluate_split
from tlflow.config import PipelineConfig
from tlflow.tokenization import load_tokenized


@task(name="evaluate", cache_policy=NO_CACHE, persist_result=False)
def evaluate_model(
    cfg: PipelineConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tokenized: Path, label_names: list[str]
) -> Evaluation:
    """Accuracy, macro-F1, per-class precision/recall/F1 as `test_*` metrics; the confusion matrix
    (PNG) and a table of the most confident mistakes as artifacts."""
    test = load_tokenized(tokenized)["test"]
    evaluation = evaluate_split(
        model, test, label_names, tokenizer.pad_token_id, cfg.evaluate.batch_size, cfg.evaluate.misclassified_examples
    )
    mlflow.log_metrics({f"test_{k}": v for k, v in evaluation.metrics.items()})
    with tempfile.TemporaryDirectory() as tmp:
        png = evaluation.confusion_png(Path(tmp) / "confusion_matrix.png", f"{cfg.name}: test split")
        mlflow.log_artifact(str(png), "evaluation")
    if evaluation.misclassified:
        rows = evaluation.misclassified
        mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, artifact_file="evaluation/misclassified.json")
    get_run_logger().info(
        "test accuracy %.4f, macro-F1 %.4f on %d examples",
        evaluation.metrics["accuracy"], evaluation.metrics["macro_f1"], len(test),
    )
    return evaluation
