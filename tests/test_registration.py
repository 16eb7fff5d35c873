"""Registry safety with a real MLflow store: a failure between registration and the alias move
leaves the registry as it was; a registration killed half-way is cleaned up by the next one; two
processes promoting at the same moment are serialised by the registry lock."""

import json
import subprocess
import sys
import textwrap
import time

import mlflow
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from transformers import BertConfig, BertForSequenceClassification

from tests.registry_faults import LABELS, scores
from tlflow.config import load_config
from tlflow.modeling.models import load_tokenizer
from tlflow.registry import ledger, registration, tracking, transaction
from tlflow.registry.gate import Scores
from tlflow.registry.lineage import FIELDS, Lineage
from tlflow.registry.lock import lock_name
from tlflow.serving import log_task_model
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import check_config

pytestmark = [pytest.mark.integration]



@pytest.fixture
def store(project):
    """A configured MLflow store with one tiny logged model; returns (client, model_uri)."""
    tracking.configure()
    torch.manual_seed(0)
    tokenizer = load_tokenizer("minilm-l6")
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2, id2label=dict(enumerate(LABELS)),
    ))
    with mlflow.start_run(experiment_id=tracking.ensure_experiment("safety")):
        uri = log_task_model(model, tokenizer, TaskSettings("text-classification", max_length=16),
                             pd.DataFrame({"text": ["fine", "dull"]}))
    return MlflowClient(), uri


def _register(client, uri, new: Scores, on_step=None):
    cfg = check_config(load_config(None, ["name=safe"]))
    return registration.register_and_promote(
        client, cfg, uri, new, lambda v: scores(60), Lineage(data_md5="x"), "test", lambda v, d: "", on_step=on_step
    )


def _state(client):
    versions = sorted(str(v.version) for v in client.search_model_versions("name = 'safe'"))
    return versions, registration.aliases(client, "safe"), len(ledger.entries(client, "safe"))


def test_failure_after_the_alias_move_leaves_the_registry_as_it_was(store):
    client, uri = store
    _register(client, uri, scores(60))
    before = _state(client)
    assert before == (["1"], {"champion": "1", "challenger": None}, 1)

    def fail(step):
        if step == transaction.STEP_LEDGER:  # the version is registered and the alias moved
            raise RuntimeError("injected: disk full before the ledger entry")

    with pytest.raises(RuntimeError, match="injected"):
        _register(client, uri, scores(10), on_step=fail)
    assert _state(client) == before
    with pytest.raises(MlflowException):  # the lock was released, not left behind
        client.get_registered_model(lock_name("safe"))


def test_a_registration_killed_after_the_alias_move_is_undone_by_the_next(store):
    client, uri = store
    _register(client, uri, scores(60))
    # What a kill between alias move and ledger entry leaves: a pending version holding the alias.
    orphan = tracking.register_version(uri, "safe", {"registration": registration.PENDING})
    client.set_registered_model_alias("safe", "champion", orphan.version)
    outcome = _register(client, uri, scores(10))
    versions, aliases, entries = _state(client)
    assert str(orphan.version) not in versions
    assert outcome.decision.champion_version == "1"  # judged against the real champion
    assert aliases["champion"] == outcome.version and entries == 3  # promoted, recovered (orphan removed), promoted
    assert ledger.entries(client, "safe")[1].decision["removed"] == [str(orphan.version)]


#: The tags of a version registered by the training flow (no DP, not from a model selection): its
#: lineage, its primary test metric, the decision and the registration state. The rest of the
#: scores and every check with its numbers are in the description and the ledger.
VERSION_TAGS = {*FIELDS, "test_accuracy", "primary_metric", "decision", "decision_reason", registration.CHECKS_TAG,
                "registration"}


def test_a_version_carries_one_checks_summary_and_its_checks_are_in_the_ledger(store):
    client, uri = store
    cfg = check_config(load_config(None, ["name=safe"]))
    lineage = Lineage(**{name: f"{name}-value" for name in FIELDS})  # every lineage tag set, as the flow sets them
    metrics = {"test_accuracy": "0.5"}
    for n_wrong in (60, 100):  # v1 champion, v2 worse than it: rejected
        outcome = registration.register_and_promote(client, cfg, uri, scores(n_wrong), lambda v: scores(60), lineage,
                                                    "test", lambda v, d: "", tags=metrics)
    decision = outcome.decision
    failed = [c.name for c in decision.checks if not c.passed]
    assert not decision.promoted and "bootstrap" in failed and len(decision.checks) == 4
    tags = client.get_model_version("safe", "2").tags
    assert set(tags) == VERSION_TAGS and len(tags) == 18  # no `check.<name>` tags, no champion_* tags
    assert tags["checks"] == f"{4 - len(failed)} passed, {len(failed)} failed: {', '.join(failed)}"
    assert client.get_model_version("safe", "1").tags["checks"] == "1 passed"
    found = client.search_model_versions("name = 'safe' and tags.checks LIKE '%failed%'")
    assert [str(v.version) for v in found] == ["2"]
    # Every check with its numbers: in the ledger entry's decision (tag and decision.json).
    entry = ledger.entries(client, "safe")[-1]
    logged = json.loads(mlflow.artifacts.load_text(f"runs:/{entry.run_id}/decision.json"))
    expected = [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in decision.checks]
    assert entry.version == "2" and entry.decision["checks"] == logged["checks"] == expected


RACER = textwrap.dedent("""
    import sys, time
    from functools import partial
    from pathlib import Path
    import numpy as np
    from mlflow import MlflowClient
    from tlflow.registry import registration, tracking
    from tlflow.config import load_config
    from tlflow.task_types.registry import check_config
    from tlflow.task_types.metrics import classification_from_sums, classification_stats
    from tlflow.registry.gate import Scores
    from tlflow.registry.lineage import Lineage
    from tlflow.registry.transaction import STEP_LEDGER

    uri, barrier, actor = sys.argv[1:4]
    tracking.configure()
    y = np.array([0, 1] * 100)
    same = Scores(classification_stats(y, y, 2), partial(classification_from_sums, label_names=["n", "p"]), {})
    Path(barrier + "." + actor).touch()  # ready
    while not Path(barrier).exists():
        time.sleep(0.005)
    out = registration.register_and_promote(
        MlflowClient(), check_config(load_config(None, ["name=safe"])), uri, same, lambda v: same, Lineage(), actor,
        lambda v, d: "", on_step=lambda step: time.sleep(1.0) if step == STEP_LEDGER else None,  # a wider window
    )
    print(out.version, out.decision.alias)
""")


@pytest.mark.slow  # two racer processes import the whole stack
def test_two_processes_promoting_at_once_are_serialised(store, project):
    client, uri = store
    barrier = project / "go"
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, uri, str(barrier), f"racer-{i}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project)
        for i in range(2)
    ]
    deadline = time.monotonic() + 180
    while not all((project / f"go.racer-{i}").exists() for i in range(2)):  # both imported, waiting
        assert time.monotonic() < deadline and all(r.poll() is None for r in racers), "racers did not start"
        time.sleep(0.1)
    barrier.touch()
    outputs = [r.communicate(timeout=240) for r in racers]
    for racer, (_, err) in zip(racers, outputs):
        assert racer.returncode == 0, err[-2000:]
    results = sorted(out.split() for out, _ in outputs)
    assert sorted(alias for _, alias in results) == ["challenger", "champion"]  # never two champions
    history = ledger.entries(client, "safe")
    assert [e.sequence for e in history] == [1, 2]  # no ledger entry lost
    assert [e.action for e in history] == ["promoted", "rejected"]
    assert history[1].champion_before == history[0].version
    assert {e.actor for e in history} == {"racer-0", "racer-1"}
