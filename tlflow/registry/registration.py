"""Registering, promoting and rolling back models in the MLflow registry, safely.

Every decision about a model's aliases happens under its promotion lock (`registry_lock`): the
champion is read (and re-scored) inside the lock, so two pipelines finishing together are judged
one after the other. A new version is created with tag `registration=pending`, the alias is moved,
the ledger entry is appended, and only then is the version marked `complete`; an exception on the
way puts the aliases back and deletes the version, and a version left `pending` by a killed
process is removed (with the aliases it got) by the next promotion of that model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tlflow.config import PipelineConfig
from tlflow.data.readers import LoadedData
from tlflow.registry import ledger, tracking
from tlflow.registry.gate import Decision, GateSettings, Scores, decide
from tlflow.registry.lock import is_lock, registry_lock
from tlflow.serving.task_model import load_task_model
from tlflow.task_types.base import Evaluation, TaskSettings
from tlflow.task_types.registry import get_task_type

PENDING, COMPLETE = "pending", "complete"
ALIASES = (tracking.CHAMPION, tracking.CHALLENGER)


class RegistryError(ValueError):
    """A request the registry cannot satisfy (unknown model or version, nothing to roll back to)."""


@dataclass(frozen=True)
class Outcome:
    version: str
    decision: Decision
    ledger_sequence: int


def gate_settings(cfg: PipelineConfig) -> GateSettings:
    p = cfg.promote
    return GateSettings(
        metric=cfg.task.primary_metric, min_delta=p.min_delta, confidence=p.confidence,
        bootstrap_samples=p.bootstrap_samples, max_class_drop=p.max_class_drop, floors=dict(p.floors),
        seed=cfg.finetune.seed,
    )


def scores_of(cfg: PipelineConfig, evaluation: Evaluation, label_names: list[str]) -> Scores:
    task = get_task_type(cfg.task.type)
    return Scores(evaluation.stats, partial(task.metrics_from_sums, label_names=label_names), evaluation.class_f1)


def evaluate_version(cfg: PipelineConfig, name: str, version: str, loaded: LoadedData) -> Evaluation:
    """A registered version scored on `loaded`'s test split with its own tokenizer."""
    model = load_task_model(f"models:/{name}/{version}", TaskSettings.from_config(cfg))
    return get_task_type(cfg.task.type).evaluate(
        model.model, model.tokenizer, loaded.splits["test"], loaded.label_names, TaskSettings.from_config(cfg)
    )


def version_config(client: MlflowClient, mv: ModelVersion) -> PipelineConfig:
    """The pipeline config the version was trained with (its run's `config.yaml`)."""
    if not mv.run_id:
        raise RegistryError(f"{mv.name} v{mv.version} has no training run to take its config from")
    data = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{mv.run_id}/config.yaml"))
    return PipelineConfig.model_validate(data)


def aliases(client: MlflowClient, name: str) -> dict[str, str | None]:
    return {a: (str(mv.version) if (mv := tracking.alias_version(client, name, a)) else None) for a in ALIASES}


def check_model(client: MlflowClient, name: str, version: str | None = None) -> ModelVersion | None:
    """RegistryError unless `name` (and `version` of it) exist."""
    if is_lock(name):
        raise RegistryError(f"'{name}' is a promotion lock, not a model")
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(f"no registered model '{name}'") from None
    if version is None:
        return None
    if not str(version).isdigit():
        raise RegistryError(f"version must be a number, got '{version}'")
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"model '{name}' has no version {version}") from None
    if (mv.tags or {}).get("registration") == PENDING:
        raise RegistryError(f"{name} v{version} is still being registered")
    return mv


#: Tag of an optimized variant (`tlflow.serving.optimize_champion`): its value names the variant.
VARIANT_TAG = "variant"


def check_candidate(mv: ModelVersion) -> ModelVersion:
    """RegistryError when `mv` is an optimized variant: variants serve beside their fp32 source
    (alias `optimized`) and are never champion candidates."""
    tags = mv.tags or {}
    if tags.get(VARIANT_TAG):
        source = tags.get("optimized_from", "?")
        raise RegistryError(f"{mv.name} v{mv.version} is an optimized variant ({tags[VARIANT_TAG]} of v{source}): "
                            "variants are never champion candidates")
    return mv


def _exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def _restore(client: MlflowClient, name: str, before: dict[str, str | None]) -> None:
    for alias, version in before.items():
        try:
            if version is None:
                client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, version)
        except MlflowException:
            pass


def clean_pending(client: MlflowClient, name: str) -> list[str]:
    """Remove versions a killed registration left `pending` (call under the lock). The champion
    alias goes back to the ledger's last champion; other aliases on such a version are dropped."""
    pending = client.search_model_versions(f"name = '{name}' and tags.registration = '{PENDING}'")
    removed = []
    for mv in pending:
        current = aliases(client, name)
        history = ledger.entries(client, name)
        recorded = next((e.champion_after for e in reversed(history)), None)
        for alias, version in current.items():
            if version == str(mv.version):
                _restore(client, name, {alias: recorded if alias == tracking.CHAMPION else None})
        client.delete_model_version(name, mv.version)
        removed.append(str(mv.version))
    return removed


def _wait_ready(client: MlflowClient, name: str, version: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while (mv := client.get_model_version(name, version)).status != "READY":
        if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(f"{name} v{version} did not become READY ({mv.status}: {mv.status_message})")
        time.sleep(0.2)


def register_and_promote(
    client: MlflowClient,
    cfg: PipelineConfig,
    model_uri: str,
    new: Scores,
    score_champion: Callable[[str], Scores],
    tags: dict[str, str],
    actor: str,
    describe: Callable[[str, Decision], str],
    before_alias: Callable[[], None] | None = None,
) -> Outcome:
    """Register `model_uri` as a new version of `cfg.name` and give it `champion` when the gate
    passes against the current champion (re-scored by `score_champion`), `challenger` otherwise.

    `before_alias` runs between registration and the alias move (tests inject failures there).
    """
    name = cfg.name
    with registry_lock(client, name, cfg.promote.lock_wait_s, cfg.promote.lock_stale_s):
        if _exists(client, name):
            clean_pending(client, name)
        before = aliases(client, name)
        champion = before[tracking.CHAMPION]
        decision = decide(new, score_champion(champion) if champion else None, champion, gate_settings(cfg))
        version_tags = {**tags, **decision_tags(decision), "registration": PENDING}
        mv = tracking.register_version(model_uri, name, version_tags)
        version = str(mv.version)
        try:
            _wait_ready(client, name, version)
            client.update_model_version(name, version, description=describe(version, decision))
            if before_alias is not None:
                before_alias()
            client.set_registered_model_alias(name, decision.alias, version)
            entry = ledger.append(
                client, name, "promoted" if decision.promoted else "rejected", version, champion,
                version if decision.promoted else champion, actor, decision.reason, tags, decision.to_dict(),
            )
            client.set_model_version_tag(name, version, "registration", COMPLETE)
        except BaseException:
            _restore(client, name, before)
            client.delete_model_version(name, version)
            raise
    return Outcome(version, decision, entry.sequence)


def decision_tags(decision: Decision) -> dict[str, str]:
    tags = {"primary_metric": decision.metric, "decision": decision.alias, "decision_reason": decision.reason[:4900]}
    for check in decision.checks:
        tags[f"check.{check.name}"] = ("passed: " if check.passed else "failed: ") + check.detail[:4800]
    if decision.champion_version is not None:
        tags["champion_version"] = decision.champion_version
        tags[f"champion_test_{decision.metric}"] = f"{decision.champion_score:.6f}"
    return tags


def promote_version(
    client: MlflowClient,
    cfg: PipelineConfig,
    version: str,
    evaluate: Callable[[str], Scores],
    actor: str,
    lineage: dict[str, str],
    force: bool = False,
    reason: str = "",
) -> tuple[Decision, str]:
    """Run the gate for an existing version against the champion; move `champion` when it passes,
    or when `force` (recorded as a forced promotion with `reason`). Returns the decision and the
    ledger action."""
    name = cfg.name
    check_candidate(check_model(client, name, version))
    if force and not reason.strip():
        raise RegistryError("--force needs --reason: say why the gate is overridden")
    with registry_lock(client, name, cfg.promote.lock_wait_s, cfg.promote.lock_stale_s):
        clean_pending(client, name)
        before = aliases(client, name)
        champion = before[tracking.CHAMPION]
        if champion == str(version):
            raise RegistryError(f"{name} v{version} is already the champion")
        decision = decide(evaluate(str(version)), evaluate(champion) if champion else None, champion,
                          gate_settings(cfg))
        action = "manual-promotion" if decision.promoted else ("forced-promotion" if force else "rejected")
        after = str(version) if (decision.promoted or force) else champion
        note = f"{reason.strip()} (gate: {decision.reason})" if force and not decision.promoted else decision.reason
        try:
            if after != champion:
                client.set_registered_model_alias(name, tracking.CHAMPION, str(version))
            ledger.append(client, name, action, str(version), champion, after, actor, note, lineage,
                          decision.to_dict())
        except BaseException:
            _restore(client, name, before)  # no alias move without its ledger entry
            raise
    return decision, action


def rollback(client: MlflowClient, name: str, actor: str, lineage: dict[str, str], wait_s: float = 1800,
             stale_s: float = 1800) -> tuple[str, str]:
    """Make the previous champion (per the ledger) champion again; returns (from, to) versions."""
    check_model(client, name)
    with registry_lock(client, name, wait_s, stale_s):
        clean_pending(client, name)
        current = aliases(client, name)[tracking.CHAMPION]
        if current is None:
            raise RegistryError(f"'{name}' has no champion to roll back")
        previous = ledger.previous_champion(ledger.entries(client, name), current)
        if previous is None:
            raise RegistryError(f"'{name}' has no previous champion before v{current} in the ledger")
        check_candidate(check_model(client, name, previous))
        before = aliases(client, name)
        try:
            client.set_registered_model_alias(name, tracking.CHAMPION, previous)
            ledger.append(client, name, "rollback", previous, current, previous, actor,
                          f"rolled back from v{current} to v{previous}", lineage, {})
        except BaseException:
            _restore(client, name, before)  # no alias move without its ledger entry
            raise
    return current, previous
