"""What a config may read: data files, corpus folders, the EEC file and local base folders lie
under the configured roots (`paths`), checked before anything is opened; reports never echo more
than a short excerpt of a failing value."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tlflow.config import ConfigError, load_config
from tlflow.config.confinement import ALLOWED_ROOTS_ENV, check_paths
from tlflow.data.validation.stage import check_data
from tlflow.task_types.registry import check_config, check_inputs, task_type_for

pytestmark = [pytest.mark.integration, pytest.mark.needs_data]

runner = CliRunner()


def _file_config(path: str, *extra: str):
    return load_config("configs/sst2.yaml", ["data.files={}", f"data.file={path}", "data.format=csv",
                                             "data.text_columns=[text]", "data.label_map={}", *extra])


def test_etc_passwd_as_data_file_is_a_one_line_exit_2(project):
    result = runner.invoke(app, ["validate", "configs/sst2.yaml", "--set", "data.files.train=/etc/passwd"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "data.files.train" in lines[0] and "/etc/passwd" in lines[0] and "(data;" in lines[0]
    assert "root:" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("path", ["/etc/passwd", "data/../../../../../../etc/hostname", "../outside.csv"])
def test_paths_outside_the_roots_are_refused(project, path):
    with pytest.raises(ConfigError, match=r"data\.file: .* is outside the allowed data roots \(data;"):
        check_paths(_file_config(path))


def test_the_shipped_configs_read_through_the_data_symlink(project):
    assert (project / "data").is_symlink()  # data/ links to the real datasets elsewhere
    for config in ("configs/sst2.yaml", "configs/ag_news.yaml"):
        check_inputs(check_config(load_config(config)))


def test_an_extra_root_allows_its_files_and_a_symlinked_root_works(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("shared")
    (project / "extra").mkdir()
    (project / "extra" / "x.csv").write_text("text,label\n", encoding="utf-8")
    (project / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match="extra/x.csv"):
        check_paths(_file_config("extra/x.csv"))
    check_paths(_file_config("extra/x.csv", "paths.data_roots=[data, extra]"))
    check_paths(_file_config(str(project / "extra" / "x.csv"), "paths.data_roots=[data, extra]"))  # absolute path
    check_paths(_file_config("linked/y.csv", "paths.data_roots=[data, linked]"))
    check_paths(_file_config(f"{elsewhere}/y.csv", "paths.data_roots=[data, linked]"))  # same folder, resolved


def test_a_symlink_inside_a_root_pointing_out_is_refused(project):
    (project / "mine").mkdir()
    (project / "mine" / "innocent.csv").symlink_to("/etc/passwd")
    with pytest.raises(ConfigError, match="innocent.csv"):
        check_paths(_file_config("mine/innocent.csv", "paths.data_roots=[mine]"))


def test_corpus_folders_and_the_eec_file_are_confined(project):
    cfg = load_config("configs/sst2.yaml", ["pretrain.mode=scratch", "pretrain.corpus.gutenberg_dir=/etc",
                                            "pretrain.corpus.sources=[gutenberg]"])
    with pytest.raises(ConfigError, match=r"pretrain\.corpus\.gutenberg_dir: '/etc'"):
        check_paths(cfg)
    check_paths(load_config("configs/sst2.yaml", ["pretrain.corpus.gutenberg_dir=/etc"]))  # not used: mode none
    eec = '{label_map: {joy: positive}, file: /etc/passwd}'
    with pytest.raises(ConfigError, match=r"fairness\.eec\.file: '/etc/passwd'"):
        check_paths(load_config("configs/sst2.yaml", [f"fairness.eec={eec}"]))


def test_a_local_base_folder_needs_a_model_root(project, tmp_path_factory):
    outside = tmp_path_factory.mktemp("models")
    with pytest.raises(ConfigError, match=r"model\.base: local folder .* outside the allowed model roots"):
        check_paths(load_config("configs/sst2.yaml", [f"model.base={outside}"]))
    check_paths(load_config("configs/sst2.yaml", [f"model.base={outside}", f"paths.model_roots=[{outside}]"]))
    check_paths(load_config("configs/sst2.yaml", ["model.base=minilm-l6"]))  # packaged alias: not a path
    (project / ".cache" / "tlflow" / "pretraining" / "enc").mkdir(parents=True)  # the pipeline's own encoders
    check_paths(load_config("configs/sst2.yaml", ["model.base=.cache/tlflow/pretraining/enc"]))


def test_an_unknown_base_stops_validate_with_exit_2(project):
    result = runner.invoke(app, ["validate", "configs/sst2.yaml", "--set", "model.base=nobody/nothing"])
    assert result.exit_code == 2 and "model.base" in result.output and "nobody/nothing" in result.output


def test_the_worker_bounds_the_roots_a_config_may_declare(project, monkeypatch):
    monkeypatch.setenv(ALLOWED_ROOTS_ENV, os.pathsep.join([str(project / "data"), str(project / "extra")]))
    check_paths(load_config("configs/sst2.yaml"))
    with pytest.raises(ConfigError, match=rf"paths\.data_roots: root '/' is outside .*{ALLOWED_ROOTS_ENV}"):
        check_paths(_file_config("/etc/passwd", "paths.data_roots=[/]"))


def test_paths_do_not_change_the_config_hash(project):
    assert load_config("configs/sst2.yaml", ["paths.data_roots=[data, extra]"]).hash() == \
        load_config("configs/sst2.yaml").hash()


def test_reports_show_only_a_short_excerpt_of_a_long_failing_value(project):
    (project / "mine").mkdir()
    secret = "S" * 10_000
    rows = [f"review {i} is {'good' if i % 2 else 'bad'},{'positive' if i % 2 else 'negative'}" for i in range(30)]
    path = project / "mine" / "long.csv"
    path.write_text("text,label\n" + "\n".join([*rows, f"{secret},positive"]) + "\n", encoding="utf-8")
    cfg = check_inputs(check_config(_file_config("mine/long.csv", "paths.data_roots=[data, mine]", "privacy.pii=off",
                                                 "data.max_train_rows=null", "data.max_eval_rows=null",
                                                 "data.label_names=[negative, positive]")))
    task = task_type_for(cfg)
    _, report, html_path = check_data(cfg, task.dataset_spec(), task.data_checks(), report_dir=project / "reports")
    assert not report.success
    [failure] = report.failures()
    assert failure.examples[0]["value"] == "S" * 59 + "…" and failure.examples[0]["note"] == "10000 chars"
    shown = [json.dumps(report.to_dict(), indent=2), html_path.read_text(encoding="utf-8"), report.summary()]
    for text in shown:  # report.json (as tasks/validate.py writes it), the HTML, the terminal / Prefect artifact
        assert "S" * 59 in text and "S" * 60 not in text
