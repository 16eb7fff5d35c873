"""The layered design holds: the import-linter contracts of pyproject.toml (tlflow never imports
Prefect, tasks or flows; tasks never import flows; the layers inside tlflow point down), and
importing does no work."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit]

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_importing_flows_and_tasks_does_no_work(tmp_path):
    result = _python("import flows.training, tasks.register, flows.cli", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # no mlflow/, .cache/ or .prefect/ made on import
