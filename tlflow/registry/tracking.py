"""MLflow conventions of the project: store location, lineage tags, model logging and registry.

Embedded default: a SQLite store at `mlflow/mlflow.db` with artifacts under `mlflow/artifacts`;
`MLFLOW_TRACKING_URI` points everything at a server instead. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tlflow import paths
from tlflow.registry.lock import is_lock

DEFAULT_STORE_DIR = paths.MLFLOW_STORE_DIR
CHAMPION = "champion"
CHALLENGER = "challenger"
OPTIMIZED = "optimized"  # the champion's fastest variant within the accuracy bound (tlflow optimize)


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI`, or the embedded SQLite store under `mlflow/` of the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(DEFAULT_STORE_DIR / 'mlflow.db').resolve()}"


def ui_command(mlflow_bin: str = "mlflow") -> str:
    """How to look at this store in the MLflow UI: start one on a database, or open the server."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"{mlflow_bin} ui --backend-store-uri {uri} --port 5000"


def artifact_root() -> Path | None:
    """Artifacts of a local SQLite store live beside the database (`mlflow/artifacts` by default);
    a tracking server decides for itself (None)."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    return None


def configure() -> str:
    """Point MLflow at the store (creating a local store's folders) and quieten its logs."""
    uri = tracking_uri()
    root = artifact_root()
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return uri


def ensure_experiment(name: str) -> str:
    """Experiment id of `name`, created on first use (artifacts under mlflow/artifacts when embedded)."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = artifact_root()
    location = root.resolve().as_uri() if root is not None else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another run
        return mlflow.get_experiment_by_name(name).experiment_id


def data_version(dvc_file: str | Path = "data.dvc") -> str:
    """The dataset version: the md5 recorded in data.dvc ('untracked' when there is no such file)."""
    path = Path(dvc_file)
    if not path.is_file():
        return "untracked"
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "untracked")).removesuffix(".dir")


def git_commit() -> str:
    """Commit of the working tree ('+dirty' when it has uncommitted changes), or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def pip_requirements(onnx: bool = False) -> list[str]:
    """Pinned requirements stored with logged models (what loading them needs); `onnx` adds
    ONNX Runtime, which runs the ONNX variants (`tlflow.serving.optimized`)."""
    packages = ("transformers", "tokenizers", "torch", "safetensors") + (("onnxruntime",) if onnx else ())
    return [f"{pkg}=={version(pkg)}" for pkg in packages]


def log_transformers_model(model, tokenizer, task: str, input_example: list[str], name: str = "model") -> str:
    """Log a model + tokenizer with MLflow's transformers flavor (safetensors); returns its model URI."""
    transformers_logger = logging.getLogger("transformers")
    level = transformers_logger.level
    transformers_logger.setLevel(logging.ERROR)
    try:
        info = mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer},
            name=name,
            task=task,
            input_example=input_example,
            pip_requirements=pip_requirements(),
            save_pretrained=True,
        )
    finally:
        transformers_logger.setLevel(level)
    return info.model_uri


def register_version(model_uri: str, name: str, tags: dict[str, str]) -> ModelVersion:
    """Create a new version of registered model `name` (created on first use) from logged files."""
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered ..."
        return mlflow.register_model(model_uri, name, tags=tags)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str | None
    aliases: list[str]
    tags: dict[str, str]


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind `name@alias`, or None when the model or alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def list_versions(client: MlflowClient, name: str | None = None) -> list[RegisteredVersion]:
    """Registered versions (of one model or all) with their aliases, newest first within each model."""
    models = [client.get_registered_model(name)] if name else client.search_registered_models()
    models = [m for m in models if not is_lock(m.name)]
    rows: list[RegisteredVersion] = []
    for model in sorted(models, key=lambda m: m.name):
        aliases: dict[str, list[str]] = {}
        for alias, aliased in (model.aliases or {}).items():
            aliases.setdefault(str(aliased), []).append(alias)
        versions = client.search_model_versions(f"name = '{model.name}'")
        for mv in sorted(versions, key=lambda v: -int(v.version)):
            version = str(mv.version)
            rows.append(
                RegisteredVersion(model.name, version, mv.run_id, sorted(aliases.get(version, [])), dict(mv.tags or {}))
            )
    return rows
