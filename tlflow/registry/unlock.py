"""`tlflow unlock`: remove a promotion lock left by a process that cannot be checked from here.

A holder on this host that died is detected and its lock broken at once (`tlflow.registry.lock`);
one on another host (a worker, a CI machine) is not, and blocks the model until
`promote.lock_stale_s`. Unlocking removes that lock, then runs one registry transaction whose only
act is the ledger entry (action `unlock`: who, why, the holder removed); the transaction's clean
step also undoes what the dead holder left half done.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient

from tlflow.errors import TlflowError
from tlflow.registry.ledger import LedgerEntry
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import Holder, force_unlock
from tlflow.registry.transaction import Changes, Record, transact

ACTION = "unlock"


class UnlockError(TlflowError, ValueError):
    """An unlock without a reason."""


@dataclass(frozen=True)
class Unlocked:
    holder: Holder
    entry: LedgerEntry


def unlock(client: MlflowClient, model: str, actor: str, reason: str, lineage: Lineage,
           wait_s: float = 1800) -> Unlocked:
    """Remove `model`'s promotion lock and record it in the ledger (`reason` is required)."""
    if not reason.strip():
        raise UnlockError("unlock needs --reason: say why the lock is removed (recorded in the ledger)")
    holder = force_unlock(client, model)

    def act(changes: Changes) -> Record:
        champion = changes.champion
        removed = {"holder": holder.label, "pid_ns": holder.pid_ns, "acquired_at": holder.acquired_at,
                   "held": holder.describe()}
        return Record(ACTION, champion or "-", champion, champion,
                      f"{reason.strip()} (removed lock {holder.describe()})", {"removed_lock": removed})

    done = transact(client, model, act, actor, lineage, wait_s=wait_s)
    return Unlocked(holder, done.entry)
