"""`Lineage`: the tags it writes and reads back, what skip-unchanged and retraining compare."""

import pytest

from tlflow.config import load_config
from tlflow.registry.lineage import FIELDS, Lineage, code_digest
from tlflow.task_types.registry import check_config

pytestmark = [pytest.mark.unit]

FULL = Lineage(data_md5="a" * 32, data_files_md5="b" * 32, config_hash="c0ffee", code_md5="d" * 32,
               git_commit="1234abcd+dirty", prefect_flow_run_id="run-1", encoder_version="3",
               task_type="text-classification", eval_split="e" * 16, pii_policy="redact", pii_counts="f" * 16,
               data_tracked="true")


def test_tags_round_trip_under_the_historic_names():
    tags = FULL.tags()
    assert list(tags) == ["data_md5", "data_files_md5", "config_hash", "code_md5", "git_commit",
                          "prefect_flow_run_id", "encoder_version", "task_type", "eval_split", "pii_policy",
                          "pii_counts", "data_tracked"] == list(FIELDS)
    assert Lineage.from_tags({**tags, "decision": "champion", "test_accuracy": "0.9"}) == FULL
    partial = Lineage(data_md5="x", git_commit="y")
    assert partial.tags() == {"data_md5": "x", "git_commit": "y"}  # unknown fields write no tag
    assert Lineage.from_tags(partial.tags()) == partial and Lineage.from_tags(None) == Lineage()


def test_reuse_key_and_differences():
    assert FULL.reuse_key() == {"data_md5": "a" * 32, "data_files_md5": "b" * 32, "config_hash": "c0ffee",
                                "code_md5": "d" * 32, "pii_policy": "redact"}
    assert FULL.replace(code_md5="").reuse_key() is None  # nothing is reused on unknown inputs
    assert FULL.replace(git_commit="other", prefect_flow_run_id="run-2").reuse_key() == FULL.reuse_key()
    assert FULL.differences(FULL.replace(code_md5="z", git_commit="z")) == ()  # code alone never retrains
    changed = FULL.replace(data_md5="f" * 32).differences(FULL.replace(config_hash=""))
    assert changed == ("data version (data.dvc) changed (aaaaaaaa -> ffffffff)", "config changed (unknown -> c0ffee)")
    assert "code_md5" not in FULL.for_variant().tags() and FULL.for_variant().eval_split == FULL.eval_split


def test_of_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data.dvc, no data files
    cfg = check_config(load_config(None, []))
    lineage = Lineage.of(cfg, prefect_flow_run_id="run-9")
    assert (lineage.data_md5, lineage.data_files_md5) == ("untracked", "unreadable")
    assert lineage.config_hash == cfg.hash() and lineage.task_type == cfg.task.type != "" and lineage.eval_split
    assert lineage.code_md5 == code_digest() and lineage.prefect_flow_run_id == "run-9"
    assert Lineage.of(cfg, "given").data_md5 == "given"
    assert lineage.pii_policy == cfg.privacy.pii == "report" and lineage.tags()["pii_policy"] == "report"
