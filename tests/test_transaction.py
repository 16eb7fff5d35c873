"""The registry transaction with a real MLflow store: a version registered through it is complete
and recorded; an exception at any step leaves the aliases as they were and no pending version; what
a killed transaction left is undone by the next one; a registered version loads with the installed
code, never with the code stored beside it."""

from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tlflow.registry import ledger, tracking, transaction
from tlflow.registry.champion import load_version
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import lock_name
from tlflow.registry.transaction import Changes, Record

pytestmark = [pytest.mark.integration]

ASSET = Path(__file__).parent / "assets" / "legacy_task_model"
NAME = "txn"
LINEAGE = Lineage(data_md5="d" * 32, git_commit="abc", eval_split="split-1")


@pytest.fixture
def store(project):
    """A configured store with a tiny logged TaskModel (the files of tests/assets, uploaded as a
    run's artifacts); returns (client, model_uri)."""
    tracking.configure()
    with mlflow.start_run(experiment_id=tracking.ensure_experiment("txn")) as run:
        mlflow.log_artifacts(str(ASSET), "model")
    return MlflowClient(), f"runs:/{run.info.run_id}/model"


def _promote(uri: str, tags: dict[str, str] | None = None):
    """An action that registers `uri` and makes it champion."""

    def act(changes: Changes) -> Record:
        version = changes.register(uri, {**LINEAGE.tags(), **(tags or {})})
        changes.describe(version, f"v{version}")
        changes.move(tracking.CHAMPION, version)
        return Record("promoted", version, changes.champion, version, "test")

    return act


def _state(client):
    versions = sorted(str(mv.version) for mv in client.search_model_versions(f"name = '{NAME}'"))
    pending = [str(mv.version) for mv in client.search_model_versions(f"name = '{NAME}'")
               if (mv.tags or {}).get(transaction.REGISTRATION_TAG) != transaction.COMPLETE]
    return versions, pending, transaction.snapshot(client, NAME)


def _lock_released(client) -> bool:
    try:
        client.get_registered_model(lock_name(NAME))
        return False
    except MlflowException:
        return True


def test_a_version_registered_in_a_transaction_is_complete_and_recorded(store):
    client, uri = store
    steps = []
    done = transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE, on_step=steps.append)
    assert steps == list(transaction.STEPS)
    assert done.version == "1" and done.entry.sequence == 1 and done.record.action == "promoted"
    mv = client.get_model_version(NAME, "1")
    assert mv.tags["registration"] == "complete" and mv.tags["data_md5"] == LINEAGE.data_md5
    assert Lineage.from_tags(mv.tags) == LINEAGE and mv.description == "v1"
    assert _state(client) == (["1"], [], {"champion": "1", "challenger": None, "optimized": None})
    entry = ledger.entries(client, NAME)[0]
    assert (entry.action, entry.version, entry.champion_before, entry.champion_after, entry.actor) == (
        "promoted", "1", None, "1", "tester")
    assert entry.data_md5 == LINEAGE.data_md5 and entry.git_commit == "abc"
    assert _lock_released(client)


@pytest.mark.parametrize("failing", transaction.STEPS)
def test_an_exception_at_any_step_leaves_the_aliases_and_no_pending_version(store, failing):
    client, uri = store
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)
    client.set_registered_model_alias(NAME, tracking.OPTIMIZED, "1")
    before = _state(client)
    entries = len(ledger.entries(client, NAME))

    def fail(step):
        if step == failing:
            raise RuntimeError(f"injected at {step}")

    with pytest.raises(RuntimeError, match=f"injected at {failing}"):
        transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE, on_step=fail)
    assert _state(client) == before  # the aliases as they were, v2 gone, nothing pending
    assert _lock_released(client)
    # The ledger only appends: an entry is written from the ledger step on.
    assert len(ledger.entries(client, NAME)) == entries + (failing == transaction.STEP_COMPLETE)


def test_an_alias_move_is_undone_when_its_ledger_entry_fails(store):
    client, uri = store
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)

    def back_to_v1(changes: Changes) -> Record:
        changes.move(tracking.CHAMPION, "1")
        return Record("rollback", "1", changes.champion, "1", "test")

    def fail(step):
        if step == transaction.STEP_LEDGER:
            raise RuntimeError("injected")

    with pytest.raises(RuntimeError):
        transaction.transact(client, NAME, back_to_v1, "tester", LINEAGE, on_step=fail)
    assert transaction.aliases(client, NAME)[tracking.CHAMPION] == "2"


def test_what_a_killed_transaction_left_is_undone_by_the_next(store):
    client, uri = store
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)
    # Killed after the alias move: a pending version holding `champion` and `challenger`.
    orphan = str(tracking.register_version(uri, NAME, {"registration": transaction.PENDING}).version)
    client.set_registered_model_alias(NAME, tracking.CHAMPION, orphan)
    client.set_registered_model_alias(NAME, tracking.CHALLENGER, orphan)
    assert transaction.clean_pending(client, NAME) == [orphan]
    assert _state(client) == (["1"], [], {"champion": "1", "challenger": None, "optimized": None})

    # An alias moved outside tlflow (e.g. in the MLflow UI) with nothing pending is not undone.
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)  # v3, champion
    client.set_registered_model_alias(NAME, tracking.CHAMPION, "1")
    assert transaction.clean_pending(client, NAME) == []
    assert transaction.aliases(client, NAME)[tracking.CHAMPION] == "1"
    client.set_registered_model_alias(NAME, tracking.CHAMPION, "3")

    # Killed after the ledger entry, before `complete`: the recorded champion before it.
    killed = str(tracking.register_version(uri, NAME, {"registration": transaction.PENDING}).version)
    client.set_registered_model_alias(NAME, tracking.CHAMPION, killed)
    ledger.append(client, NAME, "promoted", killed, "3", killed, "tester", "killed", LINEAGE, {})
    assert transaction.clean_pending(client, NAME) == [killed]
    assert transaction.aliases(client, NAME)[tracking.CHAMPION] == "3"


def test_a_version_loads_with_the_installed_code(store, monkeypatch):
    client, uri = store
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)

    def no_code(*args, **kwargs):
        raise AssertionError("the code stored with the model must not run")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", no_code)
    loaded = load_version(f"models:/{NAME}/1")
    assert loaded.settings.task == "text-classification" and not loaded.model.training
    with torch.no_grad():
        logits = loaded.model(**loaded.tokenizer(["a fine film"], return_tensors="pt")).logits
    assert logits.shape == (1, 2)
