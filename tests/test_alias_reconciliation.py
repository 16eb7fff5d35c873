"""Aliases moved outside tlflow (what the MLflow registry UI's alias editor does: `MlflowClient().
set_registered_model_alias`) are taken into the ledger before it is read (`tlflow history`) and
before any transaction acts (rollback, promotion): an `external-alias-change` entry, the version
marked with its new decision, and rollback walking back through the change."""

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from tests import registry_faults as rf
from tlflow.registry import ledger, reconcile, state, tracking
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import registry_lock

pytestmark = [pytest.mark.integration]

ASSET = Path(__file__).parent / "assets" / "legacy_task_model"


@pytest.fixture
def base(project):
    """v1 promoted, v2 champion, v3 challenger (rejected); returns (client, model uri)."""
    tracking.configure()
    with mlflow.start_run(experiment_id=tracking.ensure_experiment("reconcile")) as run:
        mlflow.log_artifacts(str(ASSET), "model")
    uri = f"runs:/{run.info.run_id}/model"
    client = MlflowClient()
    rf.base(client, uri)
    return client, uri


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_a_champion_moved_in_the_registry_ui_shows_in_history_and_rolls_back(base):
    client, _ = base
    assert client.get_model_version(rf.NAME, "3").tags["decision"] == "challenger"
    client.set_registered_model_alias(rf.NAME, tracking.CHAMPION, "3")  # the registry UI's alias editor

    code, out = _cli("history", rf.NAME)
    assert code == 0, out
    last = out.strip().splitlines()[-1]
    assert last.split()[3:5] == [ledger.EXTERNAL, "v3"] and "2 -> 3" in last, out
    entry = ledger.entries(client, rf.NAME)[-1]
    assert (entry.sequence, entry.action, entry.champion_before, entry.champion_after) == (4, ledger.EXTERNAL, "2", "3")
    assert entry.actor == reconcile.EXTERNAL_ACTOR and entry.aliases["champion"] == "3"
    assert entry.decision["changes"] == {"champion": {"from": "2", "to": "3"}}
    assert entry.decision["noticed_by"].startswith("cli user") and entry.decision["changed_after"]
    v3 = client.get_model_version(rf.NAME, "3")
    assert v3.tags["decision"] == "champion" and "ledger #4" in v3.tags["decision_reason"]
    assert "set outside tlflow in the MLflow registry (ledger #4" in v3.description

    assert _cli("history", rf.NAME)[0] == 0  # nothing new: nothing appended, no second note
    assert len(ledger.entries(client, rf.NAME)) == 4
    assert client.get_model_version(rf.NAME, "3").description.count("outside tlflow") == 1

    code, out = _cli("rollback", rf.NAME)
    assert code == 0 and "champion v3 -> v2" in out, out
    assert state.aliases(client, rf.NAME)["champion"] == "2"
    assert [e.action for e in ledger.entries(client, rf.NAME)][-2:] == [ledger.EXTERNAL, "rollback"]


def test_a_transaction_records_the_change_before_it_acts(base):
    client, uri = base
    client.set_registered_model_alias(rf.NAME, tracking.CHAMPION, "1")
    client.delete_registered_model_alias(rf.NAME, tracking.CHALLENGER)
    outcome = rf.register(client, uri, rf.GOOD)  # judged against the champion the registry has
    assert outcome.decision.promoted and outcome.decision.champion_version == "1"
    history = ledger.entries(client, rf.NAME)
    external, promoted = history[-2:]
    assert (external.action, external.champion_before, external.champion_after) == (ledger.EXTERNAL, "2", "1")
    assert external.decision["changes"] == {"champion": {"from": "2", "to": "1"},
                                            "challenger": {"from": "3", "to": None}}
    assert (promoted.action, promoted.champion_before) == ("promoted", "1")
    assert not reconcile.external_changes(client, rf.NAME)


def test_a_read_during_another_transaction_does_not_wait(base):
    client, _ = base
    client.set_registered_model_alias(rf.NAME, tracking.CHAMPION, "3")
    with registry_lock(client, rf.NAME):  # a live holder: this process
        note = reconcile.settle(client, rf.NAME, "reader", Lineage())
    assert note and "under way" in note and "held by" in note
    assert len(ledger.entries(client, rf.NAME)) == 3
    assert reconcile.settle(client, rf.NAME, "reader", Lineage()) is None
    assert ledger.entries(client, rf.NAME)[-1].action == ledger.EXTERNAL
