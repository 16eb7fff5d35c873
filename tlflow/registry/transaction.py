"""The one way the registry changes: a transaction under the model's promotion lock.

Registering and promoting a trained model, a manual promotion, a rollback and the registration of
an optimized variant all run the same steps, each a function of its own:

1. `STEP_LOCK`: take the model's promotion lock (`tlflow.registry.lock`), so decisions about one
   model never interleave;
2. `STEP_CLEAN` (`clean_pending`): undo what a killed transaction left: versions still tagged
   `registration=pending` are deleted with their aliases, and then `champion` goes back to the one
   the ledger last recorded;
3. `STEP_SNAPSHOT` (`snapshot`): the aliases as they are, to put back on failure;
4. `STEP_ACT`: the action's own callable, given a `Changes`: register at most one new version
   (created `pending`), decide, move aliases; it returns the `Record` for the ledger;
5. `STEP_LEDGER`: append the ledger entry (`tlflow.registry.ledger`);
6. `STEP_COMPLETE` (`mark_complete`): tag the new version `registration=complete`.

An exception in steps 4 to 6 puts the snapshot back and deletes the half-registered version
(`undo`); a process killed there is cleaned up by the next transaction's step 2. The ledger only
appends, so an entry written before a failure of step 6 stays. `on_step(step)` is called as each
step begins (for `STEP_LOCK`, before the lock is taken): tests raise or kill there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tlflow.registry import ledger, tracking
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import registry_lock

STEP_LOCK, STEP_CLEAN, STEP_SNAPSHOT, STEP_ACT, STEP_LEDGER, STEP_COMPLETE = (
    "lock", "clean", "snapshot", "act", "ledger", "complete"
)
STEPS = (STEP_LOCK, STEP_CLEAN, STEP_SNAPSHOT, STEP_ACT, STEP_LEDGER, STEP_COMPLETE)

#: The version tag that says whether a registration finished; its values.
REGISTRATION_TAG = "registration"
PENDING, COMPLETE = "pending", "complete"

#: The aliases a promotion decides.
ALIASES = (tracking.CHAMPION, tracking.CHALLENGER)
#: The aliases a transaction snapshots and puts back on failure.
SNAPSHOT_ALIASES = (*ALIASES, tracking.OPTIMIZED)

OnStep = Callable[[str], None]


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


def exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def aliases(client: MlflowClient, name: str, names: tuple[str, ...] = ALIASES) -> dict[str, str | None]:
    """The version behind each alias of `names` (None: not set)."""
    return {a: (str(mv.version) if (mv := tracking.alias_version(client, name, a)) else None) for a in names}


def snapshot(client: MlflowClient, name: str) -> dict[str, str | None]:
    """`STEP_SNAPSHOT`: every alias a transaction may move, as it is now."""
    return aliases(client, name, SNAPSHOT_ALIASES)


def restore(client: MlflowClient, name: str, wanted: Mapping[str, str | None]) -> None:
    """Point each alias of `wanted` at its version again (None: remove it); aliases already
    right are left alone, and one that cannot be set (its version is gone) is skipped."""
    current = aliases(client, name, tuple(wanted))
    for alias, version in wanted.items():
        if current[alias] == version:
            continue
        try:
            if version is None:
                client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, version)
        except MlflowException:
            pass


def wait_ready(client: MlflowClient, name: str, version: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while (mv := client.get_model_version(name, version)).status != "READY":
        if mv.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RuntimeError(f"{name} v{version} did not become READY ({mv.status}: {mv.status_message})")
        time.sleep(0.2)


def clean_pending(client: MlflowClient, name: str) -> list[str]:
    """`STEP_CLEAN` (under the lock): delete the versions a killed transaction left `pending`,
    dropping the aliases they got, and, when there were such versions, put `champion` back where
    the ledger last recorded it (a kill between an alias move and its ledger entry). An alias
    moved outside tlflow with nothing pending is left alone. Returns the deleted versions."""
    if not exists(client, name):
        return []
    pending = [str(mv.version) for mv in
               client.search_model_versions(f"name = '{name}' and tags.{REGISTRATION_TAG} = '{PENDING}'")]
    history = ledger.entries(client, name)
    current = snapshot(client, name)
    wanted: dict[str, str | None] = {alias: None for alias, version in current.items() if version in pending}
    if pending and history:  # recovery only: the last recorded champion that is not being removed
        wanted[tracking.CHAMPION] = next(
            (e.champion_after for e in reversed(history) if e.champion_after not in pending), None
        )
    restore(client, name, wanted)
    for version in pending:
        client.delete_model_version(name, version)
    return pending


def mark_complete(client: MlflowClient, name: str, version: str) -> None:
    """`STEP_COMPLETE`: the version's registration finished."""
    client.set_model_version_tag(name, version, REGISTRATION_TAG, COMPLETE)


def undo(client: MlflowClient, name: str, before: Mapping[str, str | None], registered: str | None) -> None:
    """After a failure: the aliases as `before`, the version this transaction registered deleted
    (if that fails too, it stays `pending` and the next `clean_pending` removes it)."""
    restore(client, name, before)
    if registered is not None:
        try:
            client.delete_model_version(name, registered)
        except MlflowException:
            pass


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
        clean_pending(client, name)
        step(STEP_SNAPSHOT)
        before = snapshot(client, name)
        changes = Changes(client, name, before)
        try:
            step(STEP_ACT)
            record = act(changes)
            step(STEP_LEDGER)
            entry = ledger.append(client, name, record.action, record.version, record.champion_before,
                                  record.champion_after, actor, record.reason, lineage, record.decision)
            step(STEP_COMPLETE)
            if changes.registered is not None:
                mark_complete(client, name, changes.registered)
        except BaseException:
            undo(client, name, before, changes.registered)
            raise
    return Committed(record, entry, changes.registered)
