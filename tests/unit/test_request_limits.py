"""The request bounds of `tlflow serve` (pure functions): which requests are refused before MLflow's
scoring app sees them, with which status and message."""

import io
import json

import pandas as pd
import pytest

from tlflow.serving.request_limits import (
    MAX_JSON_DEPTH,
    ServeLimits,
    body_too_large,
    check_request,
    json_depth,
    json_rows,
)

pytestmark = [pytest.mark.unit]

LIMITS = ServeLimits(max_body_mb=1, max_rows=3, timeout_s=5)
JSON = "application/json"


def test_json_depth_counts_nested_containers_without_recursion():
    assert [json_depth(v) for v in (1, [], {"a": 1}, [[1]], {"a": [{"b": [2]}]})] == [0, 1, 1, 2, 4]
    deep: list = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert json_depth(deep) == 100_001


@pytest.mark.parametrize("payload, rows", [
    ({"dataframe_records": [{"text": "a"}] * 4}, 4),
    ({"dataframe_split": {"columns": ["text"], "data": [["a"], ["b"]]}}, 2),
    ({"instances": [{"text": "a"}] * 5}, 5),
    ({"inputs": {"text": ["a", "b", "c"]}}, 3),
    ({"inputs": ["a"]}, 1),
    ({"prompt": ["a", "b"], "max_new_tokens": 3}, 2),  # unified LLM format
    ({"prompt": "a"}, 1),
])
def test_json_rows_of_every_mlflow_request_format(payload, rows):
    assert json_rows(payload) == rows


def test_unreadable_requests_are_400s():
    _, refusal = check_request(b"{}", None, LIMITS)
    assert refusal.status == 400 and refusal.message.startswith("missing Content-Type header")
    _, refusal = check_request(b"[" * 10_000 + b"]" * 10_000, JSON, LIMITS)
    assert refusal.status == 400 and "nested too deeply" in refusal.message
    nested = json.dumps({"inputs": [[[0]]]}).replace("[0]", "[" * MAX_JSON_DEPTH + "0" + "]" * MAX_JSON_DEPTH)
    assert check_request(nested.encode(), JSON, LIMITS)[1].status == 400
    assert check_request(b"{not json", JSON, LIMITS) == (None, None)  # MLflow answers this 400 itself


def test_requests_above_the_limits_are_413s():
    assert body_too_large(1024 * 1024, LIMITS) is None
    refusal = body_too_large(1024 * 1024 + 1, LIMITS)
    assert refusal.status == 413 and "above this server's limit of 1 MB" in refusal.message
    records = {"dataframe_records": [{"text": "a"}] * 4}
    payload, refusal = check_request(json.dumps(records).encode(), f"{JSON}; charset=utf-8", LIMITS)
    assert payload == records and refusal.status == 413 and "4 rows" in refusal.message
    assert check_request(b"text\na\nb\nc\n", "text/csv", LIMITS)[1] is None
    assert check_request(b"text\na\nb\nc\nd\n", "text/csv", LIMITS)[1].status == 413
    parquet = io.BytesIO()
    pd.DataFrame({"text": list("abcd")}).to_parquet(parquet)
    assert check_request(parquet.getvalue(), "application/vnd.apache.parquet", LIMITS)[1].status == 413


def test_limits_from_the_environment():
    assert ServeLimits.from_env({}) == ServeLimits(10.0, 1000, 60.0)
    env = {"TLFLOW_SERVE_MAX_BODY_MB": "0.5", "TLFLOW_SERVE_MAX_ROWS": "7", "TLFLOW_SERVE_TIMEOUT_S": "3"}
    assert ServeLimits.from_env(env) == ServeLimits(0.5, 7, 3.0)
    with pytest.raises(ValueError, match="must be positive"):
        ServeLimits.from_env({"TLFLOW_SERVE_MAX_ROWS": "0"})
