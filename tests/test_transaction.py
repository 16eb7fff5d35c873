"""The registry transaction with a real MLflow store: a version registered through it is complete
and recorded; an exception before the ledger entry leaves the aliases as they were and no pending
version, one after it completes the recorded decision; what an interrupted transaction left is
completed or rolled back by the next one, following the ledger; a registered version loads with the
installed code, never with the code stored beside it. (Kills and exceptions at every step of every
action: tests/test_recovery.py.)"""

import json
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tlflow.registry import ledger, recovery, state, tracking, transaction
from tlflow.registry.champion import load_version
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import lock_name
from tlflow.registry.reconcile import reconcile
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
def test_an_exception_at_any_step_leaves_the_aliases_or_completes_the_recorded_decision(store, failing):
    client, uri = store
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)
    client.set_registered_model_alias(NAME, tracking.OPTIMIZED, "1")
    reconcile(client, NAME, "tester")  # an alias set outside tlflow, recorded as every transaction would
    before = _state(client)
    entries = len(ledger.entries(client, NAME))

    def fail(step):
        if step == failing:
            raise RuntimeError(f"injected at {step}")

    if failing != transaction.STEP_COMPLETE:
        with pytest.raises(RuntimeError, match=f"injected at {failing}"):
            transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE, on_step=fail)
        assert _state(client) == before  # the aliases as they were, v2 gone, nothing pending
        assert len(ledger.entries(client, NAME)) == entries  # nothing was decided
    else:  # after the ledger entry the decision stands: the completion is retried, and recorded
        done = transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE, on_step=fail)
        assert done.version == "2"
        assert _state(client) == (["1", "2"], [], {"champion": "2", "challenger": None, "optimized": "1"})
        promoted, recovered = ledger.entries(client, NAME)[entries:]
        assert (promoted.action, promoted.version, recovered.action, recovered.version) == (
            "promoted", "2", "recovered", "2")
        assert recovered.decision["outcome"] == "completed" and "injected at complete" in recovered.reason
    assert state.read_intent(client, NAME) is None
    assert _lock_released(client)


def test_an_append_that_fails_after_writing_its_entry_completes_the_decision(store, monkeypatch):
    """The entry's run is created, then the upload of its decision.json fails: the entry exists,
    so the decision stands and is completed (recorded), never undone behind the ledger's back."""
    client, uri = store
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)

    log_text = MlflowClient.log_text

    def upload_fails_once(self, *args, **kwargs):
        monkeypatch.setattr(MlflowClient, "log_text", log_text)
        raise MlflowException("injected: artifact store gone for a moment")

    monkeypatch.setattr(MlflowClient, "log_text", upload_fails_once)
    done = transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)
    assert (done.version, done.entry.action, done.entry.version) == ("2", "promoted", "2")
    assert _state(client) == (["1", "2"], [], {"champion": "2", "challenger": None, "optimized": None})
    assert [(e.action, e.version) for e in ledger.entries(client, NAME)] == [
        ("promoted", "1"), ("promoted", "2"), ("recovered", "2")]
    assert state.read_intent(client, NAME) is None and _lock_released(client)


def test_a_decision_too_long_for_a_tag_reads_back_whole_from_its_artifact(store):
    """A decision above the tag limit (many checks with long details) is kept whole in
    decision.json and read back from there; a short one stays in its tag."""
    client, _ = store
    long = {"checks": [{"name": f"floor_{i}", "passed": True, "detail": "x" * 300} for i in range(30)]}
    short = {"checks": [{"name": "bootstrap", "passed": False, "detail": "interval [-0.01, +0.02]"}]}
    assert len(json.dumps(long)) > ledger.DECISION_TAG_LIMIT
    for decision in (long, short):
        ledger.append(client, NAME, "rejected", "1", None, None, "tester", "test", LINEAGE, decision)
    first, second = ledger.entries(client, NAME)
    assert (first.decision, second.decision) == (long, short)
    assert json.loads(client.get_run(second.run_id).data.tags["decision"]) == short


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


def test_what_an_older_tlflow_left_is_settled_by_the_ledger(store):
    """A pending version without an intent marker (killed under an older tlflow, which wrote none)."""
    client, uri = store
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)
    # Killed after the alias move, before the ledger entry: rolled back, recorded.
    orphan = str(tracking.register_version(uri, NAME, {"registration": transaction.PENDING}).version)
    client.set_registered_model_alias(NAME, tracking.CHAMPION, orphan)
    client.set_registered_model_alias(NAME, tracking.CHALLENGER, orphan)
    settled = recovery.recover(client, NAME, "tester", LINEAGE)
    assert (settled.outcome, settled.versions, settled.entry.decision["removed"]) == ("rolled back", ["2"], ["2"])
    assert _state(client) == (["1"], [], {"champion": "1", "challenger": None, "optimized": None})

    # An alias moved outside tlflow (e.g. in the MLflow UI) with nothing pending is not undone.
    transaction.transact(client, NAME, _promote(uri), "tester", LINEAGE)  # v3, champion
    client.set_registered_model_alias(NAME, tracking.CHAMPION, "1")
    assert recovery.recover(client, NAME, "tester", LINEAGE) is None
    assert transaction.aliases(client, NAME)[tracking.CHAMPION] == "1"
    client.set_registered_model_alias(NAME, tracking.CHAMPION, "3")

    # Killed after the ledger entry, before `complete`, aliases in place: completed, recorded.
    killed = str(tracking.register_version(uri, NAME, {"registration": transaction.PENDING}).version)
    client.set_registered_model_alias(NAME, tracking.CHAMPION, killed)
    ledger.append(client, NAME, "promoted", killed, "3", killed, "tester", "killed", LINEAGE, {})
    settled = recovery.recover(client, NAME, "tester", LINEAGE)
    assert (settled.outcome, settled.entry.action, settled.entry.champion_after) == ("completed", "recovered", killed)
    assert _state(client)[1:] == ([], {"champion": killed, "challenger": None, "optimized": None})

    # The same with the alias not moved (an undo half done): rolled back to the ledger's champion.
    again = str(tracking.register_version(uri, NAME, {"registration": transaction.PENDING}).version)
    ledger.append(client, NAME, "promoted", again, killed, again, "tester", "killed", LINEAGE, {})
    settled = recovery.recover(client, NAME, "tester", LINEAGE)
    assert settled.outcome == "rolled back" and settled.entry.decision["removed"] == [again]
    assert settled.entry.champion_after == killed == transaction.aliases(client, NAME)[tracking.CHAMPION]
    history = ledger.entries(client, NAME)
    assert ledger.previous_champion(history, killed) == "3"
    assert "recovered" in ledger.format_history(history)


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
