"""Batched tokenization with an on-disk cache.

The cache key covers everything that changes the output: the data version, the raw files'
content, the tokenizer, the max length and the dataset config. A second run with unchanged
inputs loads the saved `DatasetDict` instead of tokenizing again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from datasets import DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase

from tlflow.atomic import atomic_dir

#: Columns the trainer and evaluator read; everything else stays for reports (text, source rows).
MODEL_COLUMNS = ("input_ids", "attention_mask", "labels")


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


def encode_labels(splits: DatasetDict, label_names: list[str]) -> DatasetDict:
    """Add integer `labels` (index into `label_names`) next to the label-name column."""
    index = {name: i for i, name in enumerate(label_names)}
    return splits.map(lambda batch: {"labels": [index[x] for x in batch["label"]]}, batched=True)


def tokenize_splits(
    splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> DatasetDict:
    """Tokenize `text` in batches without padding (the collator pads per batch); adds `length`."""

    def encode(batch: dict) -> dict:
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length, return_token_type_ids=False)
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    return splits.map(encode, batched=True, batch_size=1000, desc="tokenize")


def save_atomically(splits: DatasetDict, target: Path) -> None:
    """Write a DatasetDict to `target` so that a crash never leaves a half-written cache entry."""
    with atomic_dir(target) as tmp:
        splits.save_to_disk(str(tmp))


def load_tokenized(path: Path) -> DatasetDict:
    """Load a cached tokenized DatasetDict (memory-mapped Arrow files)."""
    return load_from_disk(str(path))


def tokenize_cached(
    splits: DatasetDict,
    label_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: Path,
    key: str,
) -> TokenizedData:
    """Tokenize and label-encode `splits` unless the cache already holds `key`."""
    target = Path(cache_dir) / key
    if (target / "dataset_dict.json").is_file():
        return TokenizedData(target, cache_hit=True)
    encoded = tokenize_splits(encode_labels(splits, label_names), tokenizer, max_length)
    save_atomically(encoded, target)
    return TokenizedData(target, cache_hit=False)
