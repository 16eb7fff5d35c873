"""The model code stored with a logged `TaskModel`, and the sha256 that vouches for it.

A `TaskModel` is logged as code (MLflow "models from code"): `entry.py` is copied into the model's
artifacts and whoever loads the model with `mlflow.pyfunc.load_model` or `mlflow models serve`
runs that copy. Anyone who can write to the artifact store could therefore make every such loader
run their code. The trust boundary of tlflow:

- tlflow's own loaders never run stored code: the registry re-scores a version from its weights and
  `task.json` (`tlflow.registry.champion`), and `tlflow serve` / `tlflow predict` build the
  installed `TaskModel` from the model's data files (`tlflow.serving.model_loading`);
- at logging time the sha256 of the stored code is recorded as the run tag `serving_code_sha256`,
  in the tracking store (not the artifact store); `tlflow serve` and `tlflow predict` refuse a
  version whose stored code no longer matches it, so a tampered version is found, not served;
- a third party that loads the model with MLflow runs the stored code by design: check the file
  against the tag first (`verify_stored_code`), or load it with tlflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.models import Model
from mlflow.models.model import MODEL_CODE_PATH

from tlflow.errors import TlflowError

#: Run (and model version) tag holding the sha256 of the model code stored with a logged `TaskModel`.
CODE_DIGEST_TAG = "serving_code_sha256"


class StoredCodeError(TlflowError, ValueError):
    """The model code stored with a version does not match the digest recorded when it was logged."""


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stored_code_file(model_dir: Path, meta: Model) -> Path | None:
    """The model code file inside a downloaded model folder (where MLflow's loader looks for it:
    the base name of the pyfunc flavor's `model_code_path`), or None for a model without one."""
    conf = meta.flavors.get("python_function") or {}
    code = conf.get(MODEL_CODE_PATH)
    return Path(model_dir) / Path(str(code)).name if code else None


@dataclass(frozen=True)
class RecordedCode:
    uri: str  # the model URI, an alias resolved to its version (so what is checked is what loads)
    label: str  # what the model is, in words, for error messages
    digest: str | None  # the sha256 recorded at logging time, None when there is none


def recorded_code(client: MlflowClient, model_uri: str) -> RecordedCode:
    """The digest recorded for a registry URI (`models:/NAME/VERSION`, `models:/NAME@ALIAS`): the
    version's tag `serving_code_sha256`, else its run's. Other URIs have none on record."""
    ref = model_uri[len("models:/"):].rstrip("/") if model_uri.startswith("models:/") else ""
    if not ref or ref.startswith("m-") or ("@" not in ref and "/" not in ref):
        return RecordedCode(model_uri, model_uri, None)
    if "@" in ref:
        mv = client.get_model_version_by_alias(*ref.split("@", 1))
    else:
        mv = client.get_model_version(*ref.rsplit("/", 1))
    digest = (mv.tags or {}).get(CODE_DIGEST_TAG)
    if digest is None and mv.run_id:
        digest = client.get_run(mv.run_id).data.tags.get(CODE_DIGEST_TAG)
    return RecordedCode(f"models:/{mv.name}/{mv.version}", f"model '{mv.name}' version {mv.version}", digest)


def verify_stored_code(model_dir: Path, meta: Model, label: str, expected: str | None) -> None:
    """Raise `StoredCodeError` (one line naming `label`) when the code stored in `model_dir` does
    not hash to `expected`. Nothing to check when no digest was recorded (a version logged before
    tlflow recorded one); tlflow's loaders do not run that code either way."""
    if expected is None:
        return
    code = stored_code_file(model_dir, meta)
    if code is None or not code.is_file():
        raise StoredCodeError(f"{label}: its stored model code is missing (expected sha256 {expected[:12]}...)")
    actual = sha256_file(code)
    if actual != expected:
        raise StoredCodeError(f"{label}: stored model code {code.name} was changed after logging "
                              f"(sha256 {actual[:12]}... != recorded {expected[:12]}...): refusing to load it")
