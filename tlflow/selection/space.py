"""A trial's settings: drawn from `select.space` by Optuna, written into a copy of the config."""

from __future__ import annotations

import os
from typing import Any

import optuna

from tlflow.config import PipelineConfig
from tlflow.config.selection import INTEGER_SETTINGS, SPACE_FIELDS, SearchRange

#: The trial parameter that names the candidate base model.
CANDIDATE = "candidate"


def suggest(trial: optuna.Trial, candidates: list[str], space: dict[str, SearchRange]) -> dict[str, Any]:
    """Draw the candidate and every setting of `space` for `trial` (names as in `select.space`)."""
    params: dict[str, Any] = {CANDIDATE: trial.suggest_categorical(CANDIDATE, list(candidates))}
    for name in sorted(space):
        r = space[name]
        whole = name in INTEGER_SETTINGS
        if r.choices:
            params[name] = trial.suggest_categorical(name, [int(c) if whole else c for c in r.choices])
        elif whole:
            params[name] = trial.suggest_int(name, int(r.low), int(r.high), step=int(r.step or 1), log=r.log)
        else:
            params[name] = trial.suggest_float(name, r.low, r.high, step=r.step, log=r.log)
    return params


def trial_threads(workers: int, threads: int) -> int:
    """Torch threads of one trial: `threads`, or this machine's cores shared by `workers` (at least 1)."""
    return threads or max(1, len(os.sched_getaffinity(0)) // workers)


def apply_params(cfg: PipelineConfig, params: dict[str, Any], **finetune: Any) -> PipelineConfig:
    """`cfg` with the candidate as `model.base` and each drawn setting in its section (`SPACE_FIELDS`),
    plus `finetune` overrides; the `select` section dropped (what a plain run of the result trains)."""
    sections: dict[str, dict[str, Any]] = {"model": {"base": params[CANDIDATE]}, "finetune": {}}
    for name, value in params.items():
        if name in SPACE_FIELDS:
            section, field = SPACE_FIELDS[name]
            sections[section][field] = value
    sections["finetune"].update(finetune)
    return cfg.model_copy(update={
        "model": cfg.model.model_copy(update=sections["model"]),
        "finetune": cfg.finetune.model_copy(update=sections["finetune"]),
        "select": None,
    })


def retrain_config(cfg: PipelineConfig, params: dict[str, Any]) -> PipelineConfig:
    """What the winner's final run trains: `apply_params`, on the training and validation splits
    together (`data.train_on_validation`) under `select.retrain_on: train_and_validation`."""
    run = apply_params(cfg, params)
    if cfg.select is not None and cfg.select.retrain_on == "train_and_validation":
        run = run.model_copy(update={"data": run.data.model_copy(update={"train_on_validation": True})})
    return run


def search_config(cfg: PipelineConfig) -> PipelineConfig:
    """The config trials read their data with: `select.max_train_rows` training rows when set,
    exactly the epochs the search chose (no `finetune.min_steps` raise), and nothing registered."""
    data = cfg.data.model_copy(update={"train_on_validation": False})  # trials are scored on validation
    if cfg.select is not None and cfg.select.max_train_rows:
        data = data.model_copy(update={"max_train_rows": cfg.select.max_train_rows})
    promote = cfg.promote.model_copy(update={"register_model": False})
    finetune = cfg.finetune.model_copy(update={"min_steps": 0})
    return cfg.model_copy(update={"data": data, "promote": promote, "finetune": finetune})


def check_space(cfg: PipelineConfig) -> None:
    """ConfigError (one line) for a `select.space` bound the field it sets does not accept."""
    from pydantic import ValidationError

    from tlflow.config import ConfigError

    for name, r in (cfg.select.space if cfg.select else {}).items():
        section, field = SPACE_FIELDS[name]
        for value in r.choices or [r.low, r.high]:
            copy = getattr(cfg, section).model_copy()
            try:
                setattr(copy, field, int(value) if name in INTEGER_SETTINGS else value)
            except ValidationError as err:
                message = err.errors()[0]["msg"].removeprefix("Value error, ")
                raise ConfigError(f"select.space.{name}: {value:g} is not a valid {section}.{field} ({message})") from None
