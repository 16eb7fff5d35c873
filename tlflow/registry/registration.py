"""Registering, promoting and rolling back models in the MLflow registry, safely.

Each action is one registry transaction (`tlflow.registry.transaction`): under the model's
promotion lock the champion is read (and re-scored) and the gate decides; a new version is
created `pending`, aliases move, the ledger entry is appended, and only then is the version marked
`complete`. An exception before the ledger entry puts the aliases back and deletes the version;
what a killed process (or an exception after the entry) leaves is completed or rolled back by
following the ledger, with a `recovered` entry (`tlflow.registry.recovery`). Registered versions are re-scored
with this package's own code (`tlflow.registry.champion`), never with code stored in the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tlflow.config import PipelineConfig
from tlflow.data.readers import LoadedData, load_labelled_data
from tlflow.errors import TlflowError
from tlflow.evaluation.slices import slice_rows
from tlflow.registry import ledger, tracking
from tlflow.registry.baseline import trivial_baseline
from tlflow.registry.champion import load_version
from tlflow.registry.fingerprint import trained_rows
from tlflow.registry.gate import Baseline, Decision, GateSettings, Scores, TrainedRows, decide
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import is_lock
from tlflow.registry.recovery import recover
from tlflow.registry.state import ALIASES, COMPLETE, PENDING, REGISTRATION_TAG, aliases
from tlflow.registry.transaction import Changes, OnStep, Record, transact
from tlflow.task_types.base import Evaluation, TaskSettings
from tlflow.task_types.registry import check_config, task_type_for

__all__ = ["ALIASES", "COMPLETE", "PENDING", "RegistryError", "aliases", "promote", "promote_version", "recover",
           "register_and_promote", "register_variant", "rollback"]


class RegistryError(TlflowError, ValueError):
    """A request the registry cannot satisfy (unknown model or version, nothing to roll back to)."""


def gate_settings(cfg: PipelineConfig) -> GateSettings:
    p = cfg.promote
    return GateSettings(
        metric=cfg.task.primary_metric, min_delta=p.min_delta, confidence=p.confidence,
        bootstrap_samples=p.bootstrap_samples, max_class_drop=p.max_class_drop, floors=dict(p.floors),
        seed=cfg.finetune.seed, max_slice_drop=p.max_slice_drop, min_slice_size=p.min_slice_size,
        max_counterfactual_gap=p.max_counterfactual_gap, trivial_baseline=p.trivial_baseline,
        max_champion_train_overlap=p.max_champion_train_overlap, on_champion_train_overlap=p.on_champion_train_overlap,
    )


def scores_of(cfg: PipelineConfig, evaluation: Evaluation, label_names: list[str], baseline: Baseline | None = None,
              trained: TrainedRows | None = None) -> Scores:
    """What the gate needs of `evaluation`, with the trivial `baseline` on the same split (for a
    new model) and the split's rows the model was `trained` on (for the champion)."""
    task = task_type_for(cfg)
    return Scores(evaluation.stats, partial(task.metrics_from_sums, label_names=label_names), evaluation.class_f1,
                  evaluation.slices, evaluation.counterfactual_gaps, baseline, trained)


def version_scores(client: MlflowClient, cfg: PipelineConfig, version: str, loaded: LoadedData) -> Scores:
    """Registered `version` of `cfg.name` re-scored on `loaded`'s test split, with the test rows it
    was trained on (its run's training-row fingerprint) and the split's trivial baseline."""
    evaluation = evaluate_version(cfg, cfg.name, version, loaded)
    run_id = client.get_model_version(cfg.name, str(version)).run_id
    return scores_of(cfg, evaluation, loaded.label_names, trivial_baseline(task_type_for(cfg), loaded),
                     trained_rows(run_id, loaded.splits["test"]))


def evaluate_version(cfg: PipelineConfig, name: str, version: str, loaded: LoadedData) -> Evaluation:
    """A registered version scored on `loaded`'s test split with its own tokenizer."""
    settings = TaskSettings.from_config(cfg)
    model = load_version(f"models:/{name}/{version}", settings)
    task_type, test = task_type_for(cfg), loaded.splits["test"]
    evaluation = task_type.evaluate(model.model, model.tokenizer, test, loaded.label_names, settings)
    evaluation.slices = slice_rows(task_type, test, cfg.evaluate.slices)  # what max_slice_drop compares
    return evaluation


def version_config(client: MlflowClient, mv: ModelVersion) -> PipelineConfig:
    """The pipeline config the version was trained with (its run's `config.yaml`)."""
    if not mv.run_id:
        raise RegistryError(f"{mv.name} v{mv.version} has no training run to take its config from")
    data = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{mv.run_id}/config.yaml"))
    return check_config(PipelineConfig.model_validate(data))


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
    if (mv.tags or {}).get(REGISTRATION_TAG) == PENDING:
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


def _on_split_of(lineage: Lineage, mv: ModelVersion) -> Lineage:
    """`lineage` judged on `mv`'s frozen evaluation split (unless it names one already)."""
    return lineage if lineage.eval_split else lineage.replace(eval_split=Lineage.from_tags(mv.tags).eval_split)


@dataclass(frozen=True)
class Outcome:
    version: str
    decision: Decision
    ledger_sequence: int


def register_and_promote(
    client: MlflowClient,
    cfg: PipelineConfig,
    model_uri: str,
    new: Scores,
    score_champion: Callable[[str], Scores],
    lineage: Lineage,
    actor: str,
    describe: Callable[[str, Decision], str],
    tags: Mapping[str, str] | None = None,
    on_step: OnStep | None = None,
) -> Outcome:
    """Register `model_uri` as a new version of `cfg.name` (tags: `lineage`, `tags` and the
    decision's) and give it `champion` when the gate passes against the current champion
    (re-scored by `score_champion`), `challenger` otherwise. `on_step`: see `transaction.transact`."""
    decided: list[Decision] = []

    def act(changes: Changes) -> Record:
        champion = changes.champion
        decision = decide(new, score_champion(champion) if champion else None, champion, gate_settings(cfg))
        decided.append(decision)
        version = changes.register(model_uri, {**lineage.tags(), **(tags or {}), **decision_tags(decision)})
        changes.describe(version, describe(version, decision))
        changes.move(decision.alias, version)
        return Record("promoted" if decision.promoted else "rejected", version, champion,
                      version if decision.promoted else champion, decision.reason, decision.to_dict())

    done = transact(client, cfg.name, act, actor, lineage, cfg.promote.lock_wait_s, cfg.promote.lock_stale_s,
                    on_step)
    return Outcome(done.version, decided[-1], done.entry.sequence)


#: The version tag that sums the gate's checks up, e.g. "6 passed, 1 failed: bootstrap" (a registry
#: search finds failed versions with `tags.checks LIKE '%failed%'`); every check with its numbers is
#: in the version's description and in the ledger entry's `decision.json`.
CHECKS_TAG = "checks"


def checks_summary(decision: Decision) -> str:
    """How many checks passed and failed, and which failed (each name once)."""
    failed = [c.name for c in decision.checks if not c.passed]
    summary = f"{len(decision.checks) - len(failed)} passed"
    return f"{summary}, {len(failed)} failed: {', '.join(dict.fromkeys(failed))}" if failed else summary


def decision_tags(decision: Decision) -> dict[str, str]:
    """The decision as version tags: what `tlflow models` lists and a registry search filters on.
    The champion it was compared with and each check's numbers are in the description and the ledger."""
    return {"primary_metric": decision.metric, "decision": decision.alias, "decision_reason": decision.reason[:4900],
            CHECKS_TAG: checks_summary(decision)}


def promote_version(
    client: MlflowClient,
    cfg: PipelineConfig,
    version: str,
    evaluate: Callable[[str], Scores],
    actor: str,
    lineage: Lineage,
    force: bool = False,
    reason: str = "",
    on_step: OnStep | None = None,
) -> tuple[Decision, str]:
    """Run the gate for an existing version against the champion; move `champion` when it passes,
    or when `force` (recorded as a forced promotion with `reason`). Returns the decision and the
    ledger action (the entry's evaluation split is the version's)."""
    name, version = cfg.name, str(version)
    mv = check_candidate(check_model(client, name, version))
    if force and not reason.strip():
        raise RegistryError("--force needs --reason: say why the gate is overridden")
    decided: list[Decision] = []

    def act(changes: Changes) -> Record:
        champion = changes.champion
        if champion == version:
            raise RegistryError(f"{name} v{version} is already the champion")
        decision = decide(evaluate(version), evaluate(champion) if champion else None, champion,
                          gate_settings(cfg))
        decided.append(decision)
        action = "manual-promotion" if decision.promoted else ("forced-promotion" if force else "rejected")
        after = version if (decision.promoted or force) else champion
        note = f"{reason.strip()} (gate: {decision.reason})" if force and not decision.promoted else decision.reason
        if after != champion:
            changes.move(tracking.CHAMPION, version)
        return Record(action, version, champion, after, note, decision.to_dict())

    done = transact(client, name, act, actor, _on_split_of(lineage, mv), cfg.promote.lock_wait_s,
                    cfg.promote.lock_stale_s, on_step)
    return decided[-1], done.record.action


def promote(
    client: MlflowClient, name: str, version: str, actor: str, lineage: Lineage, force: bool = False,
    reason: str = "", on_step: OnStep | None = None,
) -> tuple[Decision, str]:
    """`tlflow promote`: `promote_version` with both versions scored on VERSION's own test split
    (its run's config); the request is checked before any data is loaded."""
    mv = check_candidate(check_model(client, name, version))
    if force and not reason.strip():
        raise RegistryError("--force needs --reason: say why the gate is overridden")
    cfg = version_config(client, mv)
    loaded = load_labelled_data(cfg.data, task_type_for(cfg).dataset_spec(), cfg.evaluate.slices)
    return promote_version(client, cfg, version, lambda v: version_scores(client, cfg, v, loaded), actor, lineage,
                           force, reason, on_step)


def rollback(client: MlflowClient, name: str, actor: str, lineage: Lineage, wait_s: float = 1800,
             stale_s: float = 1800, on_step: OnStep | None = None) -> tuple[str, str]:
    """Make the previous champion (per the ledger) champion again; returns (from, to) versions."""
    check_model(client, name)

    def act(changes: Changes) -> Record:
        current = changes.champion
        if current is None:
            raise RegistryError(f"'{name}' has no champion to roll back")
        previous = ledger.previous_champion(ledger.entries(client, name), current)
        if previous is None:
            raise RegistryError(f"'{name}' has no previous champion before v{current} in the ledger")
        check_candidate(check_model(client, name, previous))
        changes.move(tracking.CHAMPION, previous)
        return Record("rollback", previous, current, previous, f"rolled back from v{current} to v{previous}")

    done = transact(client, name, act, actor, lineage, wait_s, stale_s, on_step)
    return done.record.champion_before, done.record.version


def register_variant(
    client: MlflowClient,
    name: str,
    source: str,
    model_uri: str,
    tags: Mapping[str, str],
    actor: str,
    lineage: Lineage,
    reason: str,
    comparison: dict,
    describe: Callable[[str], str],
    wait_s: float = 1800,
    stale_s: float = 1800,
    on_step: OnStep | None = None,
) -> tuple[str, int]:
    """Register `model_uri`, an optimized variant of champion v`source`, as a new version of
    `name` with `tags` (the source's lineage among them: `Lineage.for_variant`), and move alias
    `optimized` to it (ledger action `optimize` with `comparison`, judged on the source's evaluation
    split; the champion does not change). RegistryError when the champion changed meanwhile.
    Returns the version and its ledger sequence."""
    mv = check_model(client, name, source)

    def act(changes: Changes) -> Record:
        champion = changes.champion
        if champion != source:
            raise RegistryError(f"the champion of '{name}' changed from v{source} to v{champion} while optimizing: "
                                "run it again")
        version = changes.register(model_uri, tags)
        changes.describe(version, describe(version))
        changes.move(tracking.OPTIMIZED, version)
        return Record("optimize", version, champion, champion, reason, comparison)

    done = transact(client, name, act, actor, _on_split_of(lineage, mv), wait_s, stale_s, on_step)
    return done.version, done.entry.sequence
