"""The training pipeline's stages as a plain Python script: the same library functions the Prefect
tasks call (`tasks/*.py`), in the same order, without Prefect and without MLflow. The
orchestration tax benchmark (`bench/orchestration_tax.py`) times it against `tlflow run` on the
same config, both as fresh processes.

Stages and what stands in for the tracking work:
* validate: `check_data` (read, PII policy, Great Expectations suite, HTML report); the report
  summary JSON is written next to it instead of being logged;
* tokenize: the task type's `train_features` through `tokenize_cached` (cache key as the task builds it);
* fine-tune: `epoch_budget`, then `train_task_model` (checkpoints, validation evaluations) with
  a callback that drops the metrics (so the loop computes the same metrics as the stage does);
* evaluate: the task type's `evaluate` on the test split, the zero-shot base when the task type
  has one, `slice_report`, the confusion matrix and slice plot written to the output folder;
* fairness (when `fairness.eec` is set): `run_eec_audit` and its files;
* register: the model and tokenizer saved with `save_pretrained` (no registry, no promotion gate,
  no champion re-scoring: that work is part of what `tlflow run` adds).

    .venv/bin/python bench/plain_pipeline.py CONFIG [--set key=value ...] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def keep_metrics(metrics: dict[str, float], step: int) -> None:
    """The metrics callback without a tracker: the loop computes what it would log (validation and
    train/validation gap metrics) and nothing is sent anywhere."""


def run(config: str, overrides: list[str], output: Path) -> dict:
    """Run every stage; returns the seconds spent in each."""
    from tlflow.runtime import apply_defaults

    apply_defaults()
    from tlflow import paths
    from tlflow.config import load_config
    from tlflow.data.cache import cache_key, file_digest, load_tokenized, tokenize_cached
    from tlflow.data.features import feature_columns
    from tlflow.data.spec import without_meta
    from tlflow.data.validation.stage import check_data
    from tlflow.data.version import data_version
    from tlflow.evaluation.counterfactual import run_eec_audit
    from tlflow.evaluation.slice_plot import plot_slices
    from tlflow.evaluation.slices import slice_report
    from tlflow.modeling.models import build_task_model, load_tokenizer, resolve_base
    from tlflow.task_types.base import TaskSettings
    from tlflow.task_types.registry import check_config, check_inputs, task_type_for
    from tlflow.training.budget import epoch_budget
    from tlflow.training.finetuning import train_task_model

    seconds: dict[str, float] = {}

    def stage(name: str, fn):
        start = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - start
        return out

    cfg = check_inputs(check_config(load_config(config, overrides)))
    task_type, settings = task_type_for(cfg), TaskSettings.from_config(cfg)
    output.mkdir(parents=True, exist_ok=True)

    def validate():
        data_md5 = data_version(cfg.data).md5
        loaded, report, _ = check_data(cfg, task_type.dataset_spec(), task_type.data_checks(),
                                       text_fields=task_type.text_fields)
        (output / "validation.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        if not report.success:
            raise RuntimeError(f"{config}: data validation failed:\n{report.summary()}")
        return loaded, data_md5

    loaded, data_md5 = stage("validate", validate)
    encoder = cfg.model.base

    def tokenize():
        tokenizer = load_tokenizer(encoder)
        key = cache_key(data_md5=data_md5, files=file_digest(loaded.files), tokenizer=resolve_base(encoder),
                        vocab=len(tokenizer), task=settings.__dict__ | {"batch_size": None},
                        data=cfg.data.model_dump(mode="json"), labels=loaded.label_names)
        return tokenize_cached(without_meta(loaded.splits["train"]),
                               lambda rows: task_type.train_features(rows, loaded.label_names, tokenizer, settings),
                               paths.TOKENIZED_DIR, key).path

    tokenized = stage("tokenize", tokenize)

    def finetune():
        tokenizer = load_tokenizer(encoder)
        budget = epoch_budget(cfg.finetune, load_tokenized(tokenized)["train"].num_rows)
        train_cfg = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"epochs": budget.epochs})})
        key = cache_key(tokenized=tokenized.name, encoder=encoder, model=train_cfg.model.model_dump(mode="json"),
                        finetune=train_cfg.finetune.model_dump(mode="json", exclude={"threads", "log_every_steps"}))
        model, _ = train_task_model(train_cfg, feature_columns(load_tokenized(tokenized)["train"]),
                                    loaded.splits["validation"], loaded.label_names, tokenizer, encoder,
                                    paths.CHECKPOINTS_DIR / cfg.name / key, keep_metrics,
                                    train_rows=loaded.splits["train"])
        return model, tokenizer

    model, tokenizer = stage("finetune", finetune)

    def evaluate():
        test = loaded.splits["test"]
        evaluation = task_type.evaluate(model, tokenizer, test, loaded.label_names, settings,
                                        cfg.evaluate.misclassified_examples)
        if task_type.zero_shot_baseline:
            base_tokenizer = load_tokenizer(cfg.model.base)
            base = build_task_model(cfg.model, task_type.model_head, loaded.label_names, len(base_tokenizer),
                                    cfg.finetune.seed)
            evaluation.baseline = task_type.evaluate(base, base_tokenizer, test, loaded.label_names, settings).metrics
        slices = slice_report(task_type, test, evaluation, loaded.label_names, cfg.task.primary_metric,
                              cfg.evaluate.slices, cfg.promote.min_slice_size)
        (output / "slices.json").write_text(json.dumps(slices.table(), default=str), encoding="utf-8")
        evaluation.confusion_png(output / "confusion_matrix.png", f"{cfg.name}: test split")
        plot_slices(slices, output / "slices.png")
        (output / "metrics.json").write_text(json.dumps(evaluation.metrics), encoding="utf-8")
        return evaluation

    evaluation = stage("evaluate", evaluate)
    if cfg.fairness.eec is not None:
        stage("fairness", lambda: run_eec_audit(task_type, model, tokenizer, settings, cfg.fairness.eec,
                                                cfg.finetune.seed).write(output, f"{cfg.name}: EEC counterfactual gaps"))

    def save():
        model.save_pretrained(output / "model")
        tokenizer.save_pretrained(output / "model")

    stage("register", save)
    return {"stages_s": seconds, "test_metrics": evaluation.metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--output", type=Path, default=Path("plain-output"))
    parser.add_argument("--result", type=Path, help="write the stage timings as JSON here")
    args = parser.parse_args()
    record = run(args.config, args.overrides, args.output)
    if args.result:
        args.result.write_text(json.dumps(record), encoding="utf-8")
    print(json.dumps(record["stages_s"]))


if __name__ == "__main__":
    main()
