"""Stage 2: turn the validated training split into the task's features, cached on disk."""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.progress import rows_progress
from tlflow import paths
from tlflow.config import PipelineConfig
from tlflow.data.cache import cache_key, file_digest, tokenize_cached
from tlflow.data.readers import LoadedData
from tlflow.data.spec import without_meta
from tlflow.modeling.models import load_tokenizer, resolve_base
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import task_type_for

CACHE_DIR = paths.TOKENIZED_DIR


@task(name="tokenize", cache_policy=NO_CACHE, persist_result=False)
def tokenize_data(cfg: PipelineConfig, loaded: LoadedData, tokenizer_source: str, data_md5: str) -> Path:
    """Tokenize with the encoder's fast tokenizer (label alignment, QA windows: the task type's
    preprocessing); reuse the cache when (data md5, file contents, tokenizer, max length, task
    settings, dataset config) are unchanged. Returns the features folder."""
    tokenizer = load_tokenizer(tokenizer_source)
    settings = TaskSettings.from_config(cfg)
    key = cache_key(
        data_md5=data_md5,
        files=file_digest(loaded.files),
        tokenizer=resolve_base(tokenizer_source),
        vocab=len(tokenizer),
        task=settings.__dict__ | {"batch_size": None},
        data=cfg.data.model_dump(mode="json"),
        labels=loaded.label_names,
    )
    task_type = task_type_for(cfg)
    result = tokenize_cached(
        without_meta(loaded.splits["train"]),  # metadata columns (evaluation slices) never reach the features
        lambda rows: task_type.train_features(rows, loaded.label_names, tokenizer, settings),
        CACHE_DIR, key, on_chunk=rows_progress(cfg, "tokenize"),
    )
    mlflow.set_tag("tokenize_cache", "hit" if result.cache_hit else "miss")
    get_run_logger().info("tokenized data %s (%s)", result.path, "cache hit" if result.cache_hit else "built")
    return result.path
