"""Training features cached on disk.

The cache key covers everything that changes the output: the data version, the raw files'
content, the tokenizer, the max length, the task settings and the dataset config. A second run
with unchanged inputs loads the saved `DatasetDict` instead of tokenizing again. Evaluation
tokenizes its (small) splits itself, with the model's own tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict, load_from_disk

from tlflow.data.atomic import atomic_dir


@dataclass(frozen=True)
class TokenizedData:
    path: Path
    cache_hit: bool


def file_digest(paths: list[str]) -> str:
    """md5 over the content of raw files (catches edits not yet recorded in data.dvc)."""
    md5 = hashlib.md5()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                md5.update(chunk)
    return md5.hexdigest()


def cache_key(**parts: object) -> str:
    """Stable short digest of named parts (JSON-serialisable)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def save_atomically(splits: DatasetDict, target: Path) -> None:
    """Write a DatasetDict to `target` so that a crash never leaves a half-written cache entry."""
    with atomic_dir(target) as tmp:
        splits.save_to_disk(str(tmp))


def load_tokenized(path: Path) -> DatasetDict:
    """Load a cached tokenized DatasetDict (memory-mapped Arrow files)."""
    return load_from_disk(str(path))


def tokenize_cached(build: Callable[[], dict[str, list]], cache_dir: Path, key: str) -> TokenizedData:
    """Training features from `build` (column-wise lists), saved as the `train` split of a
    DatasetDict under `cache_dir/key`, unless the cache already holds `key`."""
    target = Path(cache_dir) / key
    if (target / "dataset_dict.json").is_file():
        return TokenizedData(target, cache_hit=True)
    save_atomically(DatasetDict({"train": Dataset.from_dict(build())}), target)
    return TokenizedData(target, cache_hit=False)
