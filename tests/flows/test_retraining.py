"""`retraining_pipeline`: trains when there is no champion, keeps the champion when nothing changed,
retrains (and runs the promotion gate) when rows are added to the data."""

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.retraining import retraining_pipeline
from tlflow.registry import ledger, tracking
from tlflow.registry.retraining import RetrainingCheck

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]


def _copy_sst2(root: Path) -> dict[str, str]:
    """A small SST-2 copy in its own folder: 300 train, 150 validation and 200 test rows of dev.tsv."""
    lines = Path("data/sst2/dev.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    (root / "mydata").mkdir()
    parts = {"train": rows[:300], "validation": rows[300:450], "test": rows[450:650]}
    for split, part in parts.items():
        (root / "mydata" / f"{split}.tsv").write_text("\n".join([header, *part]) + "\n", encoding="utf-8")
    return {split: f"mydata/{split}.tsv" for split in parts}


def test_retrains_only_on_new_data(project, prefect_server, tiny_config):
    files = _copy_sst2(project)
    cfg = tiny_config(**{"name": "retrain", "data.files": str(files), "data.max_train_rows": "null",
                         "data.max_eval_rows": "null", "data.drop_train_overlap": "false",
                         "paths.data_roots": "[data, mydata]"})
    tracking.configure()
    client = MlflowClient()

    first = retraining_pipeline(cfg)
    assert first.version == "1" and first.decision.promoted

    unchanged = retraining_pipeline(cfg)
    assert isinstance(unchanged, RetrainingCheck) and not unchanged.due
    assert unchanged.summary() == "no new data, champion v1 kept"
    assert [str(v.version) for v in client.search_model_versions("name = 'retrain'")] == ["1"]
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retrain-retraining"])))
    assert any("no new data, champion v1 kept" in a.data for a in artifacts)

    extra = Path("data/sst2/dev.tsv").read_text(encoding="utf-8").splitlines()[651:751]
    with open(project / "mydata" / "train.tsv", "a", encoding="utf-8") as fh:
        fh.write("\n".join(extra) + "\n")
    retrained = retraining_pipeline(cfg)
    assert retrained.version == "2" and retrained.decision.champion_version == "1"
    assert {c.name for c in retrained.decision.checks} >= {"min_delta", "bootstrap"}
    entries = ledger.entries(client, "retrain")
    assert [(e.sequence, e.version) for e in entries] == [(1, "1"), (2, "2")]
    assert entries[1].action == ("promoted" if retrained.decision.promoted else "rejected")
    assert client.get_model_version("retrain", "2").tags["data_files_md5"] != \
        client.get_model_version("retrain", "1").tags["data_files_md5"]
    shutil.rmtree(project / "mydata")
