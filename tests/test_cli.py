"""The `tlflow` command line, in-process (typer's CliRunner)."""

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app

pytestmark = [pytest.mark.integration]

runner = CliRunner()


def _write_config(path, **data_overrides):
    cfg = yaml.safe_load(open("configs/sst2.yaml"))
    cfg["data"].update(data_overrides)
    cfg["paths"] = {"data_roots": ["data", "."]}  # the tests' own files lie in the project folder
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfinetune: {batch_size: -1}\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    assert "finetune.batch_size" in result.output and "Traceback" not in result.output


def test_unknown_override_key(tmp_path):
    result = runner.invoke(app, ["validate", "--set", "data.nope=1"])
    assert result.exit_code == 2 and "data.nope" in result.output


@pytest.mark.needs_data
def test_validate_passes_on_shipped_sst2(project):
    result = runner.invoke(app, ["validate", "configs/sst2.yaml"])
    assert result.exit_code == 0, result.output
    assert "passed" in result.output and "HTML report:" in result.output


@pytest.mark.needs_data
def test_validate_names_file_and_row_of_bad_rows(project):
    rows = open("data/sst2/dev.tsv", encoding="utf-8").read().splitlines()
    (project / "train.tsv").write_text("\n".join([rows[0], *rows[1:200], "\t1"]) + "\n")
    (project / "test.tsv").write_text("\n".join([rows[0], *rows[200:300], rows[5]]) + "\n")
    cfg = _write_config(project / "c.yaml", files={"train": "train.tsv", "test": "test.tsv", "validation": "data/sst2/test.tsv"},
                        max_train_rows=None, drop_train_overlap=False)
    result = runner.invoke(app, ["validate", cfg])
    assert result.exit_code == 1
    assert "train.tsv:201" in result.output  # blank text
    assert "test.tsv:102" in result.output  # leaked from train


@pytest.mark.needs_data
def test_missing_file_and_undecodable_bytes_are_clear_errors(project):
    cfg = _write_config(project / "c.yaml", files={"train": "nope.tsv", "test": "data/sst2/test.tsv"})
    result = runner.invoke(app, ["validate", cfg])
    assert result.exit_code == 1 and "nope.tsv" in result.output and "Traceback" not in result.output
    (project / "latin.tsv").write_bytes("sentence\tlabel\ncaf\xe9 au lait\t1\n".encode("latin-1"))
    cfg = _write_config(project / "d.yaml", files={"train": "latin.tsv", "test": "data/sst2/test.tsv"})
    result = runner.invoke(app, ["validate", cfg])
    assert result.exit_code == 1 and "latin.tsv" in result.output and "decode" in result.output


def test_models_on_an_empty_registry(project):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 1 and "no registered models" in result.output


def test_user_facing_errors_end_in_one_place_with_their_exit_code(monkeypatch):
    from flows.commands import registry
    from tlflow.errors import TlflowError

    class Unavailable(TlflowError):
        exit_code = 3

    def raise_(err):
        raise err

    monkeypatch.setattr(registry, "registry_client", lambda: raise_(Unavailable("the registry is on fire")))
    result = runner.invoke(app, ["history", "x"])
    assert result.exit_code == 3 and result.output.strip() == "error: the registry is on fire"
    monkeypatch.setattr(registry, "registry_client", lambda: raise_(KeyError("a bug")))
    result = runner.invoke(app, ["history", "x"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)  # bugs keep their traceback
