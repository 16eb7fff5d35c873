"""The Optuna study of a selection: where it lives, how trials are drawn and pruned, what they found.

The study is in an RDB storage (SQLite under the project by default, any SQLAlchemy URL for a
shared database), so a search killed half-way resumes: finished and pruned trials count towards
`select.trials`, and a trial whose heartbeat stopped (its process was killed) is marked failed and
retried once with the same settings (`RetryFailedTrialCallback`). Trial k of a search draws with
TPE seeded `select.seed + k`, so parallel trials do not repeat each other's draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryFailedTrialCallback
from optuna.trial import FrozenTrial, TrialState

from tlflow import paths
from tlflow.config import PipelineConfig
from tlflow.config.selection import SelectConfig
from tlflow.data.cache import cache_key
from tlflow.errors import TlflowError
from tlflow.selection.space import CANDIDATE

#: Default study database (relative to the project).
DEFAULT_DB = paths.CACHE_DIR / "selection" / "optuna.db"
#: Trial user attributes the trials set.
RUN_ID, SECONDS, STEPS, ERROR, TWIN_OF = "mlflow_run_id", "seconds", "steps", "error", "same_as_trial"


@dataclass(frozen=True)
class StudyRef:
    """What a trial needs to join the study: its name and storage URL, and the selection's settings."""

    name: str
    storage: str
    select: SelectConfig
    metric: str


def storage_url(select: SelectConfig) -> str:
    """`select.storage`, or the SQLite file under the project (its folder made)."""
    if select.storage:
        return select.storage
    DEFAULT_DB.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_DB.resolve()}"


def study_name(cfg: PipelineConfig, data_md5: str) -> str:
    """`select.study_name`, or one derived from everything that decides the search: the config
    (search settings but trial counts and placement) and the data version."""
    select = cfg.select
    if select.study_name:
        return select.study_name
    kept = select.model_dump(mode="json", exclude={"trials", "timeout_s", "dask_address", "workers", "trial_threads",
                                                   "storage", "heartbeat_s", "linear_probe", "probe_learning_rate",
                                                   "retrain_on"})
    return f"{cfg.name}-select-{cache_key(config=cfg.hash(), select=kept, data=data_md5)[:10]}"


def storage(ref: StudyRef) -> RDBStorage:
    """The study's storage with heartbeats: a trial silent for two heartbeats is failed and retried once."""
    return RDBStorage(ref.storage, heartbeat_interval=ref.select.heartbeat_s, grace_period=2 * ref.select.heartbeat_s,
                      failed_trial_callback=RetryFailedTrialCallback(max_retry=1))


def pruner(select: SelectConfig) -> optuna.pruners.BasePruner:
    if select.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=select.pruner_startup_trials, n_warmup_steps=0)
    if select.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def load(ref: StudyRef, slot: int = 0) -> optuna.Study:
    """The study (created when new), with the TPE sampler of trial `slot` and the configured pruner."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials are logged by the tasks, once each
    sampler = optuna.samplers.TPESampler(seed=ref.select.seed + slot)
    return optuna.create_study(study_name=ref.name, storage=storage(ref), sampler=sampler, pruner=pruner(ref.select),
                               direction="maximize", load_if_exists=True)


def counted(study: optuna.Study) -> int:
    """Trials that count towards `select.trials`: finished or pruned."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def stale_trials(study: optuna.Study, grace_s: float) -> list[int]:
    """Fail (and queue a retry of) trials whose heartbeat stopped, and fail trials asked for more
    than `grace_s` ago that never drew a setting (a process killed between asking and drawing:
    they have no heartbeat, and nothing to retry); their numbers."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    optuna.storages.fail_stale_trials(study)
    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not t.params and t.datetime_start and (now - t.datetime_start).total_seconds() > grace_s:
            study.tell(t.number, state=TrialState.FAIL)
    return sorted(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number in running)


def finished_twin(study: optuna.Study, number: int, params: dict[str, Any]) -> FrozenTrial | None:
    """An earlier finished trial with exactly `params` (training is seeded: it would score the same)."""
    return next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if t.number != number and t.params == params and TWIN_OF not in t.user_attrs), None)


def cost(trial: FrozenTrial) -> float:
    """What a trial took: its seconds of training (ties between equal scores go to the cheaper)."""
    return float(trial.user_attrs.get(SECONDS, math.inf))


def winner(study: optuna.Study) -> FrozenTrial | None:
    """The finished trial with the best validation score, the cheapest among equals."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(done, key=lambda t: (-t.value, cost(t), t.number)) if done else None


def best_per_candidate(study: optuna.Study) -> dict[str, FrozenTrial]:
    """Each candidate's best finished trial (same order as `winner`)."""
    best: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        name = t.params[CANDIDATE]
        if name not in best or (-t.value, cost(t), t.number) < (-best[name].value, cost(best[name]), best[name].number):
            best[name] = t
    return best


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state (complete, pruned, fail, running), validation score, the
    evaluation it was pruned at, seconds, steps, its MLflow run and settings."""
    rows = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        rows.append({
            "trial": t.number,
            "state": t.state.name.lower(),
            "value": t.value if t.value is not None else (t.intermediate_values.get(t.last_step)
                                                          if t.last_step is not None else None),
            "pruned_at_eval": t.last_step if t.state == TrialState.PRUNED else None,
            "seconds": t.user_attrs.get(SECONDS),
            "steps": t.user_attrs.get(STEPS),
            "mlflow_run_id": t.user_attrs.get(RUN_ID),
            "same_as_trial": t.user_attrs.get(TWIN_OF),
            "error": t.user_attrs.get(ERROR),
            **{f"param_{k}": v for k, v in sorted(t.params.items())},
        })
    return rows


class SelectionError(TlflowError, RuntimeError):
    """A search that found no winner (every trial failed or was pruned)."""


def no_winner(study: optuna.Study) -> SelectionError:
    """The error of a study without a finished trial: its counts and the first trial error."""
    states = [t.state.name.lower() for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) or "no trials"
    error = next((t.user_attrs[ERROR] for t in study.trials if t.user_attrs.get(ERROR)), None)
    return SelectionError(f"study {study.study_name}: no trial finished ({counts})"
                          + (f"; first error: {error}" if error else ""))
