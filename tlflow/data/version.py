"""The version of the data a config reads.

Files that DVC's record covers (``data.dvc`` at the project root tracks ``data/``) have DVC's md5
as their version: the dataset version of every run and model (`data_md5`). A config may read files
elsewhere (``paths.data_roots``), or files in ``data/`` added or edited since the last ``dvc add``;
DVC's md5 says nothing about those, so their version is the content hash of the files read (one
per split too), and they are marked ``data_tracked=false``. Where the DVC cache holds the folder's
manifest, each file read must be listed in it with the same md5; without it, lying in the folder
counts as covered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tlflow.config import DataConfig
from tlflow.data.cache import file_digest

#: The version when there is none to give: no data.dvc covers the files and they cannot be read.
UNTRACKED = "untracked"


@dataclass(frozen=True)
class DataVersion:
    """`md5`: DVC's md5 when `tracked` (every file read lies in the DVC folder), else the content
    hash of the files read; `splits`: split -> content hash of the files it reads (untracked only)."""

    md5: str
    tracked: bool
    splits: dict[str, str] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """The lineage tags: ``data_md5`` and ``data_tracked`` ('true'/'false')."""
        return {"data_md5": self.md5, "data_tracked": str(self.tracked).lower()}

    def line(self) -> str:
        """One line for reports, e.g. 'data version 27320af9 (data.dvc)'."""
        if self.tracked:
            return f"data version {self.md5[:8]} (data.dvc)"
        differ = len(set(self.splits.values())) > 1  # splits of one file share its hash: said once
        per_split = ", ".join(f"{split} {md5[:8]}" for split, md5 in self.splits.items()) if differ else ""
        return (f"data version {self.md5[:8]}: content hash of the files read, not DVC's (data_tracked=false: "
                f"outside the DVC folder){'; ' + per_split if per_split else ''}")


def dvc_output(dvc_file: str | Path = "data.dvc") -> tuple[str, Path] | None:
    """(md5, resolved folder) of the output a ``.dvc`` file tracks; None without the file."""
    path = Path(dvc_file)
    if not path.is_file():
        return None
    out = ((yaml.safe_load(path.read_text()) or {}).get("outs") or [{}])[0]
    md5 = str(out.get("md5", UNTRACKED)).removesuffix(".dir")
    return md5, (path.parent / str(out.get("path", "data"))).resolve()


def split_files(cfg: DataConfig) -> dict[str, list[str]]:
    """The raw files each split is read from (a carved validation split: the training file; a
    split cut from one file or from the class files: all of them)."""
    if cfg.files:
        return {split: [cfg.files.get(split) or cfg.files["train"]] for split in ("train", "validation", "test")}
    return {split: cfg.paths() for split in ("train", "validation", "test")}


def data_version(cfg: DataConfig, dvc_file: str | Path = "data.dvc") -> DataVersion:
    """The version of the files `cfg` reads: DVC's md5 when the DVC folder holds all of them, else
    their content hash (`UNTRACKED` when one cannot be read: validation names it)."""
    tracked = dvc_output(dvc_file)
    if tracked is not None and _covered(cfg.paths(), tracked[1], _manifest(Path(dvc_file), tracked[0])):
        return DataVersion(tracked[0], True)
    try:
        per_split = {split: file_digest(paths) for split, paths in split_files(cfg).items()}
        return DataVersion(file_digest(cfg.paths()), False, per_split)
    except OSError:
        return DataVersion(UNTRACKED, False)


def _manifest(dvc_file: Path, md5: str) -> dict[str, str] | None:
    """relpath -> md5 of every file in the tracked folder, from the DVC cache (None when absent)."""
    import json

    path = dvc_file.parent / ".dvc" / "cache" / "files" / "md5" / md5[:2] / f"{md5[2:]}.dir"
    try:
        return {e["relpath"]: e["md5"] for e in json.loads(path.read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _covered(paths: list[str], folder: Path, manifest: dict[str, str] | None) -> bool:
    """Whether DVC's record covers every file: inside `folder` and, with a manifest, listed in it
    with the md5 of its content."""
    for path in paths:
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(folder):
            return False
        if manifest is not None:
            try:
                if manifest.get(resolved.relative_to(folder).as_posix()) != file_digest([str(resolved)]):
                    return False
            except OSError:
                return False
    return True
