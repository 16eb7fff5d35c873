"""The promotion ledger: one MLflow run per decision, in the experiment `tlflow-promotion-ledger`.

Every decision (promoted, rejected, manual promotion, forced promotion, rollback, and the
registration of an optimized variant of the champion: optimize) becomes a run
whose tags hold who decided what, against which champion, on which data, and the aliases as the
decision left them (`aliases`); `decision.json` holds every check with its numbers. Runs live in
the same MLflow store as the registry, so the ledger travels with it. The tool only ever appends:
nothing here updates or deletes a ledger run. Entries of one model are numbered (`sequence`)
under that model's promotion lock.

An alias moved outside tlflow (the MLflow registry UI's alias editor, or any client) is taken in
by an entry with action `external-alias-change` (`tlflow.registry.reconcile`) before the ledger is
read or a transaction acts, so the last entry's aliases (`LedgerEntry.aliases_after`) are the
registry's.

An interrupted transaction is settled by a compensating entry, action `recovered`
(`tlflow.registry.recovery`): its `decision` says whether the interrupted decision was completed
or rolled back, which versions were removed (`removed`) and which entries were undone (`undid`).
The champion is always the `champion_after` of the last entry, and an entry that names a version
which no longer exists is followed by a `recovered` entry that lists it as removed.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tlflow.registry.descriptions import LEDGER_DESCRIPTION, NOTE_TAG, ledger_run_description
from tlflow.registry.lineage import Lineage
from tlflow.registry.tracking import CHAMPION, ensure_experiment

LEDGER_EXPERIMENT = "tlflow-promotion-ledger"
#: The compensating action: an interrupted transaction completed or rolled back (`tlflow.registry.recovery`).
RECOVERED = "recovered"
#: An alias moved outside tlflow, found and recorded (`tlflow.registry.reconcile`).
EXTERNAL = "external-alias-change"
ACTIONS = ("promoted", "rejected", "manual-promotion", "forced-promotion", "rollback", "optimize", "unlock",
           RECOVERED, EXTERNAL)
#: The lineage every entry records (`Lineage` fields, under the same tag names).
LINEAGE_FIELDS = ("data_md5", "git_commit", "prefect_flow_run_id", "eval_split")


@dataclass(frozen=True)
class LedgerEntry:
    sequence: int
    time: float  # epoch seconds
    model: str
    action: str
    version: str  # the version the decision is about
    champion_before: str | None
    champion_after: str | None
    actor: str
    reason: str
    data_md5: str
    git_commit: str
    prefect_flow_run_id: str
    decision: dict  # every check with its numbers (decision.json)
    run_id: str
    aliases: dict[str, str | None] = field(default_factory=dict)  # as the decision left them ({}: not recorded)

    @property
    def changed_champion(self) -> bool:
        return self.champion_after != self.champion_before

    @property
    def aliases_after(self) -> dict[str, str | None]:
        """The aliases as this decision left them: those it recorded, else (entries written before
        the aliases were recorded) its champion."""
        return dict(self.aliases) or {CHAMPION: self.champion_after}


def entries(client: MlflowClient, model: str) -> list[LedgerEntry]:
    """Ledger entries of `model`, oldest first."""
    experiment = client.get_experiment_by_name(LEDGER_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.model = '{model}'", max_results=50000
    )
    out = []
    for run in runs:
        t = run.data.tags
        out.append(LedgerEntry(
            sequence=int(t["sequence"]), time=run.info.start_time / 1000, model=t["model"], action=t["action"],
            version=t["version"], champion_before=t.get("champion_before") or None,
            champion_after=t.get("champion_after") or None, actor=t.get("actor", ""), reason=t.get("reason", ""),
            data_md5=t.get("data_md5", ""), git_commit=t.get("git_commit", ""),
            prefect_flow_run_id=t.get("prefect_flow_run_id", ""), decision=_read_decision(client, run),
            run_id=run.info.run_id, aliases=json.loads(t.get("aliases", "{}")),
        ))
    return sorted(out, key=lambda e: e.sequence)


def append(
    client: MlflowClient,
    model: str,
    action: str,
    version: str,
    champion_before: str | None,
    champion_after: str | None,
    actor: str,
    reason: str,
    lineage: Lineage,
    decision: dict,
    aliases: dict[str, str | None] | None = None,
) -> LedgerEntry:
    """Append one entry (call it while holding the model's promotion lock); `aliases`: the
    aliases as the decision left them, which a recovery checks against."""
    if action not in ACTIONS:
        raise ValueError(f"unknown ledger action '{action}' (one of {', '.join(ACTIONS)})")
    previous = entries(client, model)
    sequence = previous[-1].sequence + 1 if previous else 1
    experiment_id = ensure_experiment(LEDGER_EXPERIMENT, LEDGER_DESCRIPTION)
    tags = {
        "model": model, "sequence": str(sequence), "action": action, "version": version,
        "champion_before": champion_before or "", "champion_after": champion_after or "",
        "actor": actor, "reason": reason[:4900],
        **{name: getattr(lineage, name) for name in LINEAGE_FIELDS},
        "decision": _decision_tag(decision),
        **({"aliases": json.dumps(aliases)} if aliases is not None else {}),
        NOTE_TAG: ledger_run_description(action, version, reason)[:4900],
    }
    run = client.create_run(experiment_id, start_time=int(time.time() * 1000), tags=tags,
                            run_name=f"{model} #{sequence} {action} v{version}")
    client.log_text(run.info.run_id, json.dumps(decision, indent=2, default=str), "decision.json")
    client.set_terminated(run.info.run_id)
    return entries(client, model)[-1]


#: Longest `decision` tag; a longer decision is only in the entry's decision.json (MLflow's SQL
#: stores cap tag values, and a cut JSON would not parse).
DECISION_TAG_LIMIT = 4900
#: The `decision` tag of an entry whose decision is too long for a tag.
_IN_ARTIFACT = {"in_artifact": "decision.json"}


def _decision_tag(decision: dict) -> str:
    text = json.dumps(decision, default=str)
    return text if len(text) <= DECISION_TAG_LIMIT else json.dumps(_IN_ARTIFACT)


def _read_decision(client: MlflowClient, run) -> dict:
    """The entry's decision: its tag, or its decision.json when the tag says it is there (an entry
    whose upload was interrupted reads as no decision, as an entry without one)."""
    decision = json.loads(run.data.tags.get("decision", "{}"))
    if decision != _IN_ARTIFACT:
        return decision
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run.info.run_id, "decision.json", folder)
        except MlflowException:
            return {}
        return json.loads(Path(path).read_text(encoding="utf-8"))


def aliases_after(history: list[LedgerEntry], names: tuple[str, ...]) -> dict[str, str | None]:
    """The aliases as the ledger's last entry left them; an empty ledger has set none of `names`."""
    return history[-1].aliases_after if history else dict.fromkeys(names)


def removed_versions(history: list[LedgerEntry]) -> set[str]:
    """The versions that `recovered` entries say were removed (their decisions were undone)."""
    return {str(v) for e in history if e.action == RECOVERED for v in e.decision.get("removed", [])}


def champion(history: list[LedgerEntry]) -> str | None:
    """The champion as the ledger records it: the `champion_after` of the last entry."""
    return history[-1].champion_after if history else None


def previous_champion(history: list[LedgerEntry], current: str | None) -> str | None:
    """The champion before `current`: the `champion_before` of the latest decision (not a
    rollback, not a recovery) that made `current` champion, so repeated rollbacks walk back
    through history (None when there is nothing before). `optimize` entries never change the
    champion, so they are never taken for a promotion; an `external-alias-change` that moved the
    champion is one. A version that a `recovered` entry removed is skipped: the walk goes on to the
    champion before it."""
    removed = removed_versions(history)
    for entry in reversed(history):
        if entry.champion_after == current and entry.changed_champion and entry.action not in ("rollback", RECOVERED):
            if entry.champion_before not in removed:
                return entry.champion_before
            current = entry.champion_before
    return None


def format_history(history: list[LedgerEntry]) -> str:
    """The ledger as a fixed-width table for a terminal."""
    if not history:
        return "no promotion decisions recorded"
    width = max(24, *(len(e.actor) for e in history))  # the whole actor: a flow run's id ends it
    lines = [f"{'#':>3}  {'time (UTC)':19}  {'action':21} {'version':>7}  {'champion':>14}  {'actor':{width}} reason"]
    for e in history:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.time))
        champ = f"{e.champion_before or '-'} -> {e.champion_after or '-'}"
        version = "v" + e.version if e.version else "-"
        lines.append(f"{e.sequence:>3}  {when:19}  {e.action:21} {version:>7}  {champ:>14}  {e.actor:{width}} "
                     f"{e.reason}")
    return "\n".join(lines)
