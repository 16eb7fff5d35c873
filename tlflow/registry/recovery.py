"""Settling a registry transaction that did not end cleanly, by following the ledger.

Every transaction runs `recover` under the model's lock before it changes anything
(`transaction.STEP_CLEAN`), and a transaction hit by an exception after its ledger entry runs it on
itself. What an interrupted transaction leaves is its intent marker (`state.Intent`: the ledger
sequence it started after, the aliases before it) and the version it registered, still
`registration=pending`. The decision it was making is then either

- **completed**: its ledger entry exists (the decision was taken) and every step before `complete`
  is verifiably done: each pending version is the entry's own and READY, and the aliases are
  exactly as the entry recorded them (`champion` is its `champion_after`). The versions are marked
  `complete`. Or
- **rolled back**, otherwise: `champion` goes back to the ledger's champion before the interrupted
  transaction, the other aliases to what the intent recorded, and the pending versions are deleted.

Either way a compensating ledger entry, action `recovered`, says what was found and done, by whom,
for which interrupted holder: the versions completed or removed (`decision.removed`), the ledger
entries undone (`decision.undid`) and the aliases found and left. So the champion is always the
last entry's `champion_after`, and an entry naming a version that no longer exists is followed by
a `recovered` entry listing it. Nothing is written when nothing had to change (a marker left after
the last step). Each step can be repeated: a recovery that is itself interrupted is finished by the
next one, which finds the marker still there.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient

from tlflow.registry import ledger, state, tracking
from tlflow.registry.ledger import RECOVERED, LedgerEntry
from tlflow.registry.lineage import Lineage

COMPLETED, ROLLED_BACK = "completed", "rolled back"


@dataclass(frozen=True)
class Recovery:
    outcome: str  # COMPLETED or ROLLED_BACK
    versions: list[str]  # the pending versions completed (COMPLETED) or deleted (ROLLED_BACK)
    entry: LedgerEntry | None  # the `recovered` entry (None: nothing had to change)


def _since(history: list[LedgerEntry], pending: list[str]) -> int:
    """Without a marker (left by an older tlflow): the sequence before the first entry naming a
    pending version, else the last one."""
    named = [e.sequence for e in history if e.version in pending and e.action != RECOVERED]
    return min(named) - 1 if named else (history[-1].sequence if history else 0)


def _done(client: MlflowClient, name: str, decided: LedgerEntry, pending: list[str],
          found: dict[str, str | None]) -> bool:
    """Whether every step of `decided`'s transaction before `complete` is verifiably done."""
    own = [] if decided.action == RECOVERED else [decided.version]
    if any(v not in own for v in pending):
        return False
    if own and own[0].isdigit() and not state.version_exists(client, name, decided.version):
        return False
    if any(client.get_model_version(name, v).status != "READY" for v in pending):
        return False
    return not state.differences(decided.aliases_after, found)


def _wanted(client: MlflowClient, name: str, intent: state.Intent | None, prior: list[LedgerEntry],
            found: dict[str, str | None], gone: set[str]) -> dict[str, str | None]:
    """The aliases before the interrupted transaction: the marker's (or, without one, those found
    minus what points at a pending version), with `champion` the ledger's when it has entries."""
    wanted = dict(intent.before) if intent else dict(found)

    def usable(version: str | None) -> bool:
        return version is None or (version not in gone and state.version_exists(client, name, version))

    if prior:
        wanted[tracking.CHAMPION] = next((e.champion_after for e in reversed(prior) if usable(e.champion_after)), None)
    return {alias: (version if usable(version) else None) for alias, version in wanted.items()}


def recover(client: MlflowClient, name: str, actor: str, lineage: Lineage, error: str = "") -> Recovery | None:
    """Complete or roll back what an interrupted transaction on `name` left (call it under the
    model's lock); `error`: the exception that interrupted it, when it is the caller's own.
    None when nothing was left."""
    if not state.exists(client, name):
        return None
    intent = state.read_intent(client, name)
    pending = state.pending_versions(client, name)
    if intent is None and not pending:
        return None
    history = ledger.entries(client, name)
    since = intent.sequence if intent else _since(history, pending)
    prior = [e for e in history if e.sequence <= since]
    after = [e for e in history if e.sequence > since]
    decided = after[-1] if after else None
    found = state.snapshot(client, name)
    already = ledger.removed_versions(history)

    if decided is not None and _done(client, name, decided, pending, found):
        for version in pending:
            state.mark_complete(client, name, version)
        outcome, removed = COMPLETED, []
    else:
        state.restore(client, name, _wanted(client, name, intent, prior, found, already | set(pending)))
        for version in pending:
            client.delete_model_version(name, version)
        named = {e.version for e in after if e.action != RECOVERED}
        gone = {v for v in named if v.isdigit() and not state.version_exists(client, name, v)}
        removed = sorted((set(pending) | gone) - already, key=int)
        outcome = ROLLED_BACK
    left = state.snapshot(client, name)
    undone = [e for e in after if e.action != RECOVERED] if outcome == ROLLED_BACK else []
    entry = None
    if pending or removed or undone or left != found or ledger.champion(history) != left[tracking.CHAMPION]:
        entry = ledger.append(
            client, name, RECOVERED, _subject(pending, decided, found, left), found[tracking.CHAMPION],
            left[tracking.CHAMPION], actor, _reason(outcome, intent, decided, pending, removed, undone, error),
            lineage,
            {"outcome": outcome, "versions": pending, "removed": removed, "undid": [e.sequence for e in undone],
             "interrupted": intent.holder if intent else "", "interrupted_actor": intent.actor if intent else "",
             "error": error, "found": found, "left": left},
            aliases=left,
        )
    if intent is not None:
        state.clear_intent(client, name)
    return Recovery(outcome, pending, entry)


def _subject(pending: list[str], decided: LedgerEntry | None, found: dict, left: dict) -> str:
    """The version a `recovered` entry is about."""
    if pending:
        return pending[0]
    if decided is not None and decided.action != RECOVERED:
        return decided.version
    return found[tracking.CHAMPION] or left[tracking.CHAMPION] or ""


def _reason(outcome: str, intent: state.Intent | None, decided: LedgerEntry | None, pending: list[str],
            removed: list[str], undone: list[LedgerEntry], error: str) -> str:
    who = f"the transaction of {intent.actor} ({intent.holder})" if intent else "an earlier transaction"
    why = f"failed with {error}" if error else "was interrupted"
    vs = ", ".join(f"v{v}" for v in pending)
    if outcome == COMPLETED:
        return (f"completed {vs or 'it'}: {who} {why} after ledger #{decided.sequence} ({decided.action} "
                f"v{decided.version}) with every step before `complete` done")
    parts = [f"rolled back: {who} {why}"]
    if undone:
        parts.append("undid " + ", ".join(f"#{e.sequence} ({e.action} v{e.version})" for e in undone))
    if removed:
        parts.append("removed " + ", ".join(f"v{v}" for v in removed))
    return "; ".join(parts)
