"""Checks of a selection config before any work starts (one-line ConfigError, exit 2)."""

from __future__ import annotations

from tlflow.config import ConfigError, PipelineConfig
from tlflow.selection.candidates import is_registered
from tlflow.selection.space import check_space
from tlflow.task_types.registry import check_inputs, get_task_type


def check_selection(cfg: PipelineConfig) -> PipelineConfig:
    """`cfg` (task section already checked) has a `select` section whose metric is one of the
    task's, whose candidates load offline from allowed folders (registered encoders are looked up
    later) and whose space bounds fit their fields, and that retraining on train and validation
    does not meet early stopping (refused: it would watch rows it trains on). Returns `cfg`."""
    if cfg.select is None:
        raise ConfigError("select: the config has no `select` section (candidates, space, trials); see "
                          "configs/select_sst2.yaml")
    metrics = get_task_type(cfg.task.type).primary_metrics
    if cfg.select.metric is not None and cfg.select.metric not in metrics:
        raise ConfigError(f"select.metric: '{cfg.select.metric}' is not a validation metric of {cfg.task.type} "
                          f"(one of: {', '.join(metrics)})")
    for candidate in cfg.select.candidates:
        if not is_registered(candidate):
            try:
                check_inputs(cfg.model_copy(update={"model": cfg.model.model_copy(update={"base": candidate})}))
            except ConfigError as err:
                raise ConfigError(f"select.candidates: {str(err).removeprefix('model.base: ')}") from None
    if cfg.select.retrain_on == "train_and_validation" and cfg.finetune.early_stopping is not None:
        raise ConfigError("select.retrain_on: train_and_validation leaves no validation split for "
                          "finetune.early_stopping: drop early_stopping or retrain on train")
    check_space(cfg)
    return cfg
