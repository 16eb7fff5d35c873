"""The lineage of a run or model version: the data, config and code it was trained on, and by whom.

One value object, built once from the config and the data (`Lineage.of`) and written as tags of
the MLflow run and of the model version under exactly its field names (`tags`, read back by
`from_tags`). What it decides:

- skip-unchanged (`tlflow.registry.reuse`): a version whose `REUSE_FIELDS` all match stands for a
  new run (`reuse_key`);
- retraining (`tlflow.registry.retraining`): due when a `RETRAINING_FIELDS` value differs from the
  champion's (`differences`);
- the ledger (`tlflow.registry.ledger`) records data version, commit, flow run and evaluation
  split of every decision;
- an optimized variant carries its source's lineage (`for_variant`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tlflow.config import PipelineConfig
from tlflow.data.cache import file_digest
from tlflow.data.split_definition import split_digest
from tlflow.data.version import data_version
from tlflow.registry import tracking

#: The packages whose source makes up the pipeline's code (`code_md5`).
CODE_PACKAGES = ("tlflow", "tasks", "flows")


@dataclass(frozen=True)
class Lineage:
    """Tag values of a run or version; an empty field is unknown and written as no tag."""

    data_md5: str = ""  # the dataset version: the md5 in data.dvc, or the files' content hash outside DVC
    data_files_md5: str = ""  # content of the config's raw files (catches data edited in place)
    config_hash: str = ""  # `PipelineConfig.hash()`
    code_md5: str = ""  # the pipeline's source (`code_digest`)
    git_commit: str = ""
    prefect_flow_run_id: str = ""  # filled by the caller that knows the flow run
    encoder_version: str = ""  # the pretrained encoder's version, when one was pretrained
    task_type: str = ""
    eval_split: str = ""  # the frozen evaluation split: data + how the test split is cut
    pii_policy: str = ""  # `privacy.pii` (off, report, redact, fail): what was done to personal data
    pii_counts: str = ""  # digest of the PII scan's counts (set by validate-data; empty when off)
    data_tracked: str = ""  # 'true' when DVC's record covers every file read, 'false' when data_md5 is a content hash

    @classmethod
    def of(cls, cfg: PipelineConfig, data_md5: str | None = None, *, prefect_flow_run_id: str = "",
           encoder_version: str = "") -> Lineage:
        """What a run of `cfg` trains on now (`data_md5` default: `data_version` of its files: the
        version in data.dvc, or their content hash when DVC does not cover them)."""
        version = data_version(cfg.data)
        return cls(
            data_md5=version.md5 if data_md5 is None else data_md5,
            data_tracked=version.tags()["data_tracked"],
            data_files_md5=files_digest(cfg),
            config_hash=cfg.hash(),
            code_md5=code_digest(),
            git_commit=tracking.git_commit(),
            prefect_flow_run_id=prefect_flow_run_id,
            encoder_version=encoder_version,
            task_type=cfg.task.type or "",
            eval_split=split_digest(cfg.data, "test", cfg.task.type),  # what decides the test rows, nothing else
            pii_policy=cfg.privacy.pii,
        )

    @classmethod
    def here(cls, prefect_flow_run_id: str = "") -> Lineage:
        """The checkout a registry command runs in (no config of its own): data version and commit."""
        return cls(data_md5=tracking.data_version(), git_commit=tracking.git_commit(),
                   prefect_flow_run_id=prefect_flow_run_id)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | None) -> Lineage:
        """The lineage written as `tags` (other tags are ignored, missing ones are empty)."""
        tags = tags or {}
        return cls(**{name: str(tags.get(name) or "") for name in FIELDS})

    def tags(self) -> dict[str, str]:
        """The known fields as tags, under their field names."""
        return {name: value for name in FIELDS if (value := getattr(self, name))}

    def replace(self, **changes: str) -> Lineage:
        return dataclasses.replace(self, **changes)

    def for_variant(self) -> Lineage:
        """What an optimized variant of a version carries from it: all but `code_md5` (the
        variant was built by other code than its source; variants are never reused anyway)."""
        return self.replace(code_md5="")

    def reuse_key(self) -> dict[str, str] | None:
        """The `REUSE_FIELDS` that must all match for a registered version to stand for this run;
        None when one is unknown (nothing can be reused then)."""
        key = {name: getattr(self, name) for name in REUSE_FIELDS}
        return key if all(key.values()) else None

    def differences(self, before: Lineage) -> tuple[str, ...]:
        """One line per `RETRAINING_FIELDS` value that changed from `before` (e.g. the champion's)."""
        return tuple(
            f"{label} changed ({getattr(before, name)[:8] or 'unknown'} -> {getattr(self, name)[:8]})"
            for name, label in RETRAINING_FIELDS.items()
            if getattr(self, name) != getattr(before, name)
        )


FIELDS = tuple(f.name for f in dataclasses.fields(Lineage))

#: What must all match for a registered version to stand for a new run (`tlflow.registry.reuse`).
REUSE_FIELDS = ("data_md5", "data_files_md5", "config_hash", "code_md5", "pii_policy")

#: What makes retraining due when it changed since the champion was trained, with how it is named.
RETRAINING_FIELDS = {"data_md5": "data version (data.dvc)", "data_files_md5": "data files", "config_hash": "config"}


def files_digest(cfg: PipelineConfig) -> str:
    """Content digest of the raw files ('unreadable' when one cannot be read: a missing file is
    reported by validation, not here)."""
    try:
        return file_digest(cfg.data.paths())
    except OSError:
        return "unreadable"


def code_digest() -> str:
    """md5 of the pipeline's Python source (`tlflow`, `tasks`, `flows`): file names and contents,
    so an edit changes it whether or not it is committed. The packages are located, not imported."""
    digest = hashlib.md5()
    for package in CODE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
