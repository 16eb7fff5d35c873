"""Every task type through the unchanged `training_pipeline`: a tiny random BERT (with the MiniLM
tokenizer) on a few dozen real rows, registered as a pyfunc that predicts in the documented format;
and a broken file per task type that fails validation with nothing registered."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.training import training_pipeline
from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.data.validation.stage import DataValidationError
from tlflow.registry import tracking
from tlflow.serving import load_task_model
from tlflow.task_types.registry import get_task_type

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]

TINY = [
    "model.init=random", "model.num_layers=1", "model.hidden_size=32", "model.num_heads=2",
    "model.intermediate_size=64", "finetune.batch_size=16", "finetune.learning_rate=1e-3",
    "finetune.checkpoint_every_steps=100", "evaluate.misclassified_examples=3",
    "finetune.min_steps=0", "promote.trivial_baseline=false",  # barely trained on purpose
]
CASES = {
    "mrpc": ["data.max_train_rows=48", "data.max_eval_rows=24", "model.max_length=64"],
    "conll2003": ["data.max_train_rows=48", "data.max_eval_rows=24", "model.max_length=48"],
    "squad": ["data.max_train_rows=40", "data.max_eval_rows=16", "model.max_length=96", "task.doc_stride=32"],
}
REQUESTS = {
    "mrpc": pd.DataFrame({"text": ["The cat sat on the mat.", "Stocks fell."],
                          "text_pair": ["A cat was sitting on the mat.", "It rained in Paris."]}),
    "conll2003": pd.DataFrame({"text": ["Angela Merkel visited Paris .", "EU rejects German call"]}),
    "squad": pd.DataFrame({"question": ["Who wrote it?", "Where is it?"],
                           "context": ["The book was written by Jane Austen in 1813.", "The tower is in Paris."]}),
}


def _config(name: str, extra: list[str] = ()):
    return load_config(f"configs/{name}.yaml", [f"name={name}-tiny", *TINY, *CASES[name], *extra])


@pytest.mark.parametrize("name", list(CASES))
def test_task_type_trains_registers_and_serves(name, project, prefect_server):
    cfg = _config(name)
    outcome = training_pipeline(cfg)

    assert outcome.version == "1" and outcome.decision.alias == "champion"
    tracking.configure()
    client = MlflowClient()
    run = client.get_run(outcome.run_id)
    task = get_task_type(cfg.task.type)
    # The logged test metrics are what the registered model scores when re-scored here on the same split.
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    registered = load_task_model(f"models:/{cfg.name}/1")
    rescored = task.evaluate(registered.model, registered.tokenizer, loaded.splits["test"], loaded.label_names,
                             registered.settings).metrics
    for metric in task.headline_metrics:
        assert run.data.metrics[f"test_{metric}"] == pytest.approx(rescored[metric], abs=1e-6), metric
    assert f"val_{cfg.task.primary_metric}" in run.data.metrics
    version = client.get_model_version(cfg.name, "1")
    assert version.tags["task_type"] == cfg.task.type
    assert version.tags["primary_metric"] == cfg.task.primary_metric

    served = mlflow.pyfunc.load_model(f"models:/{cfg.name}@champion")
    assert served.metadata.get_input_schema().input_names() == list(task.request_columns)
    predictions = served.predict(REQUESTS[name])
    assert list(predictions.columns) == list(task.response_fields)
    assert len(predictions) == 2
    if name == "mrpc":
        assert set(predictions["label"]) <= {"not_paraphrase", "paraphrase"}
        assert all(0.5 <= s <= 1.0 for s in predictions["score"])
    elif name == "conll2003":
        words = [t.split() for t in REQUESTS[name]["text"]]
        assert [len(t) for t in predictions["tags"]] == [len(w) for w in words]
        assert all(tag in cfg.data.label_names for tags in predictions["tags"] for tag in tags)
        for entities, sentence in zip(predictions["entities"], words):
            for e in entities:
                assert e["text"] == " ".join(sentence[e["start_word"] : e["end_word"] + 1])
    else:
        for row, context in zip(predictions.itertuples(), REQUESTS[name]["context"]):
            assert context[row.start : row.end] == row.answer
            assert len(row.answer.split()) <= 30


def _broken(project: Path, name: str) -> list[str]:
    """A small copy of the dataset with one defect a reviewer would expect the suite to catch."""
    bad = project / "bad"
    bad.mkdir()
    if name == "mrpc":
        lines = Path("data/mrpc/train.tsv").read_text(encoding="utf-8-sig").splitlines()
        fields = lines[5].split("\t")
        lines[5] = "\t".join([*fields[:4], "   "])  # the pair lost its second sentence
        (bad / "train.tsv").write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
        return ["data.files.train=bad/train.tsv"]
    if name == "conll2003":
        text = Path("data/conll2003/train.txt").read_text(encoding="utf-8").splitlines()[:400]
        # First tag of the first sentence becomes an I- tag (IOB2 never starts an entity with I-).
        first = next(i for i, line in enumerate(text) if line and not line.startswith("-DOCSTART-"))
        parts = text[first].split()
        text[first] = " ".join([*parts[:3], "I-PER"])
        (bad / "train.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
        return ["data.files.train=bad/train.txt", "data.files.validation=data/conll2003/valid.txt",
                "data.files.test=data/conll2003/test.txt"]
    squad = json.loads(Path("data/squad/dev-v1.1.json").read_text(encoding="utf-8"))
    squad["data"] = squad["data"][:6]
    squad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 3
    (bad / "squad.json").write_text(json.dumps(squad), encoding="utf-8")
    return ["data.file=bad/squad.json"]


@pytest.mark.parametrize(("name", "check"), [
    ("mrpc", "second text not blank"), ("conll2003", "tags form valid IOB2"), ("squad", "answer text at answer_start"),
])
def test_broken_file_fails_validation_and_registers_nothing(name, check, project, prefect_server):
    # Every row of the broken file is checked (no training subset that could leave the defect out).
    cfg = _config(name, [*_broken(project, name), "data.max_train_rows=null", "paths.data_roots=[data, bad]"])
    with pytest.raises(DataValidationError) as err:
        training_pipeline(cfg)
    failed = {c.check for c in err.value.report.failures()}
    assert check in failed, failed
    example = next(c for c in err.value.report.failures() if c.check == check).examples[0]
    assert example["file"].startswith("bad/") and example["row"] >= 1
    tracking.configure()
    assert MlflowClient().search_registered_models(f"name = '{cfg.name}'") == []
