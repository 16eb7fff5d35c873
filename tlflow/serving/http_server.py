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
  to the reason, and any 4xx message to its first line (MLflow appends the input to some);
- bounds every request (`tlflow.serving.request_limits`): no Content-Type or JSON nested too
  deeply is a 400 (MLflow answers 500), a body above `--max-body-mb` (refused on its
  Content-Length before it is read) or more rows than `--max-rows` is a 413, before any work;
- stops a request at `--timeout-s`: 504, and its prediction thread stops at the model's next module
  call (`tlflow.serving.cancellation`), where MLflow's own timeout leaves it running;
- serves no `/docs` or `/openapi.json` (FastAPI's defaults) unless `--docs`.
- with `TLFLOW_SERVE_RECORD` set (a folder, or 1 for the version's `monitoring.windows_dir`),
  appends each answered request's descriptors to the model's prediction window
  (`tlflow.monitoring.window`); off by default.

The model is this installation's `TaskModel` over the version's files, its stored code checked
against the digest recorded at logging time and never run (`tlflow.serving.model_loading`).

Run as `python -m tlflow.serving.http_server MODEL_URI --host H --port P [--max-body-mb MB]
[--max-rows N] [--timeout-s S] [--docs]` (what `flows.commands.serving.serve_command` builds); the
limits default to `TLFLOW_SERVE_MAX_BODY_MB`, `TLFLOW_SERVE_MAX_ROWS`, `TLFLOW_SERVE_TIMEOUT_S`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from tlflow.serving.cancellation import cancellable, stop_on_cancel
from tlflow.serving.request_limits import Refusal, ServeLimits, body_too_large, check_request

#: MLflow's prefix of an error raised while predicting, and the marker before the actual reason.
_PREDICT_FAILED, _REASON = "Failed to predict data", "Error: "


def unknown_params(payload: Any, known: list[str], inputs: list[str] = ()) -> str | None:
    """The one-line refusal of a parsed JSON request whose `params` hold a name outside `known` (or,
    in MLflow's unified LLM format, a top-level key outside `known` and the input columns
    `inputs`); None when there is nothing to refuse (non-dict payload or params: left to MLflow)."""
    from mlflow.pyfunc.utils.serving_data_parser import is_unified_llm_input

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


def unknown_params_message(body: bytes, known: list[str], inputs: list[str] = ()) -> str | None:
    """`unknown_params` of a JSON request body (None for a body that is not JSON: left to MLflow)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return unknown_params(payload, known, inputs)


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


_ERROR_CODES = {400: "BAD_REQUEST", 413: "REQUEST_LIMIT_EXCEEDED", 504: "DEADLINE_EXCEEDED"}


def _error_body(message: str, status: int = 400) -> bytes:
    return json.dumps({"error_code": _ERROR_CODES.get(status, "INVALID_PARAMETER_VALUE"), "message": message}).encode()


class StrictInvocations:
    """ASGI wrapper of a scoring app: POST /invocations is refused here (400, 413) when it is
    unreadable, above `limits` or names an unknown param, and answered 504 when it runs past
    `limits.timeout_s` (its work stopped); 4xx answers of the app get `short_error` messages;
    everything else passes through."""

    def __init__(self, app: Any, known_params: list[str], input_names: list[str] = (),
                 limits: ServeLimits | None = None):
        self.app, self.known, self.inputs = app, list(known_params), list(input_names)
        self.limits = limits or ServeLimits()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/invocations" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length", "")
        if declared.isdigit() and (refusal := body_too_large(int(declared), self.limits)):
            await _refuse(send, refusal)  # before reading the body
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if refusal := body_too_large(len(body), self.limits):
                await _refuse(send, refusal)
                return
            more = message.get("more_body", False)
        payload, refusal = check_request(bytes(body), headers.get(b"content-type"), self.limits)
        if refusal is None and (unknown := unknown_params(payload, self.known, self.inputs)):
            refusal = Refusal(400, unknown)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        await self._answer(scope, bytes(body), receive, send)

    async def _answer(self, scope: dict, body: bytes, receive: Any, send: Any) -> None:
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        with cancellable() as cancel:
            try:
                await asyncio.wait_for(self.app(scope, _replay(body, receive), _shortening(tracked)),
                                       self.limits.timeout_s)
            except TimeoutError:
                cancel.set()  # the prediction thread stops at its model's next module call
                if not started:
                    await _refuse(send, Refusal(504, f"request took longer than this server's limit of "
                                                     f"{self.limits.timeout_s:g} s (tlflow serve --timeout-s); "
                                                     "its work was stopped"))


async def _refuse(send: Any, refusal: Refusal) -> None:
    await _respond(send, refusal.status, _error_body(refusal.message, refusal.status))


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


#: FastAPI's documentation routes, off unless `--docs`.
_DOC_ATTRS = ("docs_url", "redoc_url", "openapi_url", "swagger_ui_oauth2_redirect_url")


def scoring_app(model_uri: str, limits: ServeLimits | None = None, docs: bool = False) -> StrictInvocations:
    """MLflow's scoring app for the model at `model_uri` (loaded by `load_served_model`: the
    installed `TaskModel`, stored code checked and never run), bounded by `limits`."""
    from mlflow.pyfunc import scoring_server

    from tlflow.monitoring.recording import ENV_SERVE_RECORD, serve_recorder
    from tlflow.serving.model_loading import load_served_model

    limits = limits or ServeLimits()
    model = load_served_model(model_uri, serve_recorder(model_uri, os.environ.get(ENV_SERVE_RECORD)))
    stop_on_cancel(model.unwrap_python_model().model)
    # MLflow's own timeout (504, thread left running) must never fire before ours
    os.environ["MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT"] = str(int(limits.timeout_s) + 60)
    app = scoring_server.init(model)
    if not docs:
        paths = {getattr(app, attr) for attr in _DOC_ATTRS} - {None}
        app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in paths]
        for attr in _DOC_ATTRS:
            setattr(app, attr, None)
    params, inputs = model.metadata.get_params_schema(), model.metadata.get_input_schema()
    return StrictInvocations(app, [p.name for p in params.params] if params else [],
                             inputs.input_names() if inputs is not None and inputs.has_input_names() else [], limits)


def main(argv: list[str] | None = None) -> None:
    defaults = ServeLimits.from_env()
    parser = argparse.ArgumentParser(prog="python -m tlflow.serving.http_server", description=__doc__.split("\n")[0])
    parser.add_argument("model_uri")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--max-body-mb", type=float, default=defaults.max_body_mb, help="Largest request body (413 above).")
    parser.add_argument("--max-rows", type=int, default=defaults.max_rows, help="Most rows in one request (413 above).")
    parser.add_argument("--timeout-s", type=float, default=defaults.timeout_s,
                        help="Seconds a request may run (504 after, its work stopped).")
    parser.add_argument("--docs", action="store_true", help="Serve FastAPI's /docs and /openapi.json.")
    args = parser.parse_args(argv)
    limits = ServeLimits(args.max_body_mb, args.max_rows, args.timeout_s)
    limits.check()
    import uvicorn

    from tlflow.errors import TlflowError

    try:
        app = scoring_app(args.model_uri, limits, args.docs)
    except TlflowError as err:  # e.g. a version whose stored code was changed: one line, no traceback
        raise SystemExit(f"error: {err}") from None
    uvicorn.run(app, host=args.host, port=args.port, workers=1)


if __name__ == "__main__":
    main()
