"""MLflow dataset inputs per split: the digest follows what decides a split's rows (data version,
split definition, subset), so a subset run logs its own training dataset with its own row count
while the test dataset (and the lineage's `eval_split`) stays the same when only training
changes; the source is the repository path with the data version, never a local absolute path."""

import json

import mlflow
import pytest
from mlflow import MlflowClient

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.data.split_definition import split_digest
from tlflow.data.version import data_version
from tlflow.registry import tracking
from tlflow.registry.dataset_inputs import dataset_inputs
from tlflow.registry.lineage import Lineage
from tlflow.task_types.registry import task_type_for

pytestmark = [pytest.mark.unit]

SPLITS = ("train", "validation", "test")


def _digests(*overrides: str) -> dict[str, str]:
    cfg = load_config(None, list(overrides))
    return {split: split_digest(cfg.data, split, cfg.task.type, "md5") for split in SPLITS}


@pytest.mark.parametrize(("override", "changed"), [
    ("data.max_train_rows=2000", {"train"}),
    ("data.drop_train_overlap=true", {"train"}),
    ("data.seed=7", {"train"}),  # own validation and test files, no evaluation subset: only train's sample
    ("data.max_eval_rows=300", {"validation", "test"}),  # not train: its overlap is dropped before sampling
    ("data.files.test=data/sst2/dev.tsv", {"train", "test"}),
    ("data.label_names=[positive,negative]", {"train", "validation", "test"}),
])
def test_a_split_digest_changes_with_what_decides_its_rows_only(override, changed):
    before, after = _digests("data.max_train_rows=1000"), _digests("data.max_train_rows=1000", override)
    assert {split for split in SPLITS if before[split] != after[split]} == changed
    data_md5 = {split: split_digest(load_config(None, []).data, split, "text-classification", "other") for split in SPLITS}
    assert all(data_md5[s] != _digests()[s] for s in SPLITS)  # the data version is part of it


def test_eval_split_ignores_the_training_subset():
    full, subset = load_config(None, []), load_config(None, ["data.max_train_rows=2000"])
    assert Lineage.of(full).eval_split == Lineage.of(subset).eval_split
    assert Lineage.of(full).eval_split != Lineage.of(load_config(None, ["data.max_eval_rows=300"])).eval_split


@pytest.mark.integration
@pytest.mark.needs_data
def test_subset_runs_log_their_own_rows_and_share_the_test_dataset(project):
    tracking.configure()
    client = MlflowClient()
    logged = {}
    for rows in (2000, 3000):
        cfg = load_config("configs/sst2.yaml", [f"data.max_train_rows={rows}", "data.max_eval_rows=500"])
        loaded = load_labelled_data(cfg.data, task_type_for(cfg).dataset_spec())
        md5 = data_version(cfg.data).md5
        with mlflow.start_run(experiment_id=tracking.ensure_experiment(cfg.name)) as run:
            for dataset, split in dataset_inputs(cfg, loaded.splits, md5, data_version(cfg.data), "label"):
                mlflow.log_input(dataset, context=split)
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        logged[rows] = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}

    for rows, datasets in logged.items():
        assert set(datasets) == set(SPLITS)
        assert {s: json.loads(d.profile)["num_rows"] for s, d in datasets.items()} == {
            "train": rows, "validation": 500, "test": 500}
        source = json.loads(datasets["train"].source)
        assert datasets["train"].source_type == "repository"
        assert source == {"paths": ["data/sst2/train.tsv"], "data_md5": md5, "data_tracked": True}
    assert logged[2000]["train"].digest != logged[3000]["train"].digest
    assert logged[2000]["test"].digest == logged[3000]["test"].digest
    assert logged[2000]["validation"].digest == logged[3000]["validation"].digest
