"""A mutex in the MLflow registry itself, so promotions of one model never interleave.

Creating a registered model is atomic in every MLflow backend (a unique name in the SQL store,
RESOURCE_ALREADY_EXISTS from a tracking server), so `<name>.promotion-lock` works as a lock for
the embedded SQLite store and for a remote server alike. A lock left by a killed process is
broken once it is older than `stale_s`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tlflow.errors import TlflowError

LOCK_SUFFIX = ".promotion-lock"


class LockTimeout(TlflowError, RuntimeError):
    """Another promotion of the same model held the lock for longer than we may wait."""


def lock_name(model: str) -> str:
    return f"{model}{LOCK_SUFFIX}"


def is_lock(name: str) -> bool:
    return name.endswith(LOCK_SUFFIX)


def _try_acquire(client: MlflowClient, name: str) -> bool:
    try:
        client.create_registered_model(
            name,
            tags={"acquired_at": f"{time.time():.3f}", "holder": f"{socket.gethostname()}:{os.getpid()}"},
            description="Held while a promotion decision is made; deleted when it is done.",
        )
        return True
    except MlflowException as err:
        # SQLite answers a concurrent writer with "database is locked": just another try later.
        if err.error_code != "RESOURCE_ALREADY_EXISTS" and "locked" not in str(err):
            raise
        return False


def _break_if_stale(client: MlflowClient, name: str, stale_s: float) -> None:
    try:
        held = client.get_registered_model(name)
    except MlflowException:
        return  # released meanwhile
    acquired = float((held.tags or {}).get("acquired_at", "0") or 0)
    if time.time() - acquired > stale_s:
        try:
            client.delete_registered_model(name)
        except MlflowException:
            pass  # someone else broke it first


@contextmanager
def registry_lock(
    client: MlflowClient, model: str, wait_s: float = 1800, stale_s: float = 1800, poll_s: float = 0.2
) -> Iterator[None]:
    """Hold the promotion lock of `model` for the body of the `with` block."""
    name = lock_name(model)
    deadline = time.monotonic() + wait_s
    while not _try_acquire(client, name):
        _break_if_stale(client, name, stale_s)
        if time.monotonic() > deadline:
            raise LockTimeout(f"another promotion of '{model}' has held the lock for over {wait_s:.0f} s")
        time.sleep(poll_s)
    try:
        yield
    finally:
        try:
            client.delete_registered_model(name)
        except MlflowException:
            pass  # broken as stale by another process; nothing left to release
