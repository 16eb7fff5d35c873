"""What runs when a model is loaded, and the bounds of `tlflow serve`, over a real MLflow store and
real HTTP: the tiny causal LM (built in the test) logged as the `TaskModel` pyfunc, registered twice.

- Version 2's stored model code is replaced by code that writes a marker file when run: tlflow's
  loaders (`tlflow serve`'s app and process, `load_served_model` of `tlflow predict`,
  `load_task_model`) refuse it with one line naming the version, the registry's re-scoring loads
  it from its weights, and none of them runs it (no marker); MLflow's own loader does (the marker
  appears: what a third party running `mlflow models serve` gets, and proof the test can fail).
- Version 1 is served by `tlflow serve`'s command with small limits: no Content-Type and deeply
  nested JSON are 400s, a body or row count above the limit a 413, /docs and /openapi.json 404s,
  a request past the timeout a 504 whose work stops, and the server answers the next request.
"""

from __future__ import annotations

import json
import subprocess
import time
from http.client import HTTPConnection
from pathlib import Path

import mlflow
import pandas as pd
import psutil
import pytest
from mlflow import MlflowClient

from flows.commands.serving import serve_command, serve_env
from tests import serving_http as http
from tests.task_types import tiny_causal_lm as tiny
from tlflow.registry import tracking
from tlflow.registry.champion import load_version
from tlflow.serving import load_served_model, load_task_model, log_task_model
from tlflow.serving.http_server import scoring_app
from tlflow.serving.request_limits import ServeLimits
from tlflow.serving.stored_code import CODE_DIGEST_TAG, StoredCodeError, sha256_file
from tlflow.serving.task_model import ENTRY_CODE
from tlflow.task_types.base import TaskSettings

pytestmark = [pytest.mark.slow]  # one model server and one failed server start: about 60 s

NAME, PROMPT = "bounded", "Oil prices soar to all-time record"
LIMITS = ServeLimits(max_body_mb=1, max_rows=20, timeout_s=2)


@pytest.fixture(scope="module")
def registered(module_project):
    """Versions 1 (champion) and 2 (alias `tampered`, its stored code replaced) of NAME, and the marker path."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny.save_tiny_causal_lm(module_project / "tiny-lm")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    settings = TaskSettings(task="text-generation", max_length=24, batch_size=4, options={"max_new_tokens": 5})
    tracking.configure()
    client = MlflowClient()
    for alias in ("champion", "tampered"):
        with mlflow.start_run(experiment_id=tracking.ensure_experiment("serving-bounds")):
            uri = log_task_model(model, tokenizer, settings, pd.DataFrame({"prompt": [PROMPT]}))
        client.set_registered_model_alias(NAME, alias, mlflow.register_model(uri, NAME).version)
    marker = module_project / "stored-code-ran"
    location = client.get_model_version_download_uri(NAME, client.get_model_version_by_alias(NAME, "tampered").version)
    stored = Path(location.removeprefix("file://")) / ENTRY_CODE.name  # in the artifact store's folder
    assert stored.read_bytes() == ENTRY_CODE.read_bytes()
    stored.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n{ENTRY_CODE.read_text()}")
    return client, marker


def test_logging_records_the_digest_of_the_stored_code(registered):
    client, _ = registered
    run = client.get_run(client.get_model_version(NAME, "1").run_id)
    assert run.data.tags[CODE_DIGEST_TAG] == sha256_file(ENTRY_CODE)


def test_tlflow_loaders_refuse_tampered_stored_code_and_never_run_it(registered, module_project):
    client, marker = registered
    for load in (load_served_model, load_task_model, scoring_app):
        with pytest.raises(StoredCodeError) as refused:
            load(f"models:/{NAME}@tampered")
        message = str(refused.value)
        assert message.startswith(f"model '{NAME}' version 2: stored model code entry.py was changed") and "\n" not in message
    # `tlflow serve`'s process: one line naming the version, no traceback
    done = subprocess.run(serve_command(NAME, "tampered", http.free_port()), cwd=module_project, env=serve_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: model '{NAME}' version 2: stored model code")
    # the registry's re-scoring (gate, promote, optimize, audits) reads weights and task.json only
    assert load_version(f"models:/{NAME}/2").settings.task == "text-generation"
    assert load_served_model(f"models:/{NAME}@champion").predict(pd.DataFrame({"prompt": [PROMPT]})).shape == (1, 1)
    assert not marker.exists()
    # MLflow's own loader runs the stored code by design (third parties: check the tag first)
    mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    assert marker.read_text() == "ran"


def _raw(base: str, body: bytes, headers: dict[str, str], send_body: bool = True,
         chunked: bool = False) -> tuple[int, str]:
    """(status, body) of POST /invocations with exactly `headers` (urllib would add a Content-Type),
    the body sent whole or, `chunked`, in 64 KiB chunks without a Content-Length. A server may answer
    (413) and close before the whole body is sent: the answer is read all the same, as curl does."""
    host, port = base.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", "/invocations", skip_accept_encoding=True)
        framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(len(body))}
        for key, value in (framing | headers).items():
            conn.putheader(key, value)
        message = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
        try:
            conn.endheaders(message if send_body else None, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused before reading the rest of the body
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _get(base: str, path: str) -> int:
    host, port = base.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _records(n: int, **params) -> dict:
    return {"dataframe_records": [{"prompt": PROMPT}] * n, **({"params": params} if params else {})}


def _message(status_body: tuple[int, str]) -> tuple[int, str]:
    status, body = status_body
    message = json.loads(body)["message"]
    assert "\n" not in message, message
    return status, message


def test_tlflow_serve_bounds_every_request(registered, module_project):
    server, base = http.start(serve_command(NAME, "champion", http.free_port(), limits=LIMITS), module_project,
                              serve_env())
    try:
        http.wait_ready(server, base)
        assert http.post(f"{base}/invocations", _records(2))[0] == 200

        status, message = _message(_raw(base, json.dumps(_records(1)).encode(), {}))
        assert status == 400 and message.startswith("missing Content-Type header"), message
        nested = b"[" * 10_000 + b"]" * 10_000
        status, message = _message(_raw(base, nested, {"Content-Type": "application/json"}))
        assert status == 400 and "nested too deeply" in message, message
        # a body without a Content-Length: refused once what was read of it passes the limit
        status, message = _message(_raw(base, b" " * (3 * 1024 * 1024), {"Content-Type": "application/json"},
                                        chunked=True))
        assert status == 413 and "above this server's limit of 1 MB" in message, message
        status, message = _message(_raw(base, b" " * (1024 * 1024 + 1), {"Content-Type": "application/json"}))
        assert status == 413 and "request body of 1048577 bytes" in message, message
        # refused on its Content-Length, before the body is sent at all
        status, message = _message(_raw(base, b"", {"Content-Type": "application/json", "Content-Length": str(50 << 20)},
                                        send_body=False))
        assert status == 413 and "request body of 52428800 bytes" in message, message
        status, message = _message(http.post(f"{base}/invocations", _records(21)))
        assert status == 413 and "21 rows, above this server's limit of 20" in message, message
        assert [_get(base, path) for path in ("/docs", "/openapi.json", "/redoc")] == [404, 404, 404]

        # 20 prompts x 480 new tokens x 8 beams: minutes of work, stopped at the 2 s timeout
        started = time.monotonic()
        status, message = _message(http.post(f"{base}/invocations", _records(20, max_new_tokens=480, num_beams=8)))
        assert status == 504 and "limit of 2 s" in message and time.monotonic() - started < 10, message
        deadline = time.monotonic() + 20
        while "stopped the work of a request" not in Path(server.log).read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, "the timed-out request's work did not stop"
            time.sleep(0.2)
        process = psutil.Process(server.pid)
        before = sum(process.cpu_times()[:2])
        time.sleep(2)
        assert sum(process.cpu_times()[:2]) - before < 0.5  # idle: no thread still generating
        assert http.post(f"{base}/invocations", _records(1))[0] == 200
    finally:
        http.stop(server)
