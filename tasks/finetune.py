"""Stage 4: fine-tune the encoder with the task's head, resumable from checkpoints."""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tasks.progress import training_progress
from tlflow import paths
from tlflow.config import PipelineConfig
from tlflow.data.cache import cache_key, load_tokenized
from tlflow.data.features import feature_columns
from tlflow.data.readers import LoadedData
from tlflow.modeling.models import load_tokenizer
from tlflow.training.budget import epoch_budget, never_improved
from tlflow.training.distributed import train_distributed
from tlflow.training.finetuning import train_task_model
from tlflow.training.loop import MetricsCallback

CHECKPOINT_DIR = paths.CHECKPOINTS_DIR


def _log_async(metrics: dict[str, float], step: int) -> None:
    """Per-step metrics go out without blocking the training loop."""
    mlflow.log_metrics(metrics, step=step, synchronous=False)


def _and_then(also: MetricsCallback | None) -> MetricsCallback:
    """`_log_async`, then `also` (a model-selection trial's report to its study, which may prune it)."""
    if also is None:
        return _log_async

    def log(metrics: dict[str, float], step: int) -> None:
        _log_async(metrics, step)
        also(metrics, step)

    return log


@task(name="fine-tune", cache_policy=NO_CACHE, persist_result=False)
def finetune_model(
    cfg: PipelineConfig, tokenized: Path, loaded: LoadedData, encoder: str, on_metrics: MetricsCallback | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Fine-tune `encoder` on the tokenized train split, logging train loss (`train/*`) and validation
    metrics (`val_*`) to MLflow as they happen (with `finetune.privacy`: DP-SGD, `train/dp_epsilon` per
    epoch and `dp_*` tags). Checkpoints are keyed by the tokenized data, encoder and training
    settings, so re-running the same config after a kill resumes where it stopped. A small training
    split gets more epochs to reach `finetune.min_steps` (said in the log, metric `train/epochs`); a
    validation curve that never rose above its first point is a warning. `on_metrics` also
    receives every logged metric (after MLflow). Without a validation split
    (`data.train_on_validation`) nothing is validated."""
    logger = get_run_logger()
    tokenizer = load_tokenizer(encoder)
    budget = epoch_budget(cfg.finetune, load_tokenized(tokenized)["train"].num_rows)
    (logger.warning if budget.raised else logger.info)(budget.note())
    cfg = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"epochs": budget.epochs})})
    key = cache_key(
        tokenized=tokenized.name,
        encoder=encoder,
        model=cfg.model.model_dump(mode="json"),
        finetune=cfg.finetune.model_dump(mode="json", exclude={"threads", "log_every_steps"}),
    )
    checkpoints = CHECKPOINT_DIR / cfg.name / key
    if cfg.finetune.processes > 1:
        mlflow.flush_async_logging()
        model, result = train_distributed(
            cfg, tokenized, loaded.splits.get("validation"), loaded.label_names, encoder, checkpoints,
            run_id=mlflow.active_run().info.run_id, tracking_uri=mlflow.get_tracking_uri(),
        )
        mlflow.log_metrics({"train/processes": cfg.finetune.processes})
    else:
        with training_progress(cfg, "fine-tune"):  # log lines and a progress artifact in the Prefect UI
            model, result = train_task_model(
                cfg, feature_columns(load_tokenized(tokenized)["train"]), loaded.splits.get("validation"), loaded.label_names,
                tokenizer, encoder, checkpoints, _and_then(on_metrics), train_rows=loaded.splits["train"],
            )
    mlflow.log_metrics(
        {
            "train/seconds": result.seconds,
            "train/checkpoint_seconds": result.checkpoint_seconds,
            "train/samples_per_s": result.samples_per_second,
            "train/tokens_per_s": result.tokens / result.seconds if result.seconds else 0.0,
            "train/steps": result.steps,
            "train/resumed_from_step": result.resumed_from,
            "train/epochs": budget.epochs,
        }
    )
    metric = cfg.task.primary_metric
    mlflow.flush_async_logging()
    curve = [m.value for m in sorted(mlflow.MlflowClient().get_metric_history(mlflow.active_run().info.run_id,
                                                                              f"val_{metric}"), key=lambda m: m.step)]
    if never_improved(curve):
        logger.warning("validation %s never improved on its first value %.4f in %d evaluations: the model may have "
                       "learned nothing (more data, epochs or a higher learning rate?)", metric, curve[0], len(curve))
    mlflow.set_tag("checkpoint_dir", str(checkpoints))
    if result.privacy is not None:  # DP-SGD: what was spent, on the run (and, via register, the version)
        mlflow.set_tags(result.privacy.tags())
        logger.info("differentially private: epsilon %.3f spent of %g (delta %.3g, noise multiplier %.3f, clip %g)",
                    result.privacy.epsilon_spent, result.privacy.plan.epsilon, result.privacy.plan.delta,
                    result.privacy.plan.noise_multiplier, result.privacy.plan.max_grad_norm)
    if result.resumed_from:
        logger.info("resumed from checkpoint at step %d of %d", result.resumed_from, result.total_steps)
    logger.info(
        "fine-tuned %d steps in %.1fs (%.1f samples/s), val %s %.4f",
        result.steps - result.resumed_from, result.seconds, result.samples_per_second,
        cfg.task.primary_metric, result.val_metrics.get(cfg.task.primary_metric, float("nan")),
    )
    return model, tokenizer
