"""The bounds `tlflow serve` puts on a request before MLflow's scoring app sees it (pure functions).

MLflow's scoring app answers a request without a Content-Type, or with JSON nested deeper than
Python's recursion limit, with a 500 and a traceback; it reads a body of any size and predicts any
number of rows. Here each of those is refused first, with one line: 400 for a request that cannot
be read, 413 for one above `ServeLimits` (checked on the Content-Length header before the body is
read, on the bytes read so far, then on the row count).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any

#: Environment variables the server process reads (the defaults of `tlflow serve`'s options).
ENV_MAX_BODY_MB, ENV_MAX_ROWS, ENV_TIMEOUT_S = "TLFLOW_SERVE_MAX_BODY_MB", "TLFLOW_SERVE_MAX_ROWS", "TLFLOW_SERVE_TIMEOUT_S"
DEFAULT_MAX_BODY_MB, DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S = 10.0, 1000, 60.0
#: Deepest JSON nesting accepted (MLflow's request formats need 4 or 5 levels).
MAX_JSON_DEPTH = 32
_JSON, _CSV, _PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"


@dataclass(frozen=True)
class ServeLimits:
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    max_rows: int = DEFAULT_MAX_ROWS
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServeLimits:
        """Limits from `TLFLOW_SERVE_MAX_BODY_MB`, `TLFLOW_SERVE_MAX_ROWS`, `TLFLOW_SERVE_TIMEOUT_S`."""
        env = os.environ if env is None else env
        limits = cls(float(env.get(ENV_MAX_BODY_MB, DEFAULT_MAX_BODY_MB)), int(env.get(ENV_MAX_ROWS, DEFAULT_MAX_ROWS)),
                     float(env.get(ENV_TIMEOUT_S, DEFAULT_TIMEOUT_S)))
        limits.check()
        return limits

    def check(self) -> None:
        if self.max_body_mb <= 0 or self.max_rows < 1 or self.timeout_s <= 0:
            raise ValueError(f"serving limits must be positive: {self}")


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def body_too_large(size: int, limits: ServeLimits) -> Refusal | None:
    """413 for a body (declared or read so far) of `size` bytes above the limit."""
    if size <= limits.max_body_bytes:
        return None
    return Refusal(413, f"request body of {size} bytes is above this server's limit of {limits.max_body_mb:g} MB "
                        "(tlflow serve --max-body-mb)")


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar: 0), without recursion."""
    depth, level = 0, [value]
    while containers := [v for v in level if isinstance(v, (list, dict))]:
        depth += 1
        level = [child for v in containers for child in (v.values() if isinstance(v, dict) else v)]
    return depth


def _rows(value: Any) -> int:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):  # columns -> values
        return max((len(v) for v in value.values() if isinstance(v, list)), default=1)
    return 1


def json_rows(payload: Any) -> int:
    """The rows of an MLflow JSON request (`dataframe_split`, `dataframe_records`, `instances`,
    `inputs`, or the unified LLM format, where the longest list counts)."""
    if not isinstance(payload, dict):
        return _rows(payload)
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        return _rows(split.get("data") if isinstance(split, dict) else split)
    for key in ("dataframe_records", "instances", "inputs"):
        if key in payload:
            return _rows(payload[key])
    return max((len(v) for v in payload.values() if isinstance(v, list)), default=1)


def parse_json(body: bytes) -> tuple[Any, Refusal | None]:
    """(the parsed body, None), or (None, a 400) for JSON nested too deeply; a body that is no
    JSON at all is (None, None): MLflow answers that 400 itself."""
    too_deep = Refusal(400, f"request JSON is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    try:
        payload = json.loads(body)
    except RecursionError:
        return None, too_deep
    except ValueError:
        return None, None
    return (None, too_deep) if json_depth(payload) > MAX_JSON_DEPTH else (payload, None)


def _other_rows(body: bytes, mime: str) -> int | None:
    try:
        if mime == _CSV:
            return max(sum(1 for _ in csv.reader(io.StringIO(body.decode("utf-8")))) - 1, 0)  # less the header
        if mime == _PARQUET:
            import pyarrow.parquet as pq

            return pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    except Exception:  # unreadable: MLflow answers it with its own 400
        return None
    return None


def check_request(body: bytes, content_type: str | None, limits: ServeLimits) -> tuple[Any, Refusal | None]:
    """(the parsed JSON body or None, the refusal of the request or None) for POST /invocations."""
    if not content_type or not content_type.strip():
        return None, Refusal(400, f"missing Content-Type header (use {_JSON}, {_CSV} or {_PARQUET})")
    mime = content_type.split(";", 1)[0].strip().lower()
    payload, rows = None, None
    if mime == _JSON:
        payload, refusal = parse_json(body)
        if refusal is not None:
            return None, refusal
        rows = json_rows(payload) if payload is not None else None
    else:
        rows = _other_rows(body, mime)
    if rows is not None and rows > limits.max_rows:
        return payload, Refusal(413, f"request has {rows} rows, above this server's limit of {limits.max_rows} "
                                     "(tlflow serve --max-rows)")
    return payload, None
