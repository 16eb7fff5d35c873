"""Training features read memory-mapped: the columns of a saved tokenized split as sequences whose
rows are decoded only when a batch asks for them.

`feature_columns(dataset)` is what the training loop takes where it would otherwise take
``dataset.to_dict()`` (every row as Python lists): the same mapping of column name to a sequence
of rows (`features["input_ids"][i]`), but backed by the Arrow file on disk, so a fine-tuning
process holds one batch of decoded rows, not the whole split. `lengths()` gives every row's
length from the Arrow offsets without decoding a row.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset


class ArrowColumn(Sequence):
    """One column of Arrow data as a sequence of Python values (lists for list columns)."""

    def __init__(self, array: pa.ChunkedArray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ArrowColumn(self.array[index])
        return self.array[index].as_py()

    def __iter__(self) -> Iterator:
        for chunk in self.array.iterchunks():
            yield from chunk.to_pylist()

    def lengths(self) -> np.ndarray:
        """The length of every row of a list column, from the Arrow offsets."""
        return pc.list_value_length(self.array).to_numpy(zero_copy_only=False)


class FeatureColumns(Mapping[str, ArrowColumn]):
    """The columns of a tokenized split, memory-mapped (see the module docstring)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __getitem__(self, name: str) -> ArrowColumn:
        if name not in self.table.column_names:
            raise KeyError(name)
        return ArrowColumn(self.table.column(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.column_names)

    def __len__(self) -> int:
        return self.table.num_columns


def feature_columns(dataset: Dataset) -> FeatureColumns:
    """`dataset`'s columns without copying its rows (a memory-mapped split stays on disk)."""
    return FeatureColumns(dataset.with_format("arrow")[:])


def example_lengths(input_ids: Sequence[Sequence[int]]) -> Sequence[int]:
    """Token count of every example: from the Arrow offsets for an `ArrowColumn`, else `len` of each."""
    if isinstance(input_ids, ArrowColumn):
        return input_ids.lengths()
    return [len(x) for x in input_ids]
