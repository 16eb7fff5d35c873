"""Aliases moved outside tlflow, taken into the ledger.

The MLflow registry UI's alias editor (and any client calling `set_registered_model_alias` or
`delete_registered_model_alias`) moves `champion`, `challenger` or `optimized` without a ledger
entry. The ledger's last entry records the aliases as its decision left them
(`LedgerEntry.aliases_after`), so such a change shows as a difference with the registry, and
`reconcile` appends an entry with action `external-alias-change` for it: the aliases recorded and
found, `champion_before`/`champion_after` as for any decision. From then on the change is an
ordinary decision of the ledger: `tlflow rollback` walks back through it.

Who and when, as far as MLflow knows: MLflow keeps neither the user nor the time of an alias
change, so the entry's actor is `EXTERNAL_ACTOR` and its decision records the window in which the
change happened (after the previous entry, at the latest when it was noticed) and who noticed it.
Each version an alias now points at gets `decision=<alias>`, a `decision_reason` and a note in its
description, so the registry UI tells the same story as the ledger.

When it runs: every transaction, right after `recovery.recover` (`transaction.STEP_CLEAN`), and
every ledger read outside one (`settle`: `tlflow history`), under the model's promotion lock.
"""

from __future__ import annotations

import time

from mlflow import MlflowClient

from tlflow.registry import ledger, state, tracking
from tlflow.registry.ledger import EXTERNAL, LedgerEntry
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import LockTimeout, read_holder, registry_lock
from tlflow.registry.recovery import recover

#: The actor of an `external-alias-change` entry: MLflow does not record who moved an alias.
EXTERNAL_ACTOR = "MLflow registry (UI/API)"


def _utc(seconds: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds)) if seconds is not None else None


def _version(version: str | None) -> str:
    return f"v{version}" if version else "none"


def external_changes(client: MlflowClient, name: str,
                     history: list[LedgerEntry] | None = None) -> dict[str, tuple[str | None, str | None]]:
    """The aliases of `name` that differ from the ledger's last entry: alias -> (recorded, found)."""
    history = ledger.entries(client, name) if history is None else history
    return state.differences(ledger.aliases_after(history, state.SNAPSHOT_ALIASES), state.snapshot(client, name))


def reconcile(client: MlflowClient, name: str, noticed_by: str) -> LedgerEntry | None:
    """Append an `external-alias-change` entry when the aliases of `name` differ from the ledger's
    last entry, and mark the versions they now point at (call it under the model's lock, after
    `recover`). None when they agree."""
    if not state.exists(client, name):
        return None
    history = ledger.entries(client, name)
    changed = external_changes(client, name, history)
    if not changed:
        return None
    found = state.snapshot(client, name)
    recorded = ledger.aliases_after(history, state.SNAPSHOT_ALIASES)
    since, noticed = (history[-1].time if history else None), time.time()
    sequence = (history[-1].sequence if history else 0) + 1
    moves = "; ".join(f"{alias} {_version(before)} -> {_version(after)}" for alias, (before, after) in changed.items())
    window = f"after ledger #{history[-1].sequence} ({_utc(since)})" if history else "before any ledger entry"
    reason = (f"{moves}: changed outside tlflow (MLflow registry) {window}, noticed {_utc(noticed)} by {noticed_by}; "
              "MLflow records no user or time for an alias change")
    for alias, (before, after) in changed.items():
        if alias in state.ALIASES and after is not None:
            _mark(client, name, after, alias, before, sequence, noticed)
    before, after = changed.get(tracking.CHAMPION) or next(iter(changed.values()))
    subject = after or before
    tags = client.get_model_version(name, subject).tags if state.version_exists(client, name, subject) else {}
    version_lineage = Lineage.from_tags(tags)
    decision = {"changes": {alias: {"from": before, "to": after} for alias, (before, after) in changed.items()},
                "recorded": recorded, "found": found, "changed_after": _utc(since), "noticed_at": _utc(noticed),
                "noticed_by": noticed_by}
    return ledger.append(client, name, EXTERNAL, subject, recorded.get(tracking.CHAMPION), found[tracking.CHAMPION], EXTERNAL_ACTOR, reason,
                         Lineage(data_md5=version_lineage.data_md5, eval_split=version_lineage.eval_split),
                         decision, aliases=found)


def _mark(client: MlflowClient, name: str, version: str, alias: str, before: str | None, sequence: int,
          noticed: float) -> None:
    """`version` now holds `alias`: its decision tag, reason and description say so (once per entry)."""
    mv = client.get_model_version(name, version)
    tags = mv.tags or {}
    registered = f"{tags['decision']}: {tags.get('decision_reason', '')}" if tags.get("decision") else "no decision"
    client.set_model_version_tag(name, version, "decision", alias)
    client.set_model_version_tag(name, version, "decision_reason", (
        f"{alias} since {_utc(noticed)}: set outside tlflow (MLflow registry), ledger #{sequence}; "
        f"at registration: {registered}")[:4900])
    mark = f"(ledger #{sequence}, `{EXTERNAL}`"
    description = mv.description or ""
    if mark not in description:
        note = (f"**{alias} since {_utc(noticed)}**, set outside tlflow in the MLflow registry {mark}, from "
                f"{_version(before)}). What is written above is the decision at registration.")
        client.update_model_version(name, version, description=f"{description}\n\n---\n\n{note}".lstrip("-\n "))


def settle(client: MlflowClient, name: str, actor: str, lineage: Lineage, wait_s: float = 0.0,
           stale_s: float = 1800) -> str | None:
    """Before reading the ledger of `name` outside a transaction: when a transaction was interrupted
    or an alias moved outside tlflow, take the model's lock (waiting at most `wait_s`), settle the
    interrupted transaction (`recover`) and reconcile the aliases. Nothing is locked when nothing
    differs. Returns a note when another transaction holds the lock (the ledger is then read as it
    stands), else None."""
    if not state.exists(client, name):
        return None
    if (state.read_intent(client, name) is None and not state.pending_versions(client, name)
            and not external_changes(client, name)):
        return None
    try:
        with registry_lock(client, name, wait_s, stale_s):
            recover(client, name, actor, lineage)
            reconcile(client, name, actor)
    except LockTimeout:
        holder = read_holder(client, name)
        held = holder.describe() if holder else "released meanwhile"
        return (f"a registry transaction on '{name}' is under way ({held}): the ledger is shown as it stands, "
                "not yet reconciled with the registry's aliases")
    return None
