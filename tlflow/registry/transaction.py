"""The one way the registry changes: a transaction under the model's promotion lock.

Registering and promoting a trained model, a manual promotion, a rollback and the registration of
an optimized variant all run the same steps, each a function of its own:

1. `STEP_LOCK`: take the model's promotion lock (`tlflow.registry.lock`), so decisions about one
   model never interleave;
2. `STEP_CLEAN` (`recovery.recover`): settle what an interrupted transaction left, following the
   ledger: its pending version is completed when its ledger entry exists and every step before
   `complete` is verifiably done, and rolled back otherwise, with a compensating ledger entry
   (action `recovered`) either way; then aliases moved outside tlflow (the MLflow registry UI)
   are recorded (`reconcile.reconcile`, action `external-alias-change`), so the action starts
   from the ledger's last state;
3. `STEP_SNAPSHOT` (`state.snapshot`): the aliases as they are, written with the ledger's last
   sequence into the model's intent marker (`state.Intent`) before anything changes;
4. `STEP_ACT`: the action's own callable, given a `Changes`: register at most one new version
   (created `pending`), decide, move aliases; it returns the `Record` for the ledger;
5. `STEP_LEDGER`: append the ledger entry with the aliases as the action left them
   (`tlflow.registry.ledger`): from here on the decision is taken;
6. `STEP_COMPLETE` (`state.mark_complete`): tag the new version `registration=complete`; then the
   intent marker is deleted and the lock released.

An exception before the ledger entry (steps 4-5) puts the snapshot back, deletes the version and
the transaction leaves no trace. An exception after it (step 6, or in an append that failed after
its entry was written) runs the recovery on the spot: the
decision is completed when its aliases are in place (the transaction then returns, unless the
exception is a KeyboardInterrupt or SystemExit, which is raised after), or rolled back with a
`recovered` entry and raised. A process killed anywhere leaves the marker (and the lock, broken once
its holder is gone or stale), and the next transaction's step 2 settles it. So after every
transaction the champion is the one the last ledger entry names, every alias is on an existing,
complete version, and a ledger entry naming a version that no longer exists is followed by the
`recovered` entry that removed it. `on_step(step)` is called as each step begins (for `STEP_LOCK`,
before the lock is taken; for `STEP_COMPLETE`, right after the ledger entry): tests raise or kill
there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mlflow import MlflowClient

from tlflow.registry import ledger, state, tracking
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import registry_lock
from tlflow.registry.reconcile import reconcile
from tlflow.registry.recovery import COMPLETED, recover
from tlflow.registry.state import (
    ALIASES,
    COMPLETE,
    PENDING,
    REGISTRATION_TAG,
    SNAPSHOT_ALIASES,
    aliases,
    exists,
    mark_complete,
    restore,
    snapshot,
)

STEP_LOCK, STEP_CLEAN, STEP_SNAPSHOT, STEP_ACT, STEP_LEDGER, STEP_COMPLETE = (
    "lock", "clean", "snapshot", "act", "ledger", "complete"
)
STEPS = (STEP_LOCK, STEP_CLEAN, STEP_SNAPSHOT, STEP_ACT, STEP_LEDGER, STEP_COMPLETE)

OnStep = Callable[[str], None]

__all__ = ["ALIASES", "COMPLETE", "PENDING", "REGISTRATION_TAG", "SNAPSHOT_ALIASES", "STEPS", "Changes", "Committed",
           "Record", "aliases", "recover", "snapshot", "transact"]


@dataclass(frozen=True)
class Record:
    """What an action did, as its ledger entry records it."""

    action: str  # one of `ledger.ACTIONS`
    version: str  # the version the decision is about
    champion_before: str | None
    champion_after: str | None
    reason: str
    decision: dict = field(default_factory=dict)  # every check with its numbers


@dataclass(frozen=True)
class Committed:
    record: Record
    entry: ledger.LedgerEntry
    version: str | None  # the version this transaction registered, if any


def wait_ready(client: MlflowClient, name: str, version: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while (mv := client.get_model_version(name, version)).status != "READY":
        if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(f"{name} v{version} did not become READY ({mv.status}: {mv.status_message})")
        time.sleep(0.2)


def undo(client: MlflowClient, name: str, before: Mapping[str, str | None], registered: str | None,
         created: bool) -> None:
    """After a failure before the ledger entry: the aliases as `before`, the version this
    transaction registered deleted, and the registered model too when this transaction created it
    and it has no version left; then the intent marker is deleted. When any of it fails, the marker
    stays and the next transaction's recovery finishes it."""
    restore(client, name, before)
    if registered is not None:
        client.delete_model_version(name, registered)
    if created and not client.search_model_versions(f"name = '{name}'"):
        client.delete_registered_model(name)
        return
    state.clear_intent(client, name)


class Changes:
    """What an action may do inside the transaction: register one new version (tagged
    `pending` until `STEP_COMPLETE`), describe it, move aliases. `before` is the snapshot."""

    def __init__(self, client: MlflowClient, name: str, before: Mapping[str, str | None]):
        self.client, self.name, self.before = client, name, dict(before)
        self.registered: str | None = None

    @property
    def champion(self) -> str | None:
        return self.before[tracking.CHAMPION]

    def register(self, model_uri: str, tags: Mapping[str, str]) -> str:
        if self.registered is not None:
            raise RuntimeError(f"{self.name}: one transaction registers one version (v{self.registered} already)")
        mv = tracking.register_version(model_uri, self.name, {**tags, REGISTRATION_TAG: PENDING})
        self.registered = str(mv.version)
        wait_ready(self.client, self.name, self.registered)
        return self.registered

    def describe(self, version: str, description: str) -> None:
        self.client.update_model_version(self.name, version, description=description)

    def move(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)


def _appended(client: MlflowClient, name: str, start: int) -> bool:
    """Whether an entry after sequence `start` exists (an append that failed half-way may have
    written it); True when the ledger cannot be read, so the recovery decides."""
    try:
        history = ledger.entries(client, name)
    except Exception:
        return True
    return bool(history) and history[-1].sequence > start


def transact(
    client: MlflowClient,
    name: str,
    act: Callable[[Changes], Record],
    actor: str,
    lineage: Lineage,
    wait_s: float = 1800,
    stale_s: float = 1800,
    on_step: OnStep | None = None,
) -> Committed:
    """Run `act` as one registry transaction on model `name` (the steps of the module docstring);
    the ledger entry records `actor` and `lineage`."""
    step = on_step or (lambda _: None)
    step(STEP_LOCK)
    with registry_lock(client, name, wait_s, stale_s):
        step(STEP_CLEAN)
        recover(client, name, actor, lineage)
        reconcile(client, name, actor)
        step(STEP_SNAPSHOT)
        before = snapshot(client, name)
        created = not exists(client, name)
        history = ledger.entries(client, name)
        start = history[-1].sequence if history else 0
        state.write_intent(client, name, state.Intent.now(actor, start, before))
        changes = Changes(client, name, before)
        entry: ledger.LedgerEntry | None = None
        try:
            step(STEP_ACT)
            record = act(changes)
            step(STEP_LEDGER)
            entry = ledger.append(client, name, record.action, record.version, record.champion_before,
                                  record.champion_after, actor, record.reason, lineage, record.decision,
                                  aliases=snapshot(client, name))
            step(STEP_COMPLETE)
            if changes.registered is not None:
                mark_complete(client, name, changes.registered)
        except BaseException as error:
            if entry is None and not _appended(client, name, start):
                try:
                    undo(client, name, before, changes.registered, created)
                except Exception:  # noqa: S110 - the marker stays: the next transaction recovers
                    pass
                raise
            settled = recover(client, name, actor, lineage, error=f"{type(error).__name__}: {error}"[:500])
            if settled is None or settled.outcome != COMPLETED or not isinstance(error, Exception):
                raise
            entry = entry or next(e for e in ledger.entries(client, name) if e.sequence == start + 1)
        else:
            state.clear_intent(client, name)
    return Committed(record, entry, changes.registered)
