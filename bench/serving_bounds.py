"""Plain `mlflow models serve` against `tlflow serve` on the requests `tlflow serve` bounds: no
Content-Type, JSON nested 10,000 deep, 5,000 rows, /docs and /openapi.json, and a request past a
2 s timeout (20 prompts x 480 new tokens x 8 beams of the tiny test causal LM), after which the
server's CPU seconds over 10 s show whether the timed-out work went on.

    .venv/bin/python bench/serving_bounds.py      # about 2 minutes; writes bench/results/serving_bounds.json
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import tempfile
import time
from http.client import HTTPConnection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "serving_bounds.json"
TIMEOUT_S, QUIET_S = 2, 10
PROMPT = "Oil prices soar to all-time record"
SLOW = {"dataframe_records": [{"prompt": PROMPT}] * 20, "params": {"max_new_tokens": 480, "num_beams": 8}}


def request(base: str, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> int:
    host, port = base.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=600)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in ({"Content-Length": str(len(body))} | (headers or {})).items():
            conn.putheader(key, value)
        conn.endheaders(body or None)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def measure(kind: str, command: list[str], cwd: Path, env: dict) -> dict:
    import psutil

    from tests import serving_http as http

    server, base = http.start(command, cwd, env)
    as_json = {"Content-Type": "application/json"}
    try:
        http.wait_ready(server, base)
        out = {
            "no_content_type": request(base, "POST", "/invocations", json.dumps({"dataframe_records": [{"prompt": "Oil"}]}).encode()),
            "nested_10000": request(base, "POST", "/invocations", b"[" * 10_000 + b"]" * 10_000, as_json),
            "rows_5000": request(base, "POST", "/invocations", json.dumps({"dataframe_records": [{"prompt": "Oil"}] * 5000}).encode(), as_json),
            "docs": request(base, "GET", "/docs"),
            "openapi_json": request(base, "GET", "/openapi.json"),
        }
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        started = time.monotonic()
        out["slow_status"] = request(base, "POST", "/invocations", json.dumps(SLOW).encode(), as_json)
        out["slow_answer_s"] = round(time.monotonic() - started, 2)
        time.sleep(1)
        before = sum(sum(p.cpu_times()[:2]) for p in processes)
        time.sleep(QUIET_S)
        out[f"cpu_s_in_{QUIET_S}_s_after"] = round(sum(sum(p.cpu_times()[:2]) for p in processes) - before, 2)
        started = time.monotonic()
        out["next_status"] = request(base, "POST", "/invocations", json.dumps({"dataframe_records": [{"prompt": "Oil"}]}).encode(), as_json)
        out["next_answer_s"] = round(time.monotonic() - started, 2)
    finally:
        http.stop(server)
    print(kind, out, flush=True)
    return out


def _test_helper(name: str, path: Path):
    """A helper module of the test suite (tests/ is not an installed package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from flows.commands.serving import mlflow_serve_command, serve_command, serve_env
    http = _test_helper("serving_http", ROOT / "tests" / "serving_http.py")
    tiny = _test_helper("tiny_causal_lm", ROOT / "tests" / "task_types" / "tiny_causal_lm.py")
    from tlflow.registry import tracking
    from tlflow.serving import log_task_model
    from tlflow.serving.request_limits import ServeLimits
    from tlflow.task_types.base import TaskSettings

    with tempfile.TemporaryDirectory(prefix="tlflow-bench-serving-") as tmp:
        root = Path(tmp)
        os.chdir(root)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        folder = tiny.save_tiny_causal_lm(root / "tiny-lm")
        model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
        settings = TaskSettings(task="text-generation", max_length=24, batch_size=4, options={"max_new_tokens": 5})
        tracking.configure()
        with mlflow.start_run(experiment_id=tracking.ensure_experiment("bench-serving")):
            uri = log_task_model(model, tokenizer, settings, pd.DataFrame({"prompt": [PROMPT]}))
        MlflowClient().set_registered_model_alias("bench", "champion", mlflow.register_model(uri, "bench").version)
        env = {**serve_env(), "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": str(TIMEOUT_S)}
        results = {
            "mlflow models serve": measure("mlflow", mlflow_serve_command("bench", "champion", http.free_port()), root, env),
            "tlflow serve": measure("tlflow", serve_command("bench", "champion", http.free_port(),
                                                            limits=ServeLimits(10, 1000, TIMEOUT_S)), root, env),
        }
    RESULTS.write_text(json.dumps({"date": dt.date.today().isoformat(), "timeout_s": TIMEOUT_S, "slow_request": SLOW["params"],
                                   "slow_rows": len(SLOW["dataframe_records"]), "results": results}, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
