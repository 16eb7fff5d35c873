"""The layered design holds: the library never imports Prefect, and importing does no work."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import tlflow

REPO = Path(__file__).resolve().parents[2]
LIBRARY = sorted(m.name for m in pkgutil.walk_packages(tlflow.__path__, "tlflow."))


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_library_never_imports_prefect(tmp_path):
    code = "import sys\n" + "".join(f"import {m}\n" for m in LIBRARY) + (
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "assert not bad, bad[:5]\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_importing_flows_and_tasks_does_no_work(tmp_path):
    result = _python("import flows.training, tasks.register, flows.cli", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # no mlflow/, .cache/ or .prefect/ made on import
