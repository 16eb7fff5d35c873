"""A champion re-scored on a test split that holds rows it was trained on (the split definition
changed) is compared on the other rows, and the decision says so: real SST-2 rows, tiny real
models logged and registered in a real MLflow store, the champion re-scored from the registry
with its training-row fingerprint read back from its run. Also what `tlflow models` and
`tlflow history` print of such decisions."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from transformers import BertConfig, BertForSequenceClassification
from typer.testing import CliRunner

from flows.cli import app
from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.models import load_tokenizer
from tlflow.registry import fingerprint, ledger, registration, tracking
from tlflow.registry.lineage import Lineage
from tlflow.serving import log_task_model
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import check_config, task_type_for

pytestmark = [pytest.mark.integration, pytest.mark.needs_data]

NAME = "shift"
LABELS = ["negative", "positive"]
RUN = "flow training_pipeline run 0123456789abcdef0123456789abcdef"  # as the training flow writes it


def _write_splits(root: Path, folder: str, parts: dict[str, range]) -> dict[str, str]:
    """Rows of SST-2's dev.tsv as split files under `root/folder`."""
    lines = Path("data/sst2/dev.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    (root / folder).mkdir(parents=True)
    for split, part in parts.items():
        text = "\n".join([header, *(rows[i] for i in part)]) + "\n"
        (root / folder / f"{split}.tsv").write_text(text, encoding="utf-8")
    return {split: f"{folder}/{split}.tsv" for split in parts}


def _config(files: dict[str, str], *sets: str):
    return check_config(load_config("configs/sst2.yaml", [
        f"name={NAME}", f"data.files={files}", "data.max_train_rows=null", "data.max_eval_rows=null",
        "data.drop_train_overlap=false", "paths.data_roots=[data, splits]", "model.max_length=32",
        "promote.bootstrap_samples=200", "promote.trivial_baseline=false", *sets,
    ]))


@pytest.fixture
def split_change(project):
    """The same sentences split twice: a first split (train rows 0-299), then a new one whose
    test split holds 150 of those training rows (rows 150-299) and 150 others."""
    first = _write_splits(project, "splits/first", {"train": range(0, 300), "validation": range(300, 400),
                                                    "test": range(400, 600)})
    second = _write_splits(project, "splits/second", {"train": range(600, 800), "validation": range(800, 870),
                                                      "test": [*range(150, 300), *range(400, 550)]})
    tracking.configure()
    return first, second


def _loaded(cfg):
    return load_labelled_data(cfg.data, task_type_for(cfg).dataset_spec(), cfg.evaluate.slices)


def _tiny_model(seed: int, tokenizer) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=2, id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)},
    )).eval()


def _register(client, cfg, loaded, seed: int, fingerprinted: bool = True, actor: str = "test"):
    """Log a tiny model (with the fingerprint of `loaded`'s train split, as the training flow
    does) and run it through the gate against the champion, re-scored from the registry."""
    tokenizer = load_tokenizer("minilm-l6")
    model = _tiny_model(seed, tokenizer)
    settings = TaskSettings.from_config(cfg)
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(NAME)):
        uri = log_task_model(model, tokenizer, settings, pd.DataFrame({"text": ["fine", "dull"]}))
        if fingerprinted:
            fingerprint.log_fingerprint(loaded.splits["train"], task_type_for(cfg).overlap_columns)
    evaluation = task_type_for(cfg).evaluate(model, tokenizer, loaded.splits["test"], loaded.label_names, settings)
    new = registration.scores_of(cfg, evaluation, loaded.label_names)
    return registration.register_and_promote(
        client, cfg, uri, new, lambda v: registration.version_scores(client, cfg, v, loaded), Lineage(data_md5="x"),
        actor, lambda v, d: d.reason, tags={"test_accuracy": f"{evaluation.metrics['accuracy']:.6f}"},
    ), evaluation


def test_a_champion_trained_on_the_new_test_rows_is_compared_on_the_others_or_refused(split_change):
    first, second = split_change
    client = MlflowClient()
    cfg_first = _config(first)
    v1, _ = _register(client, cfg_first, _loaded(cfg_first), seed=0)
    assert v1.decision.promoted and v1.version == "1"
    run_id = client.get_model_version(NAME, "1").run_id
    stored = fingerprint.load_fingerprint(run_id)
    assert stored.rows == 300 and stored.columns == ("text",) and len(stored.digests) <= 300

    cfg_second = _config(second)
    loaded = _loaded(cfg_second)
    assert fingerprint.trained_rows(run_id, loaded.splits["test"]).rows.tolist() == list(range(150))
    v2, new = _register(client, cfg_second, loaded, seed=1, actor=RUN)
    decision = v2.decision
    overlap = next(c for c in decision.checks if c.name == "champion_train_overlap")
    assert overlap.passed and "150 of 300 test rows (50.0%) were in champion v1's training rows" in overlap.detail
    assert "compared on the 150 test rows champion v1 was not trained on" in decision.reason
    # Both models scored on rows 150-299 of the new test split only, the champion re-scored from the registry.
    champion = registration.evaluate_version(cfg_second, NAME, "1", loaded)
    others = np.arange(150, 300)
    stats = registration.scores_of(cfg_second, champion, loaded.label_names)
    assert decision.champion_score == pytest.approx(stats.rows_value(others, "accuracy"))
    assert decision.new_score == pytest.approx(registration.scores_of(cfg_second, new, loaded.label_names)
                                               .rows_value(others, "accuracy"))
    assert "paired resamples of 150 examples" in next(c for c in decision.checks if c.name == "bootstrap").detail
    entry = ledger.entries(client, NAME)[-1]
    assert entry.version == "2" and "was not trained on" in entry.reason and entry.decision["notes"]
    logged = {c["name"]: c for c in entry.decision["checks"]}["champion_train_overlap"]
    assert logged["passed"] and logged["detail"].startswith("150 of 300")
    assert client.get_model_version(NAME, "2").tags["checks"] == registration.checks_summary(decision)

    assert registration.aliases(client, NAME)["champion"] == "1"
    strict = _config(second, "promote.on_champion_train_overlap=fail")
    v3, _ = _register(client, strict, loaded, seed=2)
    assert v3.decision.alias == "challenger"
    assert v3.decision.reason.startswith("champion_train_overlap failed: 150 of 300 test rows (50.0%) were in "
                                         "champion v1's training rows (allowed 0.0%): comparison refused")

    runner = CliRunner()
    client.set_model_version_tag(NAME, "2", "test_accuracy", "0.512999")  # rounds to 0.5130, truncates to 0.5129
    listed = runner.invoke(app, ["models", NAME])
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if x.startswith(NAME) and x.split()[1] == "2")
    assert "accuracy 0.5130" in line and "was not trained on" in line
    history = runner.invoke(app, ["history", NAME])
    assert history.exit_code == 0 and RUN in history.output  # the flow run's id in full


def test_a_champion_without_a_fingerprint_is_compared_and_the_decision_says_so(split_change):
    first, second = split_change
    client = MlflowClient()
    cfg_first = _config(first)
    _register(client, cfg_first, _loaded(cfg_first), seed=0, fingerprinted=False)  # as versions logged before
    cfg_second = _config(second)
    v2, _ = _register(client, cfg_second, _loaded(cfg_second), seed=1)
    assert "champion v1 has no training-row fingerprint" in v2.decision.reason
    assert "paired resamples of 300 examples" in next(c for c in v2.decision.checks if c.name == "bootstrap").detail
