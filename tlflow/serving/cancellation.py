"""Stopping the work of a request that ran past its timeout.

MLflow's scoring app predicts in a worker thread (`asyncio.to_thread`); its own timeout
(`MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`) answers 504 but leaves that thread predicting to the end,
so a few slow requests keep the server's cores busy for nobody. A thread cannot be killed, so the
model is made to stop itself: `stop_on_cancel` puts a forward pre-hook on every module of a torch
model that raises `RequestStopped` once the request's cancel event is set. The event travels with
the request through context variables (`asyncio` tasks and `asyncio.to_thread` copy them), so the
next module call of that request's thread (every layer of every batch, every generated token)
ends it. An ONNX variant's session is not a torch module and runs to the end of its request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

_CANCEL: ContextVar[threading.Event | None] = ContextVar("tlflow_request_cancel", default=None)
_log = logging.getLogger(__name__)


class RequestStopped(RuntimeError):
    """Raised inside a model's forward when its request was cancelled (timed out)."""


def _stop_if_cancelled(module: torch.nn.Module, args: Any) -> None:
    event = _CANCEL.get()
    if event is not None and event.is_set():
        _log.warning("stopped the work of a request that ran past the server's timeout")
        raise RequestStopped("the request was cancelled")


def stop_on_cancel(model: Any) -> int:
    """Hook every module of `model` (when it is a torch module) to stop a cancelled request;
    returns how many modules were hooked (0 for a model that is not a torch module)."""
    if not isinstance(model, torch.nn.Module):
        return 0
    modules = list(model.modules())
    for module in modules:
        module.register_forward_pre_hook(_stop_if_cancelled)
    return len(modules)


@contextmanager
def cancellable() -> Iterator[threading.Event]:
    """A cancel event for the work started inside this context (set it to stop that work)."""
    event = threading.Event()
    token = _CANCEL.set(event)
    try:
        yield event
    finally:
        _CANCEL.reset(token)
