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
from tlflow.evaluation.slice_plot import plot_slices
from tlflow.evaluation.slices import slice_report
from tlflow.modeling.models import build_task_model, load_tokenizer
from tlflow.task_types.base import Evaluation, TaskSettings
from tlflow.task_types.registry import task_type_for


@task(name="evaluate", cache_policy=NO_CACHE, persist_result=False)
def evaluate_model(
    cfg: PipelineConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, loaded: LoadedData
) -> Evaluation:
    """The task type's metrics on the test split as `test_*` metrics (classification: accuracy,
    macro-F1, per-class P/R/F1; entities: seqeval P/R/F1 overall and per type; answers: EM/F1);
    the confusion matrix (classification, PNG) and a table of mistakes as artifacts (text generation:
    `evaluation/samples.json`, the worst generations by ROUGE-L and a seeded random few, column `kind`);
    metrics per evaluation slice (`tlflow.evaluation.slices`) as `test_<metric>__<column>:<value>`,
    `evaluation/slices.png`, `evaluation/slices.json` and a table in the run summary; the slices'
    rows are kept in `Evaluation.slices` for the gate's max_slice_drop.

    A task type with `zero_shot_baseline` also scores the base model as it is (`model.base`,
    before fine-tuning) on the same split, logged as `zeroshot_<metric>` and kept in
    `Evaluation.baseline` for the run summary (its per-example statistics, `baseline_stats`, are the
    trivial baseline the promotion gate requires a new model to beat)."""
    test = loaded.splits["test"]
    task_type, settings = task_type_for(cfg), TaskSettings.from_config(cfg)
    evaluation = task_type.evaluate(
        model, tokenizer, test, loaded.label_names, settings, cfg.evaluate.misclassified_examples
    )
    mlflow.log_metrics({f"test_{k}": v for k, v in evaluation.metrics.items()})
    if task_type.zero_shot_baseline:
        base_tokenizer = load_tokenizer(cfg.model.base)
        base = build_task_model(cfg.model, task_type.model_head, loaded.label_names, len(base_tokenizer),
                                cfg.finetune.seed)
        zero_shot = task_type.evaluate(base, base_tokenizer, test, loaded.label_names, settings)
        evaluation.baseline, evaluation.baseline_stats = zero_shot.metrics, zero_shot.stats  # the gate's baseline
        del base
        mlflow.log_metrics({f"zeroshot_{k}": v for k, v in evaluation.baseline.items()})
    slices = slice_report(task_type, test, evaluation, loaded.label_names, cfg.task.primary_metric,
                          cfg.evaluate.slices, cfg.promote.min_slice_size)
    evaluation.slices = slices.indices()
    evaluation.report_sections.append(slices.markdown())
    mlflow.log_metrics(slices.mlflow_metrics())
    mlflow.log_table(slices.table(), artifact_file="evaluation/slices.json")
    with tempfile.TemporaryDirectory() as tmp:
        png = evaluation.confusion_png(Path(tmp) / "confusion_matrix.png", f"{cfg.name}: test split")
        if png is not None:
            mlflow.log_artifact(str(png), "evaluation")
        mlflow.log_artifact(str(plot_slices(slices, Path(tmp) / "slices.png")), "evaluation")
    for name, rows in (("mistakes", evaluation.mistakes), ("samples", evaluation.samples)):
        if rows:
            mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, artifact_file=f"evaluation/{name}.json")
    get_run_logger().info(
        "test %s on %d examples",
        ", ".join(f"{k} {evaluation.metrics[k]:.4f}" for k in evaluation.headline), len(test),
    )
    if evaluation.baseline:
        get_run_logger().info("zero-shot base model: %s", ", ".join(
            f"{k} {evaluation.baseline[k]:.4f}" for k in evaluation.headline if k in evaluation.baseline))
    return evaluation
