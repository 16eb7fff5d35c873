"""Candidate base models: packaged aliases and local folders as they are, and encoders of this
project's pretraining stage named `<name>-encoder@<alias>` (e.g. `sst2-encoder@latest-pretrained`),
downloaded once from the MLflow registry into a plain Hugging Face folder under the project cache."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tlflow import paths
from tlflow.config import ConfigError
from tlflow.data.atomic import atomic_dir

#: Where registered encoders are unpacked (`<name>-v<version>/`).
ENCODERS_DIR = paths.BASES_DIR / "registered"


def is_registered(candidate: str) -> bool:
    """Whether `candidate` names a registered encoder (`name@alias`) rather than an alias or folder."""
    return "@" in candidate and not Path(candidate).exists()


def _folder_with(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((p.parent for name in names for p in sorted(root.rglob(name))), None)


def resolve_candidate(candidate: str, client: MlflowClient | None = None) -> str:
    """What `model.base` is for `candidate`: itself, or the folder of the registered encoder it
    names. ConfigError (one line) when the model or alias does not exist."""
    if not is_registered(candidate):
        return candidate
    name, alias = candidate.rsplit("@", 1)
    client = client or MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        raise ConfigError(f"select.candidates: '{candidate}': {str(err).splitlines()[0]}") from None
    target = ENCODERS_DIR / f"{name}-v{version.version}"
    if (target / "config.json").is_file():
        return str(target)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}", dst_path=tmp)
        weights = _folder_with(Path(tmp), ("config.json",))
        tokenizer = _folder_with(Path(tmp), ("tokenizer.json", "tokenizer_config.json"))
        if weights is None or tokenizer is None:
            raise ConfigError(f"select.candidates: '{candidate}' (v{version.version}) holds no Hugging Face weights "
                              "and tokenizer")
        with atomic_dir(target) as out:
            for folder in (tokenizer, weights):
                shutil.copytree(folder, out, dirs_exist_ok=True)
    return str(target)
