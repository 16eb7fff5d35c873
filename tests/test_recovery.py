"""Fault injection into every registry action: promotion, rejection, manual promotion, rollback and
optimize (a variant registered), each killed (SIGKILL, in a child process) and raised at every step
of its transaction, and between its version's registration and its alias move. Then the next
pipeline step (another register-and-promote) and a rollback run, and the registry must follow the
ledger: every alias on an existing, complete version; the champion the last ledger entry names; no
entry naming a missing version without a `recovered` entry that removed it; rollback working.

Each case starts from a copy of one store holding the base state (v1, v2 promoted, v3 rejected), so
a case costs its own transactions only; the killed children fork from a server that imported the
registry once."""

from __future__ import annotations

import multiprocessing
import shutil
from multiprocessing import forkserver
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests import registry_faults as rf
from tlflow.registry import ledger, registration, state, tracking, transaction
from tlflow.registry.lock import lock_name

pytestmark = [pytest.mark.integration]

ASSET = Path(__file__).parent / "assets" / "legacy_task_model"
POINTS = (*transaction.STEPS, rf.REGISTERED)
#: What the fork server imports, so that a child costs a fork and its own store connection only.
PRELOAD = ["tests.registry_faults", "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
           "mlflow.store.db.utils", "alembic.command", "sqlalchemy.dialects.sqlite"]
CASES = [(action, point, mode) for action in rf.ACTIONS for point in POINTS for mode in ("kill", "raise")
         if point != rf.REGISTERED or action in rf.REGISTERING]
#: The champion after each action on the base state (v2 champion, v3 challenger), when it stands.
CHAMPION_AFTER = {"promotion": "4", "rejection": "2", "manual-promotion": "3", "rollback": "1", "optimize": "2"}


class Injected(RuntimeError):
    pass


@pytest.fixture(scope="module")
def template(module_project):
    """The base state in a store of its own; returns (database path, model uri)."""
    tracking.configure()
    with mlflow.start_run(experiment_id=tracking.ensure_experiment("recovery")) as run:
        mlflow.log_artifacts(str(ASSET), "model")
    uri = f"runs:/{run.info.run_id}/model"
    rf.base(MlflowClient(), uri)
    return Path(tracking.tracking_uri().removeprefix("sqlite:///")), uri


@pytest.fixture(scope="module")
def fork_server():
    """Children forked from a server that imported the registry and MLflow's SQL stores once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()  # starts now, importing while the template store is built
    return ctx


@pytest.fixture
def store(template, tmp_path, monkeypatch):
    """A copy of the base state; returns (client, tracking uri, model uri)."""
    db, uri = template
    shutil.copy(db, tmp_path / "mlflow.db")
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    tracking.configure()
    return MlflowClient(), tracking_uri, uri


def _check(client: MlflowClient) -> list[ledger.LedgerEntry]:
    """The invariants; returns the ledger."""
    versions = {str(mv.version): mv for mv in client.search_model_versions(f"name = '{rf.NAME}'")}
    found = transaction.snapshot(client, rf.NAME)
    for alias, version in found.items():
        assert version is None or version in versions, f"{alias} on missing v{version}"
        if version is not None:
            assert versions[version].tags.get(transaction.REGISTRATION_TAG) == transaction.COMPLETE, (alias, version)
    assert not state.pending_versions(client, rf.NAME) and state.read_intent(client, rf.NAME) is None
    history = ledger.entries(client, rf.NAME)
    assert found[tracking.CHAMPION] == ledger.champion(history), ledger.format_history(history)
    for entry in history:
        for named in {entry.version, entry.champion_before, entry.champion_after} - {None, ""}:
            if named not in versions:
                assert any(named in later.decision.get("removed", []) for later in history
                           if later.action == ledger.RECOVERED and later.sequence >= entry.sequence), (
                    f"ledger #{entry.sequence} names missing v{named} with no `recovered` entry\n"
                    + ledger.format_history(history))
    assert not state.exists(client, lock_name(rf.NAME))  # released, or broken (its holder was killed)
    return history


@pytest.mark.parametrize(("action", "point", "mode"), CASES, ids=["-".join(c) for c in CASES])
def test_the_registry_follows_the_ledger_after_a_fault(fork_server, store, action, point, mode):
    client, tracking_uri, uri = store
    entries_before = len(ledger.entries(client, rf.NAME))
    if mode == "kill":
        child = fork_server.Process(target=rf.killed_child, args=(tracking_uri, action, point, uri))
        child.start()
        child.join(120)
        assert child.exitcode == -9, f"the child was not killed at {point} (exit {child.exitcode})"
    else:
        def fault():
            raise Injected(f"injected at {point}")

        if point == transaction.STEP_COMPLETE:  # after the ledger entry: the decision is completed
            rf.act(client, action, uri, *rf.hooks(point, fault))
        else:
            with pytest.raises(Injected):
                rf.act(client, action, uri, *rf.hooks(point, fault))
    stands = point == transaction.STEP_COMPLETE  # the entry was written before the fault

    # The next pipeline step: a better model, judged against the champion the ledger names.
    champion = CHAMPION_AFTER[action] if stands else "2"
    outcome = rf.register(client, uri, rf.GOOD)
    assert outcome.decision.promoted and outcome.decision.champion_version == champion
    history = _check(client)
    decided = [e for e in history[entries_before:] if e.action not in (ledger.RECOVERED, "promoted")
               or (e.action == "promoted" and e.version != outcome.version)]
    if stands:  # the action's entry stands, naming an existing version
        assert [e.action for e in decided] == [{"promotion": "promoted", "rejection": "rejected"}.get(action, action)]
    else:  # nothing of the action was recorded, and whatever it left is gone
        assert decided == []
        assert transaction.snapshot(client, rf.NAME)[tracking.CHALLENGER] == "3"
        assert {str(mv.version) for mv in client.search_model_versions(f"name = '{rf.NAME}'")} == {
            "1", "2", "3", outcome.version}
    recovered = [e for e in history[entries_before:] if e.action == ledger.RECOVERED]
    if mode == "kill" and (point in (transaction.STEP_LEDGER, rf.REGISTERED)
                           or (point == transaction.STEP_COMPLETE and action in rf.REGISTERING)):
        assert recovered and recovered[0].actor == "tester", ledger.format_history(history)

    # Rollback afterwards: back to the champion the next step replaced.
    assert registration.rollback(client, rf.NAME, "tester", rf.LINEAGE) == (outcome.version, champion)
    _check(client)
