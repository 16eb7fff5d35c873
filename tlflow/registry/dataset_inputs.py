"""The MLflow dataset inputs of a training run: one per split, as it was trained and evaluated on.

MLflow keeps one dataset entry per (experiment, name, digest) and reuses it for every run that
logs the same pair, with the row count and schema of the first. So the digest of a split is the
digest of what decides its rows (`tlflow.data.split_definition.split_digest`: the split's data
version, the task type, the split's own settings and subset): a run on 2,000 training rows logs
another `sst2-train` dataset than a run on all of them, while both log the same `sst2-test` when
their test splits are the same. The source names the files as the repository knows them, paths
relative to the working directory (the repository root) with their data version
(`RepositoryDataSource`), not paths on one machine.

The data version of a split is the dataset version (`data_md5`, the md5 in data.dvc) when DVC
covers the files read, else the content hash of the files that split is read from
(`tlflow.data.version`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import PandasDataset

from tlflow.config import PipelineConfig
from tlflow.data.spec import without_meta
from tlflow.data.split_definition import split_digest
from tlflow.data.version import DataVersion, split_files

#: Columns of the canonical splits that are bookkeeping, not data (`tlflow.data.readers`).
BOOKKEEPING = ("source_file", "source_row")


class RepositoryDataSource(DatasetSource):
    """Data files of the repository at one data version: the md5 in data.dvc (`data_tracked`:
    `dvc pull` at that version brings them back) or, for files DVC does not cover, their content hash."""

    def __init__(self, paths: list[str], data_md5: str, data_tracked: bool):
        self.paths, self.data_md5, self.data_tracked = list(paths), data_md5, data_tracked

    @staticmethod
    def _get_source_type() -> str:
        return "repository"

    def load(self) -> list[str]:
        """The local paths of the files (this checkout's data version)."""
        missing = [p for p in self.paths if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"{missing[0]}: not in this checkout (data version {self.data_md5})")
        return self.paths

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False  # built explicitly, never guessed from a string

    @classmethod
    def _resolve(cls, raw_source: Any) -> RepositoryDataSource:
        raise NotImplementedError("RepositoryDataSource is built from paths and a data version")

    def to_dict(self) -> dict[str, Any]:
        return {"paths": self.paths, "data_md5": self.data_md5, "data_tracked": self.data_tracked}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> RepositoryDataSource:
        return cls(source_dict["paths"], source_dict["data_md5"], bool(source_dict.get("data_tracked")))


def repository_path(path: str) -> str:
    """`path` relative to the working directory (the repository root) when it lies inside it;
    otherwise as given (a file outside the repository has no other name)."""
    given = Path(path)
    if not given.is_absolute():
        return given.as_posix()
    try:
        return given.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return given.as_posix()


def split_version(version: DataVersion, split: str, data_md5: str) -> str:
    """The data version of `split`: `data_md5` when DVC covers the files, else their content hash."""
    return data_md5 if version.tracked else version.splits.get(split, data_md5)


#: Rows of a split the logged dataset's schema is inferred from (the split itself is not loaded).
SCHEMA_ROWS = 10_000


class SplitDataset(PandasDataset):
    """A split as an MLflow dataset without holding its rows: the schema is inferred from its first
    `SCHEMA_ROWS` rows, the profile counts every row, and the digest is given."""

    def __init__(self, split: datasets.Dataset, source: DatasetSource, targets: str | None, name: str,
                 digest: str) -> None:
        head = split.select(range(min(SCHEMA_ROWS, len(split)))).to_pandas()
        super().__init__(head, source=source, targets=targets if targets in head.columns else None, name=name,
                         digest=digest)
        self._rows, self._columns = len(split), len(split.column_names)

    @property
    def profile(self) -> dict[str, int]:
        return {"num_rows": self._rows, "num_elements": self._rows * self._columns}


def dataset_inputs(cfg: PipelineConfig, splits: datasets.DatasetDict, data_md5: str, version: DataVersion,
                   target: str | None) -> list[tuple[PandasDataset, str]]:
    """(dataset, context) per split, ready for `mlflow.log_input`: the rows as trained or evaluated
    on (without slice metadata and bookkeeping columns), `target` the label column (if any)."""
    files = split_files(cfg.data)
    out = []
    for split, ds in splits.items():
        rows = without_meta(ds)
        rows = rows.remove_columns([c for c in BOOKKEEPING if c in rows.column_names])
        md5 = split_version(version, split, data_md5)
        source = RepositoryDataSource([repository_path(f) for f in files[split]], md5, version.tracked)
        out.append((SplitDataset(rows, source, target, f"{cfg.name}-{split}",
                                 split_digest(cfg.data, split, cfg.task.type, md5)), split))
    return out
