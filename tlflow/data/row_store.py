"""Canonical rows held on disk while a dataset is read, so that reading holds one chunk at a time.

`RowFile` appends frames of canonical rows (chunks of a raw file) to an Arrow stream file in a
temporary folder (``TMPDIR``, named ``tlflow-rows-<host>-<pid>-...``) and gives them back as one
memory-mapped `datasets.Dataset`: the pages of the rows are file cache, read when a row is used, not memory the
process owns. A split that is not all the rows of a file is copied, a chunk at a time, to its own
`RowFile` (`take_rows`), so that every split is read contiguously. The folders live as long as
the process (datasets made from the rows may write next to them) and are removed at exit; a
failure while writing removes the folder at once, and the folders of killed processes are removed
by the next process that reads (`sweep_orphans`).

`KeyColumns` keeps the few columns that splitting and sampling look at (label, group, split
value, source file) as integer codes into the distinct values, with the row's position.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa

#: Column of `KeyColumns.frame`: the row's position in the rows written.
POSITION = "__position__"
#: Start of a rows folder's name, followed by the host and the process id of its owner.
FOLDER_PREFIX = "tlflow-rows-"
#: Folders of the `RowFile`s made inside `removed_on_error` (None outside it).
_MADE: ContextVar[list[Path] | None] = ContextVar("tlflow_row_files", default=None)


@contextmanager
def removed_on_error() -> Iterator[None]:
    """Every `RowFile` made inside is removed if the block raises: a read that fails half-way
    (a bad line in the test file, after the training file was written) leaves no rows behind."""
    made: list[Path] = []
    token = _MADE.set(made)
    try:
        yield
    except BaseException:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        _MADE.reset(token)


def _folder_prefix(pid: int) -> str:
    return f"{FOLDER_PREFIX}{socket.gethostname()}-{pid}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


_SWEPT = False


def sweep_orphans() -> list[Path]:
    """Remove the rows folders that processes of this host left when they were killed before
    their exit handlers ran (``kill -9``, an out-of-memory kill); done once per process, before
    its first `RowFile`. Returns the folders removed."""
    global _SWEPT
    _SWEPT = True
    removed = []
    mine = f"{FOLDER_PREFIX}{socket.gethostname()}-"
    for folder in Path(tempfile.gettempdir()).glob(f"{mine}*"):
        pid = folder.name.removeprefix(mine).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class RowFile:
    """Frames of rows with the columns of `features`, appended to an Arrow file and read back
    memory-mapped (`dataset`). Use as a context manager: an exception inside removes the file."""

    def __init__(self, features: datasets.Features) -> None:
        self.features = features
        if not _SWEPT:
            sweep_orphans()
        self.folder = Path(tempfile.mkdtemp(prefix=_folder_prefix(os.getpid())))
        if (made := _MADE.get()) is not None:
            made.append(self.folder)
        self.path = self.folder / "rows.arrow"
        self._sink = pa.OSFile(str(self.path), "wb")
        self._schema = features.arrow_schema
        self._writer = pa.ipc.new_stream(self._sink, self._schema)
        self.rows = 0

    def append(self, frame: pd.DataFrame) -> None:
        """Append the rows of `frame` (its columns of `features`)."""
        self.append_table(pa.Table.from_pandas(frame[list(self.features)], schema=self._schema, preserve_index=False))

    def append_table(self, table: pa.Table) -> None:
        """Append the rows of an Arrow table with the columns and types of `features`."""
        self._writer.write_table(table.replace_schema_metadata(self._schema.metadata))
        self.rows += len(table)

    def dataset(self) -> datasets.Dataset:
        """Every row appended, memory-mapped; the file is removed at exit."""
        self._close()
        atexit.register(shutil.rmtree, self.folder, True)
        return datasets.Dataset.from_file(str(self.path))

    def _close(self) -> None:
        if not self._sink.closed:
            self._writer.close()
            self._sink.close()

    def __enter__(self) -> RowFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            self._close()
            shutil.rmtree(self.folder, ignore_errors=True)


def take_rows(dataset: datasets.Dataset, positions: np.ndarray) -> datasets.Dataset:
    """The rows of `dataset` (memory-mapped, no index mapping) at `positions` (increasing), copied
    in order to their own `RowFile`, one record batch of the file at a time. A selection
    (`Dataset.select`) would keep an index per row and gather row by row whenever it is read: a
    frame of it is made of one Arrow chunk per row, which pandas and Great Expectations handle tens
    of times slower."""
    positions = np.asarray(positions, dtype=np.int64)
    if len(positions) and np.any(np.diff(positions) < 0):
        raise ValueError("take_rows: positions must be in increasing order")
    batches = dataset.data.table.to_batches()
    starts = np.cumsum([0] + [batch.num_rows for batch in batches])
    bounds = np.searchsorted(positions, starts)  # positions[bounds[i]:bounds[i + 1]] lie in batch i
    with RowFile(dataset.features) as rows:
        for index, batch in enumerate(batches):
            local = positions[bounds[index]:bounds[index + 1]] - starts[index]
            if len(local):
                rows.append_table(pa.Table.from_batches([batch.take(pa.array(local))]))
        return rows.dataset()


#: Rows read back into one frame at a time by `frames_of`.
FRAME_ROWS = 10_000


def frames_of(dataset: datasets.Dataset, columns: Sequence[str] | None = None,
              chunk_rows: int = FRAME_ROWS) -> Iterator[pd.DataFrame]:
    """The rows of `dataset` (only `columns` when given) as frames of at most `chunk_rows` rows."""
    part = (dataset.select_columns(list(columns)) if columns is not None else dataset).with_format("pandas")
    for start in range(0, len(part), chunk_rows):
        yield part[start:start + chunk_rows]


class KeyColumns:
    """Some columns of every row written, and each row's position, in a few bytes a row: the
    `coded` columns (label, group, file: few distinct values) as int32 codes into their distinct
    values (None included), the `numbers` (row numbers) as int64."""

    def __init__(self, coded: Sequence[str], numbers: Sequence[str] = ()) -> None:
        self.coded, self.numbers = list(coded), list(numbers)
        self._index: dict[str, dict] = {c: {} for c in self.coded}
        self._parts: dict[str, list[np.ndarray]] = {c: [] for c in [*self.coded, *self.numbers]}
        self.rows = 0
        self._started = False

    def append(self, frame: pd.DataFrame) -> None:
        """Add the rows of `frame`; a column the first frame lacks (e.g. a group column the files do
        not have) is left out of every row."""
        if not self._started:
            self.coded = [c for c in self.coded if c in frame.columns]
            self.numbers = [c for c in self.numbers if c in frame.columns]
            self._started = True
        for column in self.coded:
            index = self._index[column]
            codes = [index.setdefault(v, len(index)) for v in frame[column].tolist()]
            self._parts[column].append(np.asarray(codes, dtype=np.int32))
        for column in self.numbers:
            self._parts[column].append(frame[column].to_numpy(dtype=np.int64))
        self.rows += len(frame)

    def frame(self) -> pd.DataFrame:
        """The columns with their values back (coded ones as shared objects, one reference per row),
        and `POSITION`."""
        out: dict[str, pd.Series | np.ndarray] = {}
        for column in self.coded:
            values = np.empty(len(self._index[column]), dtype=object)
            for value, code in self._index[column].items():
                values[code] = value
            out[column] = pd.Series(values[self._joined(column, np.int32)], dtype=object)
        for column in self.numbers:
            out[column] = self._joined(column, np.int64)
        return pd.DataFrame({**out, POSITION: np.arange(self.rows, dtype=np.int64)})

    def _joined(self, column: str, dtype: type) -> np.ndarray:
        parts = self._parts[column]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
