"""Stage 5b: the counterfactual fairness audit on the Equity Evaluation Corpus (`fairness.eec`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig
from tlflow.evaluation.counterfactual import run_eec_audit
from tlflow.task_types.base import Evaluation, TaskSettings
from tlflow.task_types.registry import task_type_for

#: Artifact folder of the audit in the MLflow run.
FAIRNESS_DIR = "fairness"


@task(name="audit-fairness", cache_policy=NO_CACHE, persist_result=False)
def audit_fairness(
    cfg: PipelineConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, evaluation: Evaluation
) -> Evaluation:
    """Predict every EEC sentence and measure the paired gender and race gaps of each mapped label
    (`tlflow.evaluation.counterfactual`). Logs `eec_gap_*` (with `_low`/`_high` interval ends),
    `eec_mean_*` and `eec_accuracy_*` metrics, the table (markdown, JSON), the plot and the
    per-sentence predictions under `fairness/`, and a Prefect markdown artifact; the gaps go into
    `evaluation.counterfactual_gaps` (the gate's `max_counterfactual_gap`) and the table into its
    `report_sections` (run summary, version description)."""
    eec_cfg = cfg.fairness.eec
    audit = run_eec_audit(task_type_for(cfg), model, tokenizer, TaskSettings.from_config(cfg), eec_cfg,
                          cfg.finetune.seed)
    mlflow.log_metrics(audit.metrics())
    with tempfile.TemporaryDirectory() as tmp:
        for path in audit.write(Path(tmp), f"{cfg.name}: EEC counterfactual gaps"):
            mlflow.log_artifact(str(path), FAIRNESS_DIR)
    table = audit.markdown()
    create_markdown_artifact(table, key=artifact_key(cfg.name, "fairness"),
                             description="Counterfactual fairness audit (EEC): paired gaps per group")
    evaluation.counterfactual_gaps = audit.gaps_dict()
    evaluation.report_sections.append(table)
    worst = audit.gaps.loc[audit.gaps["gap"].abs().idxmax()]
    get_run_logger().info("EEC audit of %d sentences: largest paired gap %s %+.4f [%+.4f, %+.4f]",
                          audit.sentences, worst["name"], worst["gap"], worst["low"], worst["high"])
    return evaluation
