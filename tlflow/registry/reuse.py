"""Skipped work: a training run whose inputs match a registered version is not repeated.

Fine-tuning is deterministic for a given data version, raw files, config and code, so running the
training pipeline again on unchanged inputs would only produce the same model and the same
decision again. Every version carries the lineage tags (`tlflow.registry.lineage`) `data_md5`,
`data_files_md5`, `config_hash` and `code_md5` (the pipeline's source); when all four match a
completely registered version (not an optimized variant), the pipeline reports that version
instead of training (`tlflow run --force` trains anyway).
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tlflow.registry.lineage import Lineage
from tlflow.registry.registration import VARIANT_TAG
from tlflow.registry.transaction import COMPLETE, REGISTRATION_TAG


def matching_version(client: MlflowClient, name: str, lineage: Lineage) -> ModelVersion | None:
    """The newest completely registered version of `name` (not an optimized variant) whose
    lineage has the same `reuse_key` as `lineage`; None when there is none (or the key is not
    fully known, or the model does not exist)."""
    wanted = lineage.reuse_key()
    if wanted is None:
        return None
    try:
        versions = client.search_model_versions(f"name = '{name}' and tags.config_hash = '{wanted['config_hash']}'")
    except MlflowException:
        return None
    for mv in sorted(versions, key=lambda v: -int(v.version)):
        own = mv.tags or {}
        if (own.get(REGISTRATION_TAG) == COMPLETE and not own.get(VARIANT_TAG)
                and Lineage.from_tags(own).reuse_key() == wanted):
            return mv
    return None
