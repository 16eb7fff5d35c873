"""No planted personal data leaks anywhere under `privacy.pii: redact` (MLflow artifacts, the
tracking database with params, tags and the registry ledger, Prefect flow-run parameters, logs and
artifacts); under `privacy.pii: fail` the command exits 1 naming file:row and the entity type only,
and registers nothing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from flows.cli import app
from flows.training import training_pipeline
from tests.prefect_reads import every, flush_logs
from tlflow.registry import tracking

pytestmark = [pytest.mark.flow]

PLANTED = {
    "EMAIL_ADDRESS": "robert.kowalski@example.org",
    "PHONE_NUMBER": "415-867-5309",
    "PERSON": "Margaret Thompson",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IP_ADDRESS": "192.168.12.34",
}
# Rows carrying the values (the test split's first rows: they become the model's input example).
PII_ROWS = [
    (f"{PLANTED['PERSON']} loved this warm film", "pos"),
    (f"a dull film , write to {PLANTED['EMAIL_ADDRESS']}", "neg"),
    (f"my phone number is {PLANTED['PHONE_NUMBER']} and the plot is thin", "neg"),
    (f"card {PLANTED['CREDIT_CARD']} paid for this gorgeous movie", "pos"),
    (f"server {PLANTED['IP_ADDRESS']} streamed this witty film", "pos"),
]
GOOD, BAD = ["warm", "witty", "gorgeous", "moving", "bright"], ["dull", "thin", "boring", "flat", "tired"]


def _write_data(root: Path) -> dict[str, str]:
    """Three small csv splits of made-up reviews; every split starts with the PII rows."""
    rng = random.Random(0)
    files = {}
    for split, n in (("train", 120), ("validation", 30), ("test", 30)):
        rows = [(f"{text} ({split})", label) for text, label in PII_ROWS]
        for i in range(n):
            label = rng.choice(["pos", "neg"])
            words = rng.sample(GOOD if label == "pos" else BAD, 2)
            rows.append((f"a {words[0]} and {words[1]} {split} film number {i}", label))
        path = root / f"reviews-{split}.csv"
        path.write_text("text,label\n" + "".join(f'"{t}",{lbl}\n' for t, lbl in rows), encoding="utf-8")
        files[split] = path.name
    return files


def _sets(files: dict[str, str], policy: str) -> list[str]:
    return [f"data.files={json.dumps(files)}", "data.format=csv", "data.text_columns=[text]",
            "data.label_column=label", "data.label_names=[neg, pos]", "data.max_train_rows=null",
            "data.max_eval_rows=null", "fairness.eec=null", f"privacy.pii={policy}", "paths.data_roots=[data, .]"]


def _hits(blob: bytes, values) -> list[str]:
    return [v for v in values if v.encode() in blob]


def test_redacted_run_leaks_no_planted_value(project, prefect_server, tiny_config):
    files = _write_data(project)
    cfg = tiny_config(**dict(s.split("=", 1) for s in _sets(files, "redact")), name="pii-redact")
    outcome = training_pipeline(cfg)
    assert outcome.version == "1"
    values = list(PLANTED.values())

    store = project / "mlflow"
    assert (store / "mlflow.db").is_file() and tracking.artifact_root() == store / "artifacts"
    leaks = {}
    files_seen = 0
    for path in store.rglob("*"):
        if path.is_file():
            files_seen += 1
            if found := _hits(path.read_bytes(), values):
                leaks[str(path.relative_to(project))] = found
    # Sanity: the search reads what was logged (the redacted input example and report are there).
    artifacts = b"".join(p.read_bytes() for p in (store / "artifacts").rglob("*") if p.is_file())
    assert b"<EMAIL_ADDRESS>" in artifacts and b"<PERSON>" in artifacts and files_seen > 10
    assert b"pii-redact" in (store / "mlflow.db").read_bytes()

    flush_logs()
    with get_client(sync_client=True) as prefect:
        params = json.dumps([r.parameters for r in every(prefect.read_flow_runs)], default=str).encode()
        logs = "\n".join(log.message for log in every(prefect.read_logs)).encode()
        arts = json.dumps([a.data for a in every(prefect.read_artifacts)], default=str).encode()
    assert b"pii-redact" in params and b"PII scan (redact)" in logs and b"EMAIL_ADDRESS" in arts
    for name, blob in (("prefect parameters", params), ("prefect logs", logs), ("prefect artifacts", arts)):
        if found := _hits(blob, values):
            leaks[name] = found
    assert leaks == {}

    run = MlflowClient().get_run(outcome.run_id)
    assert run.data.tags["pii_policy"] == "redact" and len(run.data.tags["pii_counts"]) == 16
    assert run.data.metrics["pii_rows_train"] == pytest.approx(5 / 125)
    assert run.data.metrics["pii_test_email_address"] == 1
    version = MlflowClient().get_model_version(cfg.name, "1")
    assert version.tags["pii_policy"] == "redact" and version.tags["pii_counts"] == run.data.tags["pii_counts"]


def test_fail_policy_exits_1_naming_file_row_and_type(project, prefect_server):
    files = _write_data(project)
    sets = [*_sets(files, "fail"), "name=pii-fail", "model.init=random", "model.num_layers=2",
            "model.hidden_size=64", "model.num_heads=2", "model.intermediate_size=128"]
    result = CliRunner().invoke(app, ["run", "configs/sst2.yaml", *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 1, result.output
    assert "reviews-train.csv:3: EMAIL_ADDRESS in text" in result.output
    assert "reviews-test.csv:2: PERSON in text" in result.output
    assert _hits(result.output.encode(), PLANTED.values()) == []
    tracking.configure()
    assert MlflowClient().search_registered_models() == []
