"""Shared fixtures: offline environment, an isolated project folder, a fresh MLflow store,
and one temporary Prefect server for the whole session (`prefect_test_harness`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tlflow.config import PipelineConfig, load_config
from tlflow.runtime import apply_defaults

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

apply_defaults()


def pytest_collection_modifyitems(items):
    if not (DATA / "README.md").is_file():
        skip = pytest.mark.skip(reason="data/ is missing: run `dvc pull` (make data)")
        for item in items:
            if "needs_data" in item.keywords:
                item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_data: reads the DVC-tracked datasets in data/")
    config.addinivalue_line("markers", "flow: runs a Prefect flow against a temporary Prefect server")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A throw-away project folder: `data/` linked to the real datasets, `data.dvc` copied, its own
    MLflow store, caches and reports. Tests run inside it, so nothing touches the checkout."""
    (tmp_path / "data").symlink_to(DATA, target_is_directory=True)
    shutil.copy(REPO / "data.dvc", tmp_path / "data.dvc")
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    return tmp_path


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (own database) for all flow tests of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def _tiny_config(**overrides: str) -> PipelineConfig:
    """SST-2 with a 2-layer, hidden-64 BERT initialised at random, a few hundred real rows, one epoch."""
    sets = {
        "name": "sst2-tiny",
        "model.init": "random",
        "model.num_layers": "2",
        "model.hidden_size": "64",
        "model.num_heads": "2",
        "model.intermediate_size": "128",
        "model.max_length": "64",
        "data.max_train_rows": "400",
        "data.max_eval_rows": "200",
        "finetune.learning_rate": "1e-3",
        "finetune.batch_size": "32",
        "finetune.checkpoint_every_steps": "5",
        "finetune.log_every_steps": "2",
        "evaluate.misclassified_examples": "5",
    }
    sets.update(overrides)
    return load_config(REPO / "configs" / "sst2.yaml", [f"{k}={v}" for k, v in sets.items()])


@pytest.fixture
def tiny_config():
    """Factory of tiny configs: `tiny_config(**{"finetune.seed": "7"})`."""
    return _tiny_config


