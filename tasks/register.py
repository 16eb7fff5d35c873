"""Stage 6: log the model, register it and move the champion/challenger alias."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tasks.tracking import artifact_key
from tlflow import tracking
from tlflow.config import PipelineConfig
from tlflow.data.readers import LoadedData
from tlflow.promotion import Decision, decide
from tlflow.serving import load_task_model, log_task_model
from tlflow.task_types.base import Evaluation, TaskSettings
from tlflow.task_types.registry import get_task_type


@dataclass
class RegistrationOutcome:
    name: str
    version: str | None
    decision: Decision | None
    run_id: str
    model_uri: str


def score_champion(cfg: PipelineConfig, champion_version: str, loaded: LoadedData) -> float:
    """Re-score the current champion on this run's test split (same examples as the new model),
    with its own tokenizer and label names."""
    settings = TaskSettings.from_config(cfg)
    champion = load_task_model(f"models:/{cfg.name}/{champion_version}", settings)
    evaluation = get_task_type(cfg.task.type).evaluate(
        champion.model, champion.tokenizer, loaded.splits["test"], loaded.label_names, settings
    )
    return evaluation.metrics[cfg.task.primary_metric]


def decision_markdown(cfg: PipelineConfig, outcome: RegistrationOutcome, evaluation: Evaluation) -> str:
    """The run summary shown as a Prefect artifact and as the model version's description."""
    d = outcome.decision
    metric = cfg.task.primary_metric
    lines = [
        f"## {cfg.name} v{outcome.version}: **{d.alias}**" if d else f"## {cfg.name}: not registered",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| test_{k} | {evaluation.metrics[k]:.4f} |" for k in evaluation.headline),
    ]
    if d:
        champion = f"v{d.champion_version}: {d.champion_score:.4f}" if d.champion_version else "none"
        lines += [
            "",
            "| decision | new model | champion (re-scored) | reason |",
            "|---|---|---|---|",
            f"| {d.alias} | {metric} {d.new_score:.4f} | {champion} | {d.reason} |",
        ]
    lines += ["", f"MLflow run `{outcome.run_id}`, model `{outcome.model_uri}`"]
    return "\n".join(lines)


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
    signature, input example),
    register it under the config's name, and set `champion` when there is none yet or the new
    model beats the champion re-scored on the same test split; `challenger` otherwise.

    The champion is scored and the model files are logged before the version is created, and
    the alias is moved last, so a failure on the way leaves the registry's aliases untouched.
    """
    logger = get_run_logger()
    run_id = mlflow.active_run().info.run_id
    example = get_task_type(cfg.task.type).requests(loaded.splits["test"].select(range(3)))
    model_uri = log_task_model(model, tokenizer, TaskSettings.from_config(cfg), example)
    outcome = RegistrationOutcome(cfg.name, None, None, run_id, model_uri)
    if cfg.promote.register_model:
        client = MlflowClient()
        metric = cfg.task.primary_metric
        new_score = evaluation.metrics[metric]
        champion = tracking.alias_version(client, cfg.name, tracking.CHAMPION)
        champion_version = str(champion.version) if champion else None
        champion_score = score_champion(cfg, champion_version, loaded) if champion else None
        decision = decide(metric, new_score, champion_score, champion_version, cfg.promote.min_delta)
        version_tags = {
            **tags,
            **{f"test_{k}": f"{evaluation.metrics[k]:.6f}" for k in evaluation.headline},
            "task_type": cfg.task.type,
            "primary_metric": metric,
            "decision": decision.alias,
            "decision_reason": decision.reason,
        }
        if champion_score is not None:
            version_tags["champion_version"] = champion_version
            version_tags[f"champion_test_{metric}"] = f"{champion_score:.6f}"
            mlflow.log_metric(f"champion_test_{metric}", champion_score)
        mv = tracking.register_version(model_uri, cfg.name, version_tags)
        outcome.version, outcome.decision = str(mv.version), decision
        client.update_model_version(cfg.name, mv.version, description=decision_markdown(cfg, outcome, evaluation))
        client.set_registered_model_alias(cfg.name, decision.alias, mv.version)
        mlflow.set_tags({"registered_version": mv.version, "promotion_decision": decision.alias})
        logger.info("registered %s v%s as %s: %s", cfg.name, mv.version, decision.alias, decision.reason)
    create_markdown_artifact(
        decision_markdown(cfg, outcome, evaluation),
        key=artifact_key(cfg.name, "summary"),
        description="Pipeline outcome: metrics and promotion decision",
    )
    return outcome
