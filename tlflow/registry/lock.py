"""A mutex in the MLflow registry itself, so promotions of one model never interleave.

Creating a registered model is atomic in every MLflow backend (a unique name in the SQL store,
RESOURCE_ALREADY_EXISTS from a tracking server), so `<name>.promotion-lock` works as a lock for
the embedded SQLite store and for a remote server alike. Its tags record the holder: host, pid,
PID namespace and when it was taken.

A lock whose holder is provably dead is broken at once: same host and PID namespace, and no such
process (or a zombie, or a process that started after the lock was taken: the pid was reused).
A holder on another host cannot be checked: the lock is waited on, with a notice of who holds it
every `notice_s`, and broken once older than `stale_s`; `force_unlock` (`tlflow unlock`) removes
it at once. Notices go to the callback the caller passes, or the one set with `lock_notices`
(the command line echoes them, a Prefect task logs them), else to this module's logger.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tlflow.errors import TlflowError

LOCK_SUFFIX = ".promotion-lock"
#: Seconds between two "held by ..." notices while waiting.
NOTICE_S = 5.0
#: Slack for the pid-reuse test: /proc start times are derived from a boot time in whole seconds.
CLOCK_SLACK_S = 1.0

Notify = Callable[[str], None]
_NOTIFY: ContextVar[Notify | None] = ContextVar("tlflow_lock_notify", default=None)
_log = logging.getLogger(__name__)


class LockTimeout(TlflowError, RuntimeError):
    """Another promotion of the same model held the lock for longer than we may wait."""


class NoLock(TlflowError, LookupError):
    """`force_unlock` of a model whose promotion is not locked."""


class HolderAlive(TlflowError, RuntimeError):
    """`force_unlock` of a lock whose holder is a live process on this host: stop it instead."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, from its tags."""

    host: str
    pid: int
    pid_ns: str  # "" for locks taken before the namespace was recorded
    acquired_at: float  # epoch seconds

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"

    def describe(self, now: float | None = None) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.acquired_at))
        return f"held by {self.label} since {since} ({(now or time.time()) - self.acquired_at:.0f} s)"


def lock_name(model: str) -> str:
    return f"{model}{LOCK_SUFFIX}"


def is_lock(name: str) -> bool:
    return name.endswith(LOCK_SUFFIX)


@contextmanager
def lock_notices(notify: Notify) -> Iterator[None]:
    """Send the notices of every lock taken in this block (and context) to `notify`."""
    token = _NOTIFY.set(notify)
    try:
        yield
    finally:
        _NOTIFY.reset(token)


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_start(pid: int) -> float | None:
    """Epoch seconds at which process `pid` started; None when there is no such process or it is a
    zombie (dead, not yet reaped). Raises OSError where /proc cannot tell (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():
            raise
        return None
    except ProcessLookupError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, starttime field 22
    if fields[0] in ("Z", "X"):
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def holder_alive(holder: Holder) -> bool | None:
    """Whether the holder process runs: False when provably gone (same host and PID namespace, and
    no such process, a zombie, or one started after the lock was taken: the pid was reused), True
    when it provably runs, None when this host cannot tell (another host or namespace, no /proc)."""
    if holder.pid <= 0 or holder.host != socket.gethostname() or holder.pid_ns not in ("", _pid_namespace()):
        return None
    try:
        started = process_start(holder.pid)
    except OSError:
        return None
    return started is not None and started <= holder.acquired_at + CLOCK_SLACK_S


def read_holder(client: MlflowClient, model: str) -> Holder | None:
    """The holder of `model`'s promotion lock; None when it is not locked."""
    try:
        tags = client.get_registered_model(lock_name(model)).tags or {}
    except MlflowException:
        return None
    host, _, pid = tags.get("holder", ":").rpartition(":")
    return Holder(host, int(pid) if pid.isdigit() else -1, tags.get("pid_ns", ""),
                  float(tags.get("acquired_at", "0") or 0))


def _try_acquire(client: MlflowClient, name: str) -> bool:
    try:
        client.create_registered_model(
            name,
            tags={"acquired_at": f"{time.time():.3f}", "holder": f"{socket.gethostname()}:{os.getpid()}",
                  "pid_ns": _pid_namespace()},
            description="Held while a promotion decision is made; deleted when it is done.",
        )
        return True
    except MlflowException as err:
        # SQLite answers a concurrent writer with "database is locked", and MLflow's check for an existing
        # model can find the lock released between its insert and its look-up (RESOURCE_DOES_NOT_EXIST):
        # both just mean another try later.
        if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST") and "locked" not in str(err):
            raise
        return False


def _delete(client: MlflowClient, name: str) -> None:
    try:
        client.delete_registered_model(name)
    except MlflowException:
        pass  # released or broken by someone else meanwhile


def _break_if_abandoned(client: MlflowClient, model: str, holder: Holder, stale_s: float, notify: Notify) -> bool:
    """Delete the lock when its holder is provably dead or it is older than `stale_s`."""
    if holder_alive(holder) is False:
        why = "its process is gone"
    elif time.time() - holder.acquired_at > stale_s:
        why = f"older than promote.lock_stale_s={stale_s:.0f} s"
    else:
        return False
    _delete(client, lock_name(model))
    notify(f"broke the promotion lock of '{model}' {holder.describe()}: {why}")
    return True


@contextmanager
def registry_lock(
    client: MlflowClient, model: str, wait_s: float = 1800, stale_s: float = 1800, poll_s: float = 0.2,
    notify: Notify | None = None, notice_s: float = NOTICE_S,
) -> Iterator[None]:
    """Hold the promotion lock of `model` for the body of the `with` block."""
    say = notify or _NOTIFY.get() or _log.warning
    name = lock_name(model)
    deadline = time.monotonic() + wait_s
    next_notice = time.monotonic()
    while not _try_acquire(client, name):
        holder = read_holder(client, model)
        if holder is not None and _break_if_abandoned(client, model, holder, stale_s, say):
            continue
        if time.monotonic() > deadline:
            held = holder.describe() if holder else "released meanwhile"
            raise LockTimeout(f"another promotion of '{model}' has held the lock for over {wait_s:.0f} s "
                              f"({held}; `tlflow unlock {model} --reason ...` removes it)")
        if holder is not None and time.monotonic() >= next_notice:
            say(f"waiting for the promotion lock of '{model}': {holder.describe()}")
            next_notice = time.monotonic() + notice_s
        time.sleep(poll_s)
    try:
        yield
    finally:
        _delete(client, name)


def force_unlock(client: MlflowClient, model: str) -> Holder:
    """Remove `model`'s promotion lock whoever holds it (a holder on another host that died);
    returns the holder removed. Refuses a live holder on this host: stopping it releases the lock."""
    holder = read_holder(client, model)
    if holder is None:
        raise NoLock(f"'{model}' has no promotion lock (nothing to unlock)")
    if holder_alive(holder):
        raise HolderAlive(f"the promotion lock of '{model}' is {holder.describe()}, a live process on this host: "
                          f"stop it (kill {holder.pid}) and its lock is released or broken")
    _delete(client, lock_name(model))
    return holder
