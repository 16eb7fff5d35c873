"""What a registry transaction reads and writes besides the ledger: the aliases, the
`registration` tag of each version, and the model's intent marker.

- a version is created `registration=pending` and tagged `complete` as a transaction's last step;
- the intent marker, the registered-model tag `tlflow.transaction`, is written before a
  transaction changes anything (who holds it, the last ledger sequence, every alias as it was) and
  deleted once the transaction ended cleanly: one left behind tells the next transaction that the
  previous one was interrupted (`tlflow.registry.recovery`), even when it registered no version.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tlflow.registry import tracking
from tlflow.registry.descriptions import model_description

#: The version tag that says whether a registration finished; its values.
REGISTRATION_TAG = "registration"
PENDING, COMPLETE = "pending", "complete"

#: The aliases a promotion decides.
ALIASES = (tracking.CHAMPION, tracking.CHALLENGER)
#: The aliases a transaction snapshots and puts back on failure.
SNAPSHOT_ALIASES = (*ALIASES, tracking.OPTIMIZED)

#: The registered-model tag holding the `Intent` of a running (or interrupted) transaction.
INTENT_TAG = "tlflow.transaction"


def exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def version_exists(client: MlflowClient, name: str, version: str) -> bool:
    try:
        client.get_model_version(name, version)
        return True
    except MlflowException:
        return False


def aliases(client: MlflowClient, name: str, names: tuple[str, ...] = ALIASES) -> dict[str, str | None]:
    """The version behind each alias of `names` (None: not set)."""
    return {a: (str(mv.version) if (mv := tracking.alias_version(client, name, a)) else None) for a in names}


def snapshot(client: MlflowClient, name: str) -> dict[str, str | None]:
    """Every alias a transaction may move, as it is now."""
    return aliases(client, name, SNAPSHOT_ALIASES)


def differences(recorded: Mapping[str, str | None], found: Mapping[str, str | None]) -> dict[str, tuple]:
    """The aliases of `recorded` that point elsewhere in `found`: alias -> (recorded, found)
    versions (None: not set)."""
    return {alias: (version, found.get(alias)) for alias, version in recorded.items() if found.get(alias) != version}


def restore(client: MlflowClient, name: str, wanted: Mapping[str, str | None]) -> None:
    """Point each alias of `wanted` at its version again (None: remove it). Aliases already right
    are left alone; one whose version no longer exists is removed. Any other failure raises."""
    current = aliases(client, name, tuple(wanted))
    for alias, version in wanted.items():
        if version is not None and not version_exists(client, name, version):
            version = None
        if current[alias] == version:
            continue
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, version)


def pending_versions(client: MlflowClient, name: str) -> list[str]:
    """Versions whose registration has not finished, oldest first."""
    found = client.search_model_versions(f"name = '{name}' and tags.{REGISTRATION_TAG} = '{PENDING}'")
    return sorted((str(mv.version) for mv in found), key=int)


def mark_complete(client: MlflowClient, name: str, version: str) -> None:
    """The version's registration finished."""
    client.set_model_version_tag(name, version, REGISTRATION_TAG, COMPLETE)


@dataclass(frozen=True)
class Intent:
    """A transaction under way: who runs it, the ledger sequence it started after, the aliases before."""

    holder: str  # host:pid
    actor: str
    started: float  # epoch seconds
    sequence: int  # the last ledger sequence when it began (0: none)
    before: dict  # alias -> version (None: not set)

    @classmethod
    def now(cls, actor: str, sequence: int, before: Mapping[str, str | None]) -> Intent:
        return cls(f"{socket.gethostname()}:{os.getpid()}", actor, time.time(), sequence, dict(before))


def write_intent(client: MlflowClient, name: str, intent: Intent) -> None:
    """Record that a transaction begins on `name` (creating the registered model on first use, with
    its description; one created without is given it)."""
    try:
        described = bool(client.get_registered_model(name).description)
    except MlflowException:
        try:
            client.create_registered_model(name, description=model_description(name))
            described = True
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            described = False
    if not described:
        client.update_registered_model(name, description=model_description(name))
    client.set_registered_model_tag(name, INTENT_TAG, json.dumps(asdict(intent)))


def read_intent(client: MlflowClient, name: str) -> Intent | None:
    """The intent an interrupted transaction left on `name` (None: none)."""
    try:
        tags = client.get_registered_model(name).tags or {}
    except MlflowException:
        return None
    raw = tags.get(INTENT_TAG)
    return Intent(**json.loads(raw)) if raw else None


def clear_intent(client: MlflowClient, name: str) -> None:
    """The transaction ended cleanly."""
    client.delete_registered_model_tag(name, INTENT_TAG)
