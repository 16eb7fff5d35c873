"""Stage 3: pretraining. Mode 'none' uses the base checkpoint as it is."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tlflow.config import PipelineConfig


@task(name="pretrain", cache_policy=NO_CACHE, persist_result=False)
def pretrain_encoder(cfg: PipelineConfig) -> str:
    """The encoder fine-tuning starts from: a base-model name or path.

    The seam for pretraining: other modes train an encoder here and return its path (and tag
    the run with `encoder_version`); mode 'none' returns the configured base model.
    """
    if cfg.pretrain.mode == "none":
        return cfg.model.base
    raise ValueError(f"pretrain.mode '{cfg.pretrain.mode}' is not supported")
