"""The slice check of the promotion gate end to end: a challenger better on average but worse on
one metadata slice (`evaluate.slices: [group]`) by more than `promote.max_slice_drop` stays
challenger, with the slice's numbers in the decision, the version's tags and the run's metrics."""

import json
import random

import mlflow
import pytest
from mlflow import MlflowClient

from flows.training import training_pipeline
from tlflow.registry import ledger, tracking

pytestmark = [pytest.mark.flow]

#: Sentiment words of each group: a model learns them independently, so flipping one group's
#: training labels makes it wrong on that group only.
WORDS = {"A": {"positive": "good", "negative": "bad"}, "B": {"positive": "nice", "negative": "awful"}}
FILLER = ["the", "a", "really", "very", "quite", "so", "this", "that", "truly", "rather"]
NOUNS = ["movie", "film", "story", "plot", "actor", "scene", "music", "ending", "cast", "script"]


def _rows(n: int, rng: random.Random, seen: set[str]) -> list[tuple[str, str, str]]:
    """`n` unique (text, label, group) rows, a quarter of them group B, of varied length."""
    rows = []
    while len(rows) < n:
        group = "B" if len(rows) % 4 == 3 else "A"
        label = rng.choice(["positive", "negative"])
        words = [*rng.choices(FILLER, k=rng.randint(0, 8)), WORDS[group][label], rng.choice(NOUNS)]
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            rows.append((text, label, group))
    return rows


def _write(path, rows, flip: str | None = None) -> str:
    other = {"positive": "negative", "negative": "positive"}
    lines = ["text,label,group"] + [f"{t},{other[lab] if g == flip else lab},{g}" for t, lab, g in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_a_challenger_worse_on_a_slice_is_rejected(project, prefect_server, tiny_config):
    rng, seen = random.Random(0), set()
    train, validation, test = _rows(320, rng, seen), _rows(80, rng, seen), _rows(160, rng, seen)
    data = project / "groups"
    data.mkdir()
    files = {"validation": _write(data / "validation.csv", validation), "test": _write(data / "test.csv", test)}
    common = {
        "name": "slices", "data.format": "csv", "data.text_columns": "[text]", "data.label_map": "{}",
        "data.files.validation": files["validation"], "data.files.test": files["test"],
        "evaluate.slices": "[group]", "privacy.pii": "'off'", "finetune.epochs": "3", "paths.data_roots": "[data, groups]",
        "finetune.learning_rate": "2e-3",
        "promote.min_slice_size": "30", "promote.max_slice_drop": "0.05", "promote.max_class_drop": "1",
    }
    # The champion learnt group A backwards; the challenger learns A right and group B backwards.
    champion = training_pipeline(tiny_config(**common, **{"data.files.train": _write(data / "a.csv", train, "A")}))
    assert champion.decision.promoted
    challenger = training_pipeline(tiny_config(**common, **{"data.files.train": _write(data / "b.csv", train, "B")}))

    decision = challenger.decision
    assert decision.alias == "challenger" and decision.new_score > decision.champion_score + 0.3
    checks = {c.name: c for c in decision.checks}
    assert checks["min_delta"].passed and checks["bootstrap"].passed
    drop = checks["max_slice_drop"]
    assert not drop.passed and "group=B (n=40)" in drop.detail and "allowed -0.05" in drop.detail, drop.detail
    before, after = (float(x) for x in drop.detail.split(": ")[1].split(" (")[0].split(" -> "))
    assert before - after > 0.5

    tracking.configure()
    client = MlflowClient()
    mv = client.get_model_version("slices", challenger.version)
    assert mv.tags["checks"].endswith(", 1 failed: max_slice_drop")
    assert f"| max_slice_drop | **failed** | {drop.detail} |" in mv.description  # the decision table, every number
    entry = next(e for e in ledger.entries(client, "slices") if e.version == challenger.version)
    assert {c["name"]: c for c in entry.decision["checks"]}["max_slice_drop"] == {
        "name": "max_slice_drop", "passed": False, "detail": drop.detail}
    assert "### Evaluation slices" in mv.description and "| `group=B` | 40 |" in mv.description
    run = client.get_run(challenger.run_id)
    assert run.data.metrics["test_count__group:B"] == 40
    assert run.data.metrics["test_accuracy__group:B"] == pytest.approx(after, abs=1e-4)
    assert {"test_accuracy__length:q1", "test_recall_positive__group:A"} <= set(run.data.metrics)
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{challenger.run_id}/evaluation/slices.json"))
    assert "group=B" in [row[0] for row in table["data"]]
    assert "evaluation/slices.png" in [f.path for f in client.list_artifacts(challenger.run_id, "evaluation")]
    # never trained on: the logged model's signature (from its input example) takes the text only
    assert mlflow.models.get_model_info(challenger.model_uri).signature.inputs.input_names() == ["text"]
