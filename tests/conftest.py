"""Shared fixtures: offline environment, an isolated project folder, a fresh MLflow store,
and one temporary Prefect server for the whole session (`prefect_test_harness`).

Tiers (TIERS below, `--strict-markers`): every test module sets `pytestmark = [pytest.mark.<tier>]`;
`make test-fast` runs `unit or integration`, `make test` runs everything.

`make test` runs the modules on one pytest-xdist worker per core (`-n auto --dist loadfile`: a
module's tests, and its module-scoped fixtures, stay on one worker). Each worker then runs torch on
one thread (unless OMP_NUM_THREADS says otherwise), and modules with a `slow` test are handed out
first, so that the long ones do not end the run on one worker while the other waits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # set before torch is imported: it reads it once
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from tlflow.config import PipelineConfig, load_config  # noqa: E402
from tlflow.runtime import apply_defaults, freeze_imported  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

apply_defaults()


TIERS = {
    "unit": "pure functions on tiny in-memory or tests/assets/ inputs: no MLflow store, no Prefect, no data/",
    "integration": "a real MLflow store (sqlite in tmp) or the datasets in data/, no Prefect",
    "flow": "Prefect flows under the temporary Prefect server (or real local servers)",
    "slow": "several minutes, or a full pipeline run; left out of `make test-fast`",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_data: reads the DVC-tracked datasets in data/ (skipped without them)")
    for name, meaning in TIERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_collection_finish(session):
    """The libraries the tests import (torch, transformers, MLflow, Prefect, Great Expectations) stay
    to the end of the session: frozen, the cyclic collector stops scanning them at every full
    collection and at the process's exit (as the command line does, `tlflow.runtime`)."""
    freeze_imported()


def pytest_collection_modifyitems(config, items):
    """Every test has a tier (a mark on the test adds to its module's: a unit module may hold one
    `integration` or `slow` test); one that uses the temporary Prefect server is `flow` or `slow`;
    `needs_data` tests are skipped when data/ has not been pulled. `make test-fast` selects
    `(unit or integration) and not (flow or slow)`."""
    untiered, wrong = [], []
    for item in items:
        tiers = [m.name for m in item.iter_markers() if m.name in TIERS]
        if not tiers:
            untiered.append(item.nodeid)
            continue
        if "prefect_server" in getattr(item, "fixturenames", ()) and not {"flow", "slow"} & set(tiers):
            wrong.append(item.nodeid)
    if untiered or wrong:
        lines = [f"{n}: no tier marker" for n in untiered] + [f"{n}: uses prefect_server, so is `flow` (or `slow`)" for n in wrong]
        raise pytest.UsageError(
            "every test needs one tier (`pytestmark = [pytest.mark.unit]`; see TIERS in tests/conftest.py):\n  "
            + "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
        )
    slow_modules = {item.path for item in items if "slow" in item.keywords}
    items.sort(key=lambda item: item.path not in slow_modules)  # stable: modules stay whole, in order
    if not (DATA / "README.md").is_file():
        skip = pytest.mark.skip(reason="data/ is missing: run `dvc pull` (make data)")
        for item in items:
            if "needs_data" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def empty_stores(tmp_path_factory) -> Path:
    """An empty MLflow store and an empty Prefect database, each created once per test process by
    the library itself (all its schema migrations: 2-3 s for MLflow, about 9 s for Prefect), for
    projects to start from a copy of (`_enter_project`, `prefect_home`)."""
    import subprocess
    import sys

    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("empty-stores")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    for store in (SqlAlchemyStore(uri, str(folder / "mlruns")), RegistryStore(uri)):
        store.engine.dispose()
    env = {**os.environ, "PREFECT_HOME": str(folder / "prefect")}
    env.pop("PREFECT_API_URL", None)
    upgraded = subprocess.run([str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade", "-y"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert upgraded.returncode == 0, upgraded.stdout[-2000:] + upgraded.stderr[-2000:]
    return folder


def _enter_project(root: Path, monkeypatch: pytest.MonkeyPatch, stores: Path) -> Path:
    """The project folder, its MLflow store a copy of the empty one: the same tables and `Default`
    experiment (its artifacts under this folder's `mlruns/`, as MLflow makes it on first use here)."""
    import sqlite3

    (root / "data").symlink_to(DATA, target_is_directory=True)
    shutil.copy(REPO / "data.dvc", root / "data.dvc")
    shutil.copytree(REPO / "configs", root / "configs")
    (root / "mlflow").mkdir()
    db = shutil.copy(stores / "mlflow.db", root / "mlflow" / "mlflow.db")
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                           (str(root.resolve() / "mlruns" / "0"),))
    connection.close()
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    return root


@pytest.fixture
def project(tmp_path, monkeypatch, empty_stores) -> Path:
    """A throw-away project folder: `data/` linked to the real datasets, `data.dvc` copied, its own
    MLflow store, caches and reports. Tests run inside it, so nothing touches the checkout."""
    return _enter_project(tmp_path, monkeypatch, empty_stores)


@pytest.fixture(scope="module")
def module_project(tmp_path_factory, empty_stores) -> Path:
    """Like `project`, but shared by the tests of one module: what they need trained (a tiny
    champion, say) is trained once. For tests that only read it or must leave it unchanged."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _enter_project(tmp_path_factory.mktemp("project"), monkeypatch, empty_stores)


@pytest.fixture
def prefect_home(project, empty_stores) -> Path:
    """`PREFECT_HOME` for a command run in `project` with a temporary Prefect server of its own: its
    database a copy of the empty one, so the server starts without migrating a new database."""
    home = project / ".prefect"
    home.mkdir()
    shutil.copy(empty_stores / "prefect" / "prefect.db", home / "prefect.db")
    return home


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (own database) for all flow tests of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def _tiny_config(**overrides: str) -> PipelineConfig:
    """SST-2 with a 2-layer, hidden-64 BERT initialised at random, a few hundred real rows, one epoch
    (exactly: no `finetune.min_steps`), judged by the gate's checks but not against the trivial
    baseline (these barely trained models stand for real ones; tests of that check turn it on)."""
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
        "finetune.min_steps": "0",
        "promote.trivial_baseline": "false",
    }
    sets.update(overrides)
    return load_config(REPO / "configs" / "sst2.yaml", [f"{k}={v}" for k, v in sets.items()])


@pytest.fixture(scope="session")
def tiny_config():
    """Factory of tiny configs: `tiny_config(**{"finetune.seed": "7"})`."""
    return _tiny_config


