"""Training features cached on disk.

The cache key covers everything that changes the output: the data version, the raw files'
content, the tokenizer, the max length, the task settings and the dataset config. A second run
with unchanged inputs loads the saved `DatasetDict` instead of tokenizing again. Evaluation
tokenizes its (small) splits itself, with the model's own tokenizer.

Tokenization streams: the split is cut into chunks of `CHUNK_ROWS` rows, each chunk's features are
appended to an Arrow file as soon as they are built, and the training loop reads the saved split
memory-mapped (`tlflow.data.features`), so neither holds every row's token ids in memory.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, DatasetDict, load_from_disk

from tlflow.data.atomic import atomic_dir

#: Rows tokenized (and held as Python lists) at a time.
CHUNK_ROWS = 10_000


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


#: `on_chunk(rows_done, rows_total)`, called after each chunk (progress reporting).
ChunkCallback = Callable[[int, int], None]


def write_features(split: Dataset, features_of: Callable[[Dataset], dict[str, list]], arrow_file: Path,
                   chunk_rows: int = CHUNK_ROWS, on_chunk: ChunkCallback | None = None) -> None:
    """Append `features_of(chunk)` (column-wise lists) for every chunk of `chunk_rows` rows of
    `split` to `arrow_file` (Arrow stream format), one chunk in memory at a time. Every chunk must
    give the columns and types of the first (a mismatch raises ValueError naming the rows)."""
    schema = writer = None
    with pa.OSFile(str(arrow_file), "wb") as sink:
        for start in range(0, len(split), chunk_rows):
            stop = min(start + chunk_rows, len(split))
            columns = features_of(split.select(range(start, stop)))
            try:
                table = pa.Table.from_pydict(columns, schema=schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as err:
                raise ValueError(f"features of rows {start + 1}-{stop} do not match those of the first rows "
                                 f"({', '.join(schema.names)}): {err}") from err
            if writer is None:
                schema = table.schema
                writer = pa.ipc.new_stream(sink, schema)
            writer.write_table(table)
            if on_chunk is not None:
                on_chunk(stop, len(split))
        if writer is not None:
            writer.close()


def tokenize_cached(split: Dataset, features_of: Callable[[Dataset], dict[str, list]], cache_dir: Path,
                    key: str, chunk_rows: int = CHUNK_ROWS, on_chunk: ChunkCallback | None = None) -> TokenizedData:
    """The training features of `split` (`features_of` maps rows to column-wise lists), built
    chunk by chunk (`write_features`, which reports each chunk to `on_chunk`) and saved as the
    `train` split of a DatasetDict under `cache_dir/key`, unless the cache already holds `key`."""
    target = Path(cache_dir) / key
    if (target / "dataset_dict.json").is_file():
        return TokenizedData(target, cache_hit=True)
    if len(split) == 0:
        save_atomically(DatasetDict({"train": Dataset.from_dict(features_of(split))}), target)
        return TokenizedData(target, cache_hit=False)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{key}-chunks-", dir=cache_dir) as scratch:
        arrow_file = Path(scratch) / "features.arrow"
        write_features(split, features_of, arrow_file, chunk_rows, on_chunk)
        save_atomically(DatasetDict({"train": Dataset.from_file(str(arrow_file))}), target)
    return TokenizedData(target, cache_hit=False)
