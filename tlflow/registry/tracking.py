"""MLflow conventions of the project: store location, lineage tags, model logging and registry.

Embedded default: a SQLite store at `mlflow/mlflow.db` with artifacts under `mlflow/artifacts`;
`MLFLOW_TRACKING_URI` points everything at a server instead: `configure` first checks that an MLflow
server answers there (`check_server`) and bounds MLflow's HTTP retries (`HTTP_BOUNDS`), so a wrong
or dead server is a one-line error, not a traceback after minutes of retries. Nothing here runs at
import time.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tlflow import paths
from tlflow.errors import TlflowError
from tlflow.registry.lock import is_lock

DEFAULT_STORE_DIR = paths.MLFLOW_STORE_DIR
CHAMPION = "champion"
CHALLENGER = "challenger"
OPTIMIZED = "optimized"  # the champion's fastest variant within the accuracy bound (tlflow optimize)


#: MLflow's HTTP retry settings unless the environment sets them: its defaults (7 retries, backoff
#: factor 2, 120 s timeout) retry a dead server for minutes; these give up within about a minute
#: (3 tries of at most 15 s, 1 + 2 s apart, when a server hangs; seconds when it refuses).
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_VERSION = re.compile(r"\d+\.\d+(\.\d+)?(\S*)")
_CHECKED: set[str] = set()


class TrackingServerError(TlflowError, RuntimeError):
    """`MLFLOW_TRACKING_URI` does not point at an answering MLflow tracking server."""


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
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_BOUNDS.items():
            os.environ.setdefault(key, value)
        check_server(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return uri


def _answer(uri: str, endpoint: str) -> tuple[int, str, str]:
    """(status, Server header, body) of one GET, without retries; MLflow's own client, so the
    environment's credentials and TLS settings apply."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(get_default_host_creds(uri), endpoint, "GET", max_retries=0, backoff_factor=0,
                            timeout=10, raise_on_status=False)
    return response.status_code, response.headers.get("Server", "unknown server"), response.text.strip()


def check_server(uri: str) -> str:
    """The MLflow version of the tracking server at `uri` (checked once per process): its `/version`
    answers a version string, or else the experiments API its JSON. TrackingServerError naming the
    URI and what answered otherwise: nothing, or a server that is not MLflow."""
    uri = uri.rstrip("/")
    if uri in _CHECKED:
        return "checked"
    where = f"MLFLOW_TRACKING_URI={uri}"
    try:
        status, server, body = _answer(uri, "/version")
        if status == 200 and _VERSION.fullmatch(body):
            _CHECKED.add(uri)
            return body
        api_status, _, api_body = _answer(uri, "/api/2.0/mlflow/experiments/search?max_results=1")
    except MlflowException as err:
        raise TrackingServerError(f"{where}: no MLflow tracking server answers ({_first_line(err)})") from None
    if api_status == 200 and _experiments_json(api_body):
        _CHECKED.add(uri)
        return "unknown version"
    if status in (401, 403):
        raise TrackingServerError(f"{where}: the server refused the request ({status}): set MLFLOW_TRACKING_"
                                  "USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN")
    raise TrackingServerError(f"{where} is not an MLflow tracking server: {server} answered GET /version with "
                              f"{status} {' '.join(body.split())[:60]!r}")


def _experiments_json(body: str) -> bool:
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and set(answer) <= {"experiments", "next_page_token"}


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


def ensure_experiment(name: str, description: str | None = None) -> str:
    """Experiment id of `name`, created on first use (artifacts under mlflow/artifacts when embedded),
    of the MLflow UI's "Machine learning" type; `description` (`tlflow.registry.descriptions`) is
    given to it when it has none yet (as is the type)."""
    from tlflow.registry.descriptions import KIND, KIND_TAG, NOTE_TAG

    wanted = {KIND_TAG: KIND, **({NOTE_TAG: description} if description else {})}
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        root = artifact_root()
        location = root.resolve().as_uri() if root is not None else None
        try:
            return mlflow.create_experiment(name, artifact_location=location, tags=wanted)
        except MlflowException:  # created concurrently by another run
            experiment = mlflow.get_experiment_by_name(name)
    for key, value in wanted.items():
        if not (experiment.tags or {}).get(key):
            MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def data_version(dvc_file: str | Path = "data.dvc") -> str:
    """The dataset version of the checkout: the md5 recorded in data.dvc ('untracked' when there is
    no such file). A config's data may lie elsewhere: `tlflow.data.version.data_version` is its version."""
    from tlflow.data.version import UNTRACKED, dvc_output

    tracked = dvc_output(dvc_file)
    return tracked[0] if tracked is not None else UNTRACKED


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
