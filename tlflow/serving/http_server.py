"""The HTTP server `tlflow serve` runs: MLflow's own scoring app (`mlflow.pyfunc.scoring_server`,
the same routes and formats as `mlflow models serve`) behind a thin ASGI layer that

- refuses a request whose `params` name a parameter the model does not take (400, one line);
  likewise a top-level key of MLflow's unified LLM format (`{"prompt": ..., "max_new_tokens": 3}`)
  that is neither a param nor an input column (MLflow drops those too, with a warning).
  MLflow alone cannot: `PyFuncModel._predict` passes params through
  `mlflow.models.utils._enforce_params_schema`, which drops every key missing from the signature's
  params schema with only a logged warning, before the model's `predict` is called, so the
  model never sees them (MLflow 3.17: mlflow/models/utils.py `_enforce_params_schema`,
  "Unrecognized params ... are ignored"; called from mlflow/pyfunc/__init__.py `PyFuncModel._predict`);
- shortens MLflow's 4xx message "Failed to predict data '<the whole input>'. Error: <reason>"
  to the reason, and any 4xx message to its first line (MLflow appends the input to some).

Run as `python -m tlflow.serving.http_server MODEL_URI --host H --port P` (what
`flows.commands.serving.serve_command` builds).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

#: MLflow's prefix of an error raised while predicting, and the marker before the actual reason.
_PREDICT_FAILED, _REASON = "Failed to predict data", "Error: "


def unknown_params_message(body: bytes, known: list[str], inputs: list[str] = ()) -> str | None:
    """The one-line refusal of a JSON request body whose `params` hold a name outside `known` (or,
    in MLflow's unified LLM format, a top-level key outside `known` and the input columns
    `inputs`); None when there is nothing to refuse (bad JSON, non-dict params: left to MLflow)."""
    from mlflow.pyfunc.utils.serving_data_parser import is_unified_llm_input

    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    if is_unified_llm_input(payload):
        unknown = [str(k) for k in payload if k not in known and k not in inputs]
    else:
        params = payload.get("params")
        unknown = [str(k) for k in params if k not in known] if isinstance(params, dict) else []
    if not unknown:
        return None
    takes = f"one of: {', '.join(known)}" if known else "none"
    return f"unknown parameter '{unknown[0]}' (this model takes {takes})"


def short_error(body: bytes) -> bytes:
    """MLflow's JSON error body with its message cut to the reason, on one line."""
    try:
        error = json.loads(body)
    except ValueError:
        return body
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        return body
    if message.startswith(_PREDICT_FAILED) and _REASON in message:
        message = message.rsplit(_REASON, 1)[1]
    error["message"] = message.strip().split("\n", 1)[0].strip()
    return json.dumps(error).encode()


def _error_body(message: str) -> bytes:
    return json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message}).encode()


class StrictInvocations:
    """ASGI wrapper of a scoring app: POST /invocations with an unknown param is answered 400
    here; 4xx answers of the app get `short_error` messages; everything else passes through."""

    def __init__(self, app: Any, known_params: list[str], input_names: list[str] = ()):
        self.app, self.known, self.inputs = app, list(known_params), list(input_names)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/invocations" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        refusal = unknown_params_message(body, self.known, self.inputs)
        if refusal is not None:
            await _respond(send, 400, _error_body(refusal))
            return
        await self.app(scope, _replay(body, receive), _shortening(send))


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _shortening(send: Any) -> Any:
    """`send` that holds a 4xx response until its body is complete and sends it with `short_error`."""
    held: dict = {}
    chunks: list[bytes] = []

    async def wrapped(message: dict) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            held.update(message)
            return
        if message["type"] == "http.response.body" and held:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await _respond(send, held["status"], short_error(b"".join(chunks)), held.get("headers", []))
            return
        await send(message)

    return wrapped


async def _respond(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    kept = [(k, v) for k, v in (headers or [(b"content-type", b"application/json")]) if k.lower() != b"content-length"]
    await send({"type": "http.response.start", "status": status,
                "headers": [*kept, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def scoring_app(model_uri: str) -> StrictInvocations:
    """MLflow's scoring app for the model at `model_uri`, refusing params it does not take."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(model_uri)
    params, inputs = model.metadata.get_params_schema(), model.metadata.get_input_schema()
    return StrictInvocations(scoring_server.init(model), [p.name for p in params.params] if params else [],
                             inputs.input_names() if inputs is not None and inputs.has_input_names() else [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tlflow.serving.http_server", description=__doc__.split("\n")[0])
    parser.add_argument("model_uri")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(scoring_app(args.model_uri), host=args.host, port=args.port, workers=1)


if __name__ == "__main__":
    main()
