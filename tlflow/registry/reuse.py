"""Skipped work: a training run whose inputs match a registered version is not repeated.

Fine-tuning is deterministic for a given data version, raw files, config and code, so running the
training pipeline again on unchanged inputs would only produce the same model and the same
decision again. Every version carries the lineage tags `data_md5`, `data_files_md5`,
`config_hash` and `code_md5` (this package's source); when all four match a completely
registered version (not an optimized variant), the pipeline reports that version instead of
training (`tlflow run --force` trains anyway).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tlflow.registry.registration import COMPLETE, VARIANT_TAG

#: The tags that must all match for a version to stand for a new run.
REUSE_KEYS = ("data_md5", "data_files_md5", "config_hash", "code_md5")

#: The packages whose source makes up the pipeline's code.
CODE_PACKAGES = ("tlflow", "tasks", "flows")


def code_digest() -> str:
    """md5 of the pipeline's Python source (`tlflow`, `tasks`, `flows`): file names and contents,
    so an edit changes it whether or not it is committed."""
    digest = hashlib.md5()
    for package in CODE_PACKAGES:
        root = Path(__import__(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def matching_version(client: MlflowClient, name: str, tags: dict[str, str]) -> ModelVersion | None:
    """The newest completely registered version of `name` (not an optimized variant) whose
    `REUSE_KEYS` tags all equal `tags`; None when there is none or the model does not exist."""
    wanted = {key: tags.get(key) for key in REUSE_KEYS}
    if not all(wanted.values()):
        return None
    try:
        versions = client.search_model_versions(f"name = '{name}' and tags.config_hash = '{wanted['config_hash']}'")
    except MlflowException:
        return None
    for mv in sorted(versions, key=lambda v: -int(v.version)):
        own = mv.tags or {}
        if own.get("registration") == COMPLETE and not own.get(VARIANT_TAG) and all(
            own.get(key) == value for key, value in wanted.items()
        ):
            return mv
    return None
