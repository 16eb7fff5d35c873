"""Serving the champion: `batch_predict` on a file, and MLflow's model server on a loopback port
answering real texts, with a clear 4xx for every malformed payload."""

import json
import urllib.request

import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.batch import batch_predict
from flows.cli import serve_command, serve_env
from flows.training import training_pipeline
from tests.serving_http import free_port, post, start, stop, wait_ready
from tlflow.registry import tracking

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]

TEXTS = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés .", "dull"]


def test_batch_predict_and_http_serving(project, prefect_server, tiny_config):
    cfg = tiny_config(name="served")
    assert training_pipeline(cfg).version == "1"

    (project / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    path = batch_predict("served", "in.jsonl", "out/predictions.jsonl")
    out = pd.read_json(path, lines=True)
    assert out["text"].tolist() == TEXTS
    assert set(out["prediction_label"]) <= {"negative", "positive"}
    assert (out["model_name"] == "served").all() and (out["model_version"].astype(str) == "1").all()
    assert (out["model_alias"] == "champion").all()
    tracking.configure()
    runs = MlflowClient().search_runs([tracking.ensure_experiment("served-batch")])
    assert len(runs) == 1 and runs[0].data.params["model_version"] == "1" and runs[0].data.metrics["rows"] == 3

    server, base = start(serve_command("served", "champion", free_port()), project, serve_env())
    try:
        wait_ready(server, base)

        status, body = post(f"{base}/invocations", {"dataframe_records": [{"text": t} for t in TEXTS]})
        assert status == 200, body
        predictions = json.loads(body)["predictions"]
        assert [set(p) for p in predictions] == [{"label", "score"}] * 3
        assert [p["label"] for p in predictions] == out["prediction_label"].tolist()  # same model, same answers

        malformed = {
            "missing field": {"dataframe_records": [{"txt": "fine"}]},
            "wrong type": {"dataframe_records": [{"text": 5}]},
            "empty list": {"dataframe_records": []},
            "over-long text": {"dataframe_records": [{"text": "word " * 30_000}]},
            "blank text": {"dataframe_records": [{"text": "   "}]},
        }
        for case, payload in malformed.items():
            status, body = post(f"{base}/invocations", payload)
            assert 400 <= status < 500, (case, status, body)
            assert json.loads(body).get("message"), (case, body)
        status, body = post(f"{base}/invocations", b"{not json")
        assert 400 <= status < 500, body
        with urllib.request.urlopen(f"{base}/ping", timeout=5) as r:  # still serving
            assert r.status == 200
    finally:
        stop(server)
