"""Stage 6: log the model, register it and decide its alias through the promotion gate."""

from __future__ import annotations

from dataclasses import dataclass, replace

import mlflow
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig
from tlflow.data.readers import LoadedData
from tlflow.registry import registration, tracking
from tlflow.registry.baseline import trivial_baseline
from tlflow.registry.fingerprint import log_fingerprint
from tlflow.registry.gate import Decision
from tlflow.registry.lineage import Lineage
from tlflow.registry.links import outcome_links
from tlflow.registry.lock import lock_notices
from tlflow.registry.reuse import matching_version
from tlflow.selection.lineage import selection_tags
from tlflow.serving import log_task_model
from tlflow.task_types.base import Evaluation, TaskSettings
from tlflow.task_types.registry import task_type_for
from tlflow.training.private import privacy_tags
from tlflow.training.speedups import inference_speedups


@dataclass
class RegistrationOutcome:
    name: str
    version: str | None
    decision: Decision | None
    run_id: str
    model_uri: str
    reused: bool = False  # inputs unchanged: this is an earlier run's version, nothing was trained

    def summary(self) -> str:
        if self.reused:
            return (f"unchanged: {self.name} v{self.version} was trained on the same data, config and code "
                    "(nothing retrained; --force trains again)")
        if self.decision is None:
            return "model logged, not registered (promote.register_model is false)"
        verdict = "became champion" if self.decision.promoted else "registered as challenger"
        return f"model {self.name} v{self.version} {verdict} ({self.decision.reason})"


def decision_markdown(cfg: PipelineConfig, version: str | None, decision: Decision | None, evaluation: Evaluation,
                      run_id: str, model_uri: str) -> str:
    """The run summary shown as a Prefect artifact and as the model version's description:
    headline metrics, the decision and every check of the gate with its numbers."""
    lines = [
        f"## {cfg.name} v{version}: **{decision.alias}**" if decision else f"## {cfg.name}: not registered",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| test_{k} | {evaluation.metrics[k]:.4f} |" for k in evaluation.headline),
    ]
    if evaluation.baseline:  # the base model before fine-tuning (task types with a zero-shot baseline)
        lines[2:] = ["| metric | fine-tuned | zero-shot base |", "|---|---|---|", *(
            f"| test_{k} | {evaluation.metrics[k]:.4f} | {evaluation.baseline.get(k, float('nan')):.4f} |"
            for k in evaluation.headline)]
    if decision:
        champion = (f"v{decision.champion_version}: {decision.champion_score:.4f}"
                    if decision.champion_version else "none")
        lines += [
            "",
            f"Decision: **{decision.alias}** ({decision.metric} {decision.new_score:.4f}, champion re-scored on the "
            f"same test split: {champion})",
            *(["", *(f"- {note}" for note in decision.notes)] if decision.notes else []),
            "",
            "| check | result | numbers |",
            "|---|---|---|",
            *(f"| {c.name} | {'passed' if c.passed else '**failed**'} | {c.detail} |" for c in decision.checks),
        ]
    for section in evaluation.report_sections:  # slice table, fairness audit
        lines += ["", section]
    links = outcome_links(MlflowClient(), run_id, cfg.name if decision else None, version)  # the MLflow UI
    lines += ["", f"MLflow run `{run_id}`, model `{model_uri}`", "", links]
    return "\n".join(lines)


@task(name="check-unchanged", cache_policy=NO_CACHE, persist_result=False)
def find_unchanged(cfg: PipelineConfig, tags: dict[str, str]) -> RegistrationOutcome | None:
    """The registered version trained on exactly these inputs (data version, raw files, config,
    code: `tlflow.registry.reuse`), reported instead of training again; None when there is none."""
    if not cfg.promote.register_model:
        return None
    tracking.configure()
    mv = matching_version(MlflowClient(), cfg.name, Lineage.from_tags(tags))
    if mv is None:
        return None
    outcome = RegistrationOutcome(cfg.name, str(mv.version), None, mv.run_id, mv.source, reused=True)
    aliases = ", ".join(mv.aliases or []) or "no alias"
    get_run_logger().info("%s (%s)", outcome.summary(), aliases)
    create_markdown_artifact(
        f"## {cfg.name}: unchanged, v{mv.version} ({aliases}) kept\n\n"
        f"Data version, raw files, config and code match v{mv.version} (MLflow run `{mv.run_id}`): "
        "nothing was trained. Run with `force=True` (`tlflow run --force`) to train again.\n\n"
        + outcome_links(MlflowClient(), mv.run_id, cfg.name, str(mv.version)),
        key=artifact_key(cfg.name, "summary"), description="Pipeline outcome: inputs unchanged",
    )
    return outcome


@task(name="register-and-promote", cache_policy=NO_CACHE, persist_result=False)
def register_and_promote(
    cfg: PipelineConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    evaluation: Evaluation,
    loaded: LoadedData,
    tags: dict[str, str],
) -> RegistrationOutcome:
    """Log the model (`TaskModel` pyfunc: weights as safetensors, tokenizer, task settings,
    signature, input example) and the fingerprint of its training rows, then, under the model's
    promotion lock, re-score the champion on this run's test split (on the rows it was not trained
    on, when its fingerprint finds some), run the gate (floors or the trivial baseline, min_delta,
    paired bootstrap, per-class drop), register the version, move `champion` or `challenger`, and
    append the ledger entry.

    The files are logged before the version exists and the alias moves last; a failure on the way
    deletes the version and puts the aliases back (`tlflow.registry.registration`).
    """
    logger = get_run_logger()
    run_id = mlflow.active_run().info.run_id
    task_type = task_type_for(cfg)
    example = task_type.requests(loaded.splits["test"].select(range(3)))
    # Serving opts in to the inference speed-ups the model was fine-tuned with (task.json).
    settings = replace(TaskSettings.from_config(cfg), inference_speedups=inference_speedups(cfg.finetune.speedups))
    model_uri = log_task_model(model, tokenizer, settings, example)
    # What a later gate looks for in its test split: the rows this model was trained on.
    log_fingerprint(loaded.splits["train"], task_type.overlap_columns)
    outcome = RegistrationOutcome(cfg.name, None, None, run_id, model_uri)
    if cfg.promote.register_model:
        client = MlflowClient()
        new = registration.scores_of(cfg, evaluation, loaded.label_names,
                                     trivial_baseline(task_type, loaded, evaluation))

        def score_champion(version: str):
            champion = registration.version_scores(client, cfg, version, loaded)
            mlflow.log_metric(f"gate/champion_test_{cfg.task.primary_metric}", champion.value(cfg.task.primary_metric))
            return champion

        with lock_notices(logger.warning):  # who holds the promotion lock, while this run waits
            result = registration.register_and_promote(
                # pii_counts: set on the run by validate-data (the scan runs after the flow's tags are made).
                client, cfg, model_uri, new, score_champion,
                Lineage.from_tags({"pii_counts": client.get_run(run_id).data.tags.get("pii_counts", ""), **tags}),
                actor=f"flow training_pipeline run {run_id}",
                describe=lambda v, d: decision_markdown(cfg, v, d, evaluation, run_id, model_uri),
                tags={f"test_{cfg.task.primary_metric}": f"{evaluation.metrics[cfg.task.primary_metric]:.6f}",
                      **privacy_tags(mlflow.get_run(run_id).data.tags), **selection_tags(tags)},
            )
        outcome.version, outcome.decision = result.version, result.decision
        mlflow.set_tags({"registered_version": result.version, "promotion_decision": result.decision.alias,
                         "ledger_sequence": str(result.ledger_sequence)})
        logger.info("registered %s v%s as %s: %s", cfg.name, result.version, result.decision.alias,
                    result.decision.reason)
    create_markdown_artifact(
        decision_markdown(cfg, outcome.version, outcome.decision, evaluation, run_id, model_uri),
        key=artifact_key(cfg.name, "summary"),
        description="Pipeline outcome: metrics and promotion decision",
    )
    return outcome
