"""Where tlflow keeps its local state, relative to the working directory: the one module that names
these folders. Nothing here touches the disk; each folder is made by the code that writes into it.

- `.cache/tlflow/`: derived, re-creatable files (tokenized features, checkpoints, pretraining
  artefacts, validation reports, local server state); safe to delete.
- `mlflow/`: the embedded MLflow store (`mlflow.db` and `artifacts/`) when MLFLOW_TRACKING_URI is unset.
- `monitoring/windows/`: the prediction windows that drift monitoring reads (`tlflow.monitoring.window`),
  one folder per model; not re-creatable, but only monitoring reads them.
- `.prefect/`: the Prefect home of `tlflow` commands and `tlflow servers up` (PREFECT_HOME default).
"""

from __future__ import annotations

from pathlib import Path

#: The DVC-tracked datasets: the default (and usually only) root a config may read data from
#: (`paths.data_roots`, `tlflow.config.confinement`).
DATA_DIR = Path("data")

#: Root of every derived, re-creatable file.
CACHE_DIR = Path(".cache/tlflow")
#: Tokenized fine-tuning features, keyed by data, tokenizer and settings.
TOKENIZED_DIR = CACHE_DIR / "tokenized"
#: Fine-tuning checkpoints (resumable), per config name and key.
CHECKPOINTS_DIR = CACHE_DIR / "checkpoints"
#: Base checkpoints converted from packaged files (e.g. GGUF), keyed by the source file's md5.
BASES_DIR = CACHE_DIR / "bases"
#: Pretraining artefacts: tokenizers, examples, checkpoints and encoders.
PRETRAINING_DIR = CACHE_DIR / "pretraining"
#: HTML data-validation reports of the latest run of each experiment (also logged to MLflow).
REPORTS_DIR = CACHE_DIR / "reports"
#: Process ids and logs of the servers started by `tlflow servers up`.
SERVERS_DIR = CACHE_DIR / "servers"

#: The embedded MLflow store: SQLite database and artifacts.
MLFLOW_STORE_DIR = Path("mlflow")
MLFLOW_DB = MLFLOW_STORE_DIR / "mlflow.db"
MLFLOW_ARTIFACTS_DIR = MLFLOW_STORE_DIR / "artifacts"

#: Prediction windows (descriptors of each prediction), one folder per model (`monitoring.windows_dir`).
WINDOWS_DIR = Path("monitoring") / "windows"

#: PREFECT_HOME of the command line and the local Prefect server, unless set.
PREFECT_HOME = Path(".prefect")
