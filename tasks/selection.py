"""Model-selection tasks: open (or resume) the Optuna study, run one trial, run one linear probe.

A trial or probe trains through the pipeline's own tokenize and fine-tune stages, inside an MLflow
child run of the selection run (it may run in a Dask worker process, so the parent is named, not
inherited). Pruned trials end their run KILLED with tag `trial_state: pruned`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlflow
import optuna
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.engine import make_url

from tasks.finetune import finetune_model
from tasks.tokenize import tokenize_data
from tlflow.config import PipelineConfig
from tlflow.data.readers import LoadedData
from tlflow.registry import tracking
from tlflow.registry.abandoned_runs import owner_tags
from tlflow.registry.descriptions import experiment_description
from tlflow.selection import study as studies
from tlflow.selection.candidates import resolve_candidate
from tlflow.selection.report import CandidateRow
from tlflow.selection.scoring import TrialScore
from tlflow.selection.space import apply_params, suggest, trial_threads

_TASK = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="resolve-candidates", **_TASK)
def resolve_candidates(cfg: PipelineConfig) -> PipelineConfig:
    """`cfg` with every `<name>-encoder@<alias>` candidate replaced by its downloaded folder."""
    tracking.configure()
    return cfg.model_copy(update={"select": cfg.select.model_copy(
        update={"candidates": [resolve_candidate(c) for c in cfg.select.candidates]})})


@task(name="open-study", **_TASK)
def open_study(cfg: PipelineConfig, data_md5: str) -> tuple[studies.StudyRef, list[int]]:
    """Create or resume the study; fail trials of killed processes (retried once); the slots
    (sampler seeds) of the trials still to run."""
    ref = studies.StudyRef(studies.study_name(cfg, data_md5), studies.storage_url(cfg.select), cfg.select,
                           cfg.select.metric or cfg.task.primary_metric)
    study = studies.load(ref)
    stale = studies.stale_trials(study, 2 * cfg.select.heartbeat_s)
    remaining = max(0, cfg.select.trials - studies.counted(study))
    mlflow.set_tags({"selection_study": ref.name, "optuna_storage": make_url(ref.storage).render_as_string()})
    get_run_logger().info("study %s: %d trials so far (%d counted), %d of killed runs failed and queued again; "
                          "%d to run", ref.name, len(study.trials), studies.counted(study), len(stale), remaining)
    return ref, list(range(len(study.trials), len(study.trials) + remaining))


def _train(cfg: PipelineConfig, loaded: LoadedData, data_md5: str, parent_run_id: str, run_name: str,
           tags: dict[str, str], score: TrialScore) -> tuple[str, dict[str, float]]:
    """Tokenize (shared cache) and fine-tune `cfg` in a child run; its run id and metrics."""
    tracking.configure()
    run = mlflow.start_run(experiment_id=tracking.ensure_experiment(cfg.name, experiment_description(cfg.name)), run_name=run_name,
                           parent_run_id=parent_run_id, tags={**tags, **owner_tags()})  # closed if its process dies
    if score.trial is not None:
        score.trial.set_user_attr(studies.RUN_ID, run.info.run_id)
    status = "FAILED"
    try:
        mlflow.log_params(cfg.flat())
        tokenized = tokenize_data.fn(cfg, loaded, cfg.model.base, data_md5)
        finetune_model.fn(cfg, tokenized, loaded, cfg.model.base, on_metrics=score)
        status = "FINISHED"
    except optuna.TrialPruned:
        mlflow.set_tag("trial_state", "pruned")
        status = "KILLED"
        raise
    finally:
        mlflow.flush_async_logging()
        mlflow.end_run(status)
    return run.info.run_id, mlflow.get_run(run.info.run_id).data.metrics


@task(name="trial", **_TASK)
def run_trial(cfg: PipelineConfig, ref: studies.StudyRef, slot: int, loaded: LoadedData, data_md5: str,
              parent_run_id: str, deadline: float | None) -> dict[str, Any]:
    """One Optuna trial (TPE seeded `seed + slot`): draw a candidate and settings, fine-tune,
    report each evaluation (pruning), record the validation score, cost and MLflow run."""
    if deadline is not None and time.time() > deadline:
        return {"slot": slot, "state": "skipped (select.timeout_s)"}
    study = studies.load(ref, slot)
    threads = trial_threads(ref.select.workers, ref.select.trial_threads)
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        params = suggest(trial, ref.select.candidates, ref.select.space)
        if (same := studies.finished_twin(study, trial.number, params)) is not None:  # deterministic: no rerun
            for key, value in {**same.user_attrs, studies.TWIN_OF: same.number}.items():
                trial.set_user_attr(key, value)
            return same.value
        score = TrialScore(ref.metric, trial)
        tags = {"selection_study": ref.name, "selection_trial": str(trial.number),
                "selection_candidate": params["candidate"]}
        try:
            run_id, metrics = _train(apply_params(cfg, params, threads=threads), loaded, data_md5, parent_run_id,
                                     f"trial-{trial.number}-{Path(params['candidate']).name}", tags, score)
        except Exception as err:  # recorded on the trial; Optuna marks it failed (pruned for TrialPruned)
            trial.set_user_attr(studies.ERROR, str(err).splitlines()[0] if str(err) else type(err).__name__)
            raise
        for key, value in {studies.RUN_ID: run_id, studies.SECONDS: metrics.get("train/seconds"),
                           studies.STEPS: metrics.get("train/steps")}.items():
            trial.set_user_attr(key, value)
        if score.score is None:
            raise ValueError(f"no validation {ref.metric} was logged (is there a validation split?)")
        return score.score

    study.optimize(objective, n_trials=1, catch=(Exception,))
    trial = study.trials[ran[0]] if ran else None
    state = trial.state.name.lower() if trial else "none"
    get_run_logger().info("trial %s: %s, val_%s %s", ran[0] if ran else "-", state, ref.metric,
                          trial.value if trial else None)
    return {"slot": slot, "trial": ran[0] if ran else None, "state": state}


@task(name="best-trials", **_TASK)
def best_trials(ref: studies.StudyRef) -> list[tuple[int, dict[str, Any]]]:
    """(number, settings) of each candidate's best finished trial: what its linear probe repeats."""
    return [(t.number, dict(t.params)) for t in studies.best_per_candidate(studies.load(ref)).values()]


@task(name="linear-probe", **_TASK)
def run_probe(cfg: PipelineConfig, ref: studies.StudyRef, params: dict[str, Any], trial_number: int,
              loaded: LoadedData, data_md5: str, parent_run_id: str) -> CandidateRow:
    """The candidate's frozen encoder with a trained task head (finetune.method head) at the budget of
    its best trial (learning rate `select.probe_learning_rate`): its validation score."""
    score = TrialScore(ref.metric)
    threads = trial_threads(ref.select.workers, ref.select.trial_threads)
    probe = apply_params(cfg, params, threads=threads, method="head", learning_rate=ref.select.probe_learning_rate)
    candidate = params["candidate"]
    tags = {"selection_study": ref.name, "selection_probe": candidate, "selection_trial": str(trial_number)}
    run_id, _ = _train(probe, loaded, data_md5, parent_run_id, f"probe-{Path(candidate).name}", tags, score)
    return CandidateRow(candidate, 0, None, trial_number, probe_score=score.score, probe_run_id=run_id)
