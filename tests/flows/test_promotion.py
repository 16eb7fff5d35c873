"""Promotion end to end with tiny models: the gate, the ledger, rollback and the CLI around them;
a failure injected between registration and the alias move; a registration killed half-way."""

import re

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.training import training_pipeline
from tlflow.registry import ledger, tracking

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]

# A "bad" model barely trains (one step at a tiny learning rate); a "good" one trains two epochs.
BAD = {"finetune.learning_rate": "1e-7", "finetune.epochs": "0.02"}
GOOD = {"finetune.learning_rate": "1e-3", "finetune.epochs": "3"}
COMMON = {"name": "gate", "data.max_train_rows": "800", "data.max_eval_rows": "600",
          "promote.max_class_drop": "0.3"}


def _run(tiny_config, **overrides):
    return training_pipeline(tiny_config(**COMMON, **overrides))


def _champion(client) -> str | None:
    mv = tracking.alias_version(client, "gate", "champion")
    return str(mv.version) if mv else None


def _cli(*args):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.slow
def test_gate_ledger_rollback_and_cli(project, prefect_server, tiny_config):
    first = _run(tiny_config, **BAD)
    assert first.decision.promoted and first.decision.reason.startswith("no champion yet")
    second = _run(tiny_config, **GOOD)
    assert second.decision.promoted, second.decision.reason
    assert second.decision.interval[0] > 0 and second.decision.new_score > second.decision.champion_score
    third = _run(tiny_config, **{**BAD, "finetune.seed": "5"})
    assert not third.decision.promoted  # a worse model is never promoted

    tracking.configure()
    client = MlflowClient()
    assert _champion(client) == "2"
    assert client.get_model_version("gate", "3").tags["decision"] == "challenger"
    assert "bootstrap" in client.get_model_version("gate", "3").tags["checks"].partition(" failed: ")[2].split(", ")

    code, out = _cli("rollback", "gate")
    assert code == 0 and "v2 -> v1" in out and _champion(client) == "1"
    code, out = _cli("rollback", "gate")  # v1 was the first champion: nothing before it
    assert code == 1 and "no previous champion before v1" in out and _champion(client) == "1"

    code, out = _cli("promote", "gate", "3")  # the gate still says no
    assert code == 1 and "not promoted" in out and _champion(client) == "1"
    code, out = _cli("promote", "gate", "2")
    assert code == 0 and "manual-promotion" in out and _champion(client) == "2"
    code, out = _cli("promote", "gate", "3", "--force")
    assert code == 1 and "needs --reason" in out
    code, out = _cli("promote", "gate", "3", "--force", "--reason", "incident 42: v2 mislabels refunds")
    assert code == 0 and "forced-promotion" in out and _champion(client) == "3"

    history = ledger.entries(client, "gate")
    assert [(e.sequence, e.action, e.version, e.champion_before, e.champion_after) for e in history] == [
        (1, "promoted", "1", None, "1"),
        (2, "promoted", "2", "1", "2"),
        (3, "rejected", "3", "2", "2"),
        (4, "rollback", "1", "2", "1"),
        (5, "rejected", "3", "1", "1"),
        (6, "manual-promotion", "2", "1", "2"),
        (7, "forced-promotion", "3", "2", "3"),
    ]
    assert history[1].data_md5 == tracking.data_version() and history[1].prefect_flow_run_id
    assert history[1].actor.startswith("flow training_pipeline") and history[3].actor.startswith("cli user")
    assert "incident 42" in history[6].reason
    checks = {c["name"]: c for c in history[1].decision["checks"]}
    assert set(checks) == {"min_delta", "bootstrap", "max_class_drop", "max_slice_drop"}
    assert checks["bootstrap"]["passed"]
    assert not {c["name"]: c for c in history[2].decision["checks"]}["bootstrap"]["passed"]  # v3's registration

    code, out = _cli("history", "gate")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == [str(i) for i in range(1, 8)]
    assert re.search(r"rollback\s+v1\s+2 -> 1", out)


@pytest.fixture(scope="module")
def gate_v1(module_project, prefect_server, tiny_config):
    """One barely trained model, v1 and champion of 'gate', trained once for all the error cases
    (each must leave it as it is, so they can share it)."""
    _run(tiny_config, **BAD)
    return module_project


@pytest.mark.parametrize(("args", "message"), [
    (["history", "nope"], "no registered model 'nope'"),
    (["promote", "nope", "1"], "no registered model 'nope'"),
    (["promote", "gate", "9"], "model 'gate' has no version 9"),
    (["promote", "gate", "x"], "version must be a number"),
    (["rollback", "nope"], "no registered model 'nope'"),
    (["rollback", "gate"], "'gate' has no previous champion before v1"),
])
def test_invalid_requests_are_one_line_errors_that_change_nothing(args, message, gate_v1):
    tracking.configure()
    client = MlflowClient()
    code, out = _cli(*args)
    assert code == 1 and message in out and len(out.strip().splitlines()) == 1
    assert _champion(client) == "1" and len(ledger.entries(client, "gate")) == 1
