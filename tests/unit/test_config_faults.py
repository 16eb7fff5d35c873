"""Config and data faults that used to slip through: each is now a one-line error naming the
field (config) or the file, row and column (data), or a failed check with file:row."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tlflow.config import ConfigError, DataConfig, ValidateConfig, load_config
from tlflow.data.readers import DataError, load_labelled_data, read_table
from tlflow.data.validation.suite import CHECK_TEXT_LENGTH, CHECK_TEXT_NOT_BLANK, validate_splits
from tlflow.modeling.bases import check_base
from tlflow.task_types.registry import get_task_type

pytestmark = [pytest.mark.unit]

TASK = get_task_type("text-classification")
SPEC, CHECKS = TASK.dataset_spec(), TASK.data_checks()


def _yaml(tmp_path: Path, body: str | bytes) -> Path:
    path = tmp_path / "c.yaml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return path


@pytest.mark.parametrize(("body", "field"), [
    ("finetune: {epochs: .inf}\n", "finetune.epochs"),
    ("finetune: {epochs: 1e400}\n", "finetune.epochs"),  # YAML 1.1 reads this as a string; pydantic as inf
    ("finetune: {learning_rate: .nan}\n", "finetune.learning_rate"),
    ("promote: {floors: {accuracy: -.inf}}\n", "promote.floors.accuracy"),
    ("task: {type: question-answering, doc_stride: .inf}\n", "task.doc_stride"),  # a task type's own option
])
def test_non_finite_numbers_are_refused_up_front(tmp_path, body, field):
    with pytest.raises(ConfigError, match="finite") as err:
        load_config(_yaml(tmp_path, body))
    assert field in str(err.value) and "\n" not in str(err.value)


def test_non_finite_override_is_refused():
    with pytest.raises(ConfigError, match=r"finetune\.epochs.*finite"):
        load_config(None, ["finetune.epochs=.inf"])


def test_a_latin1_config_names_the_file_and_the_byte_offset(tmp_path):
    path = _yaml(tmp_path, "name: sst2\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "offset 16" in message and "line 2" in message and "\n" not in message


def test_a_directory_as_config_says_so(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_duplicate_label_names_are_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.label_names.*'positive' appears more than once"):
        load_config(None, ["data.label_names=[negative, positive, positive]"])


def test_an_unknown_base_is_refused_before_any_work(tmp_path):
    check_base("minilm-l6")  # packaged alias
    check_base(str(tmp_path))  # an existing local folder
    for unknown in ("no-such-org/no-such-model", "bert-base-nope", "a b c"):
        with pytest.raises(ConfigError, match="model.base") as err:
            check_base(unknown)
        assert err.value.exit_code == 2
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="is a file"):
        check_base(str(tmp_path / "weights.bin"))


# --- data files -----------------------------------------------------------------------------------


def _csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, ...] = ("text", "label")) -> str:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _rows(n: int, tag: str) -> list[tuple[str, str]]:
    return [(f"{tag} review number {i} was {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(n)]


def _cfg(**kw) -> DataConfig:
    return DataConfig(format="csv", label_names=["neg", "pos"], **kw)


def _validate(tmp_path: Path, bad_text: str):
    train = _csv(tmp_path / "train.csv", [*_rows(20, "train"), (bad_text, "pos")])
    test = _csv(tmp_path / "test.csv", _rows(6, "test"))
    loaded = load_labelled_data(_cfg(files={"train": train, "test": test}), SPEC)
    return validate_splits(loaded.splits, loaded.label_names, ValidateConfig(), CHECKS), train


def test_a_duplicated_header_column_names_both_columns_and_the_file(tmp_path):
    path = _csv(tmp_path / "dup.csv", [("first", "neg", "second")], header=("text", "label", "text"))
    with pytest.raises(DataError) as err:
        read_table(path, _cfg(file=path), SPEC)
    assert str(err.value) == f"{path}: column 'text' appears more than once in the header (columns 1 and 3, 1-based); rename one"


def test_a_duplicated_jsonl_key_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"text": "a", "label": "neg"}\n{"text": "b", "label": "pos", "text": "c"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"dup\.jsonl: line 2: key 'text' appears more than once"):
        read_table(path, DataConfig(format="jsonl", file=str(path)), SPEC)


def test_a_text_beyond_the_csv_field_limit_reaches_the_length_check(tmp_path):
    report, train = _validate(tmp_path, "x" * 200_000)  # csv's own field limit is 131,072
    [failure] = report.failures()
    assert failure.check == CHECK_TEXT_LENGTH
    [example] = failure.examples
    assert (example["file"], example["row"], example["note"]) == (train, 22, "200000 chars")


def test_a_nul_byte_in_a_text_names_file_line_and_column(tmp_path):
    path = _csv(tmp_path / "nul.csv", [*_rows(4, "t"), ("bad\x00text", "pos")])
    with pytest.raises(DataError) as err:
        read_table(path, _cfg(file=path), SPEC)
    assert str(err.value) == f"{path}: line 6: column 'text' contains a NUL byte (\\x00)"


@pytest.mark.parametrize("blank", ["\u200b", "\u200b \u200d\ufeff", " \u2060 "])
def test_zero_width_only_texts_are_blank(tmp_path, blank):
    report, train = _validate(tmp_path, blank)
    [failure] = report.failures()
    assert failure.check == CHECK_TEXT_NOT_BLANK
    assert (failure.examples[0]["file"], failure.examples[0]["row"]) == (train, 22)


def test_a_directory_as_data_file_says_it_is_a_directory(tmp_path):
    with pytest.raises(DataError, match="is a directory, not a data file"):
        read_table(tmp_path, _cfg(file=str(tmp_path)), SPEC)
