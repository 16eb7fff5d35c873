"""Stage 2: tokenize the validated splits, cached on disk."""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tlflow.config import PipelineConfig
from tlflow.data.readers import LoadedData
from tlflow.models import load_tokenizer, resolve_base
from tlflow.tokenization import cache_key, file_digest, tokenize_cached

CACHE_DIR = Path(".cache/tlflow/tokenized")


@task(name="tokenize", cache_policy=NO_CACHE, persist_result=False)
def tokenize_data(cfg: PipelineConfig, loaded: LoadedData, tokenizer_source: str, data_md5: str) -> Path:
    """Tokenize with the encoder's fast tokenizer; reuse the cache when (data md5, file contents,
    tokenizer, max length, dataset config) are unchanged. Returns the tokenized dataset folder."""
    tokenizer = load_tokenizer(tokenizer_source)
    key = cache_key(
        data_md5=data_md5,
        files=file_digest(loaded.files),
        tokenizer=resolve_base(tokenizer_source),
        vocab=len(tokenizer),
        max_length=cfg.model.max_length,
        data=cfg.data.model_dump(mode="json"),
        labels=loaded.label_names,
    )
    result = tokenize_cached(loaded.splits, loaded.label_names, tokenizer, cfg.model.max_length, CACHE_DIR, key)
    mlflow.set_tag("tokenize_cache", "hit" if result.cache_hit else "miss")
    get_run_logger().info("tokenized data %s (%s)", result.path, "cache hit" if result.cache_hit else "built")
    return result.path
