"""The recorder of a registered version's predictions (`batch_predict`, `tlflow serve`).

Its window folder and privacy settings are the version's own, from the config logged with its
training run (`monitoring.windows_dir`, `privacy`); a version whose config cannot be read records
to the default folder and keeps no text.
"""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from tlflow import paths
from tlflow.monitoring.window import PredictionRecorder
from tlflow.registry import tracking
from tlflow.registry.registration import RegistryError, version_config

#: `tlflow serve` records served predictions when this is set: a folder, or 1/true for the version's own.
ENV_SERVE_RECORD = "TLFLOW_SERVE_RECORD"


def recorder_for(client: MlflowClient, name: str, version: str, alias: str, source: str,
                 root: str | Path | None = None) -> PredictionRecorder:
    """The recorder of `name` v`version` (reached as `alias`), writing to `root` or the folder of
    the version's config."""
    mv = client.get_model_version(name, str(version))
    try:
        cfg = version_config(client, mv)
        folder, privacy = cfg.monitoring.windows_dir, cfg.privacy
    except (RegistryError, OSError, ValueError):
        folder, privacy = str(paths.WINDOWS_DIR), None
    return PredictionRecorder(Path(root or folder), name, str(version), alias, source, privacy)


def serve_recorder(model_uri: str, setting: str | None) -> PredictionRecorder | None:
    """The recorder of the version `tlflow serve` serves (`models:/<name>@<alias>` or
    `models:/<name>/<version>`) when `setting` (`TLFLOW_SERVE_RECORD`) asks for one."""
    if not setting or setting.strip().lower() in ("0", "false", "no", "off"):
        return None
    name, _, ref = model_uri.removeprefix("models:/").partition("@")
    client = MlflowClient()
    if ref:
        version, alias = tracking.alias_version(client, name, ref), ref
        if version is None:
            raise RegistryError(f"model '{name}' has no alias '{ref}'")
        number = str(version.version)
    else:
        name, _, number = name.partition("/")
        alias = ""
    root = None if setting.strip().lower() in ("1", "true", "yes", "on") else setting
    return recorder_for(client, name, number, alias, "serve", root)
