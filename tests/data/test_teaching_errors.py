"""Errors that say how to fix them: each data and config error keeps its one line and adds the
likely fix (another separator, the header setting, a misspelt key, a compressed or binary file,
the overlap policy), and `tlflow validate` prints rows per split and drops once, nothing repeated."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tlflow.config import ConfigError, DataConfig, ValidateConfig, load_config
from tlflow.data.readers import DataError, read_table
from tlflow.data.validation.suite import CHECK_LEAKAGE, validate_splits
from tlflow.task_types.registry import get_task_type

pytestmark = [pytest.mark.unit]

TEXT = get_task_type("text-classification")
PAIR = get_task_type("sentence-pair")


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def read_error(path: str, **data) -> str:
    with pytest.raises(DataError) as err:
        read_table(path, DataConfig(file=path, **data), TEXT.dataset_spec())
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


# --------------------------------------------------------------------------- separators and headers


def test_a_tab_separated_file_read_as_csv_says_tsv(tmp_path):
    path = write(tmp_path / "emotion.csv", "text\tlabel\ni feel great, really\tjoy\ni am sad\tsadness\n")
    assert read_error(path) == (f"{path}: line 2: expected 1 fields separated by ',', found 2; "
                                "looks tab-separated: data.format: tsv?")
    single = write(tmp_path / "one.csv", "text\tlabel\ni feel great\tjoy\ni am sad\tsadness\n")
    assert read_error(single).endswith("no column 'text' (columns: 'text\\tlabel'); looks tab-separated: "
                                       "data.format: tsv?")


def test_a_semicolon_separated_file_says_its_separator(tmp_path):
    path = write(tmp_path / "train.txt", "text;label\ni didnt feel humiliated;sadness\ni feel great;joy\n")
    assert read_error(path, format="tsv").endswith("looks ';'-separated: data.format: text, data.separator: ';'?")


def test_a_first_line_of_data_read_as_header_says_header_false(tmp_path):
    path = write(tmp_path / "ag.csv", '"3","Wall St. Bears Claw Back Into the Black (Reuters)","Short-sellers are '
                                      'seeing green"\n"4","Stocks rise","Markets gain"\n')
    message = read_error(path, text_columns=[1, 2], label_column=0)
    assert message.endswith("the first line looks like data, not column names: data.header: false?")
    assert read_error(path).endswith("the first line looks like data, not column names: data.header: false?")


def test_a_header_read_as_data_says_header_true(tmp_path):
    path = write(tmp_path / "a.csv", "text,label\ngood,pos\nbad,neg\n")
    assert read_error(path, header=False) == (f"{path}: no column text (the file has no header: columns are 0-based "
                                              "indices 0..1); its first line names a column 'text': data.header: true?")


def test_a_misspelt_column_gets_the_closest_name(tmp_path):
    path = write(tmp_path / "a.tsv", "sentence\tlabel\ngood\t1\n")
    assert read_error(path, format="tsv", text_columns=["sentense"]).endswith("(did you mean `sentence`?)")


def test_a_field_that_holds_the_separator_says_maxsplit(tmp_path):
    path = write(tmp_path / "q.txt", "DESC:How did it start?\nHUM:Who said: no?\n")
    message = read_error(path, format="text", separator=":", header=False, text_columns=[1], label_column=0)
    assert message == (f"{path}: line 2: expected 2 fields separated by ':', found 3; if the last column may hold "
                       "':': data.maxsplit: 1?")


# --------------------------------------------------------------------------- not text at all


def test_compressed_and_binary_files_say_what_they_are(tmp_path):
    gz = tmp_path / "train.csv"
    gz.write_bytes(gzip.compress(b"text,label\na,b\n"))
    assert read_error(str(gz)).endswith("looks gz-compressed (the file starts with the gz signature): name it "
                                        "train.csv.gz or set data.compression: gz")
    parquet = tmp_path / "train.tsv"
    pd.DataFrame({"text": ["a"], "label": ["b"]}).to_parquet(parquet)
    assert read_error(str(parquet), format="tsv") == f"{parquet}: looks like a parquet file: data.format: parquet?"
    utf16 = tmp_path / "excel.csv"
    utf16.write_bytes("text,label\nnaïve,pos\n".encode("utf-16"))
    assert read_error(str(utf16)) == f"{utf16}: looks UTF-16 encoded (byte-order mark): data.encoding: utf-16?"


def test_a_plain_undecodable_file_keeps_its_byte_and_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncafé,pos\n".encode("latin-1"))
    assert read_error(str(path)) == f"{path}: cannot decode as utf-8 at byte 14 (line 2): invalid continuation byte"


# --------------------------------------------------------------------------- config keys


@pytest.mark.parametrize("override,message", [
    ("data.text_column=[text]", "data.text_column: unknown key (did you mean `text_columns`?)"),
    ("data.invalid_row=drop", "data.invalid_row: unknown key (did you mean `invalid_rows`?)"),
    ("finetun.epochs=2", "finetun: unknown key (did you mean `finetune`?)"),
    ("validate.max_char=10", "validate.max_char: unknown key (did you mean `max_chars`?)"),
    ("data.split.tset=0.1", "data.split.tset: unknown key (did you mean `test`?)"),
    ("data.zzz=1", "data.zzz: unknown key"),
])
def test_an_unknown_config_key_gets_the_closest_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value) == f"invalid config <defaults>: {message}" and err.value.exit_code == 2


def test_a_misspelt_key_inside_a_derived_column(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"file": "a.csv", "derived_columns": {"coarse": {"sorce": 0, "pattern": "x"}}}}))
    with pytest.raises(ConfigError, match=r"data\.derived_columns\.coarse\.sorce: unknown key \(did you mean "
                                          r"`source`\?\)"):
        load_config(path)


# --------------------------------------------------------------------------- leakage


def _frame(rows: list[tuple], file: str, **pair) -> pd.DataFrame:
    df = pd.DataFrame({"text": [r[0] for r in rows], "label": [r[-1] for r in rows], "source_file": file,
                       "source_row": range(2, len(rows) + 2)})
    if pair:
        df.insert(1, "text_pair", [r[1] for r in rows])
    return df


def test_leakage_says_how_to_drop_it_and_pairs_show_both_sentences():
    train = _frame([("A man plays a guitar.", "A person plays music.", "yes"), ("It rains.", "Stocks fell.", "no")],
                   "train.tsv", pair=True)
    test = _frame([("a man plays a  guitar.", "A person plays music.", "yes"), ("It rains.", "The sun shines.", "no")],
                  "test.tsv", pair=True)
    report = validate_splits({"train": train, "validation": train.iloc[:0], "test": test}, ["no", "yes"],
                             ValidateConfig(), PAIR.data_checks())
    leak = next(c for c in report.checks if c.check == CHECK_LEAKAGE and c.split == "test")
    assert not leak.success and leak.observed.startswith("1 of 2 rows")  # the pair, not the first sentence alone
    assert leak.examples == [{"file": "test.tsv", "row": 2, "value": "a man plays a  guitar. ||| A person plays music.",
                              "note": "same pair as train train.tsv:2"}]
    assert leak.hint == "set data.drop_train_overlap: true to drop them from train"
    summary = report.summary()
    assert summary.count("fix: set data.drop_train_overlap: true to drop them from train") == 1


def test_each_fix_is_printed_once_however_many_checks_it_answers():
    train = _frame([("good", "pos"), ("  ", "neg"), ("fine", None)], "train.csv")
    test = _frame([("", "pos"), ("bad", "neg")], "test.csv")
    report = validate_splits({"train": train, "test": test}, ["neg", "pos"], ValidateConfig(), TEXT.data_checks())
    lines = report.summary().splitlines()
    fixes = [line for line in lines if line.strip().startswith("fix: data.invalid_rows: drop")]
    assert len(fixes) == 1 and len([c for c in report.failures() if "invalid_rows" in c.hint]) >= 3


# --------------------------------------------------------------------------- tlflow validate


@pytest.mark.integration
def test_validate_prints_rows_drops_and_nothing_twice(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.chdir(tmp_path)
    contexts = [f"The river {i} flows north through the valley of town {i} before it meets the sea." for i in range(12)]
    rows = [{"question": f"Where does river {i} flow?" if i != 5 else " ", "context": c, "answer_text": "north",
             "answer_start": c.index("north")} for i, c in enumerate(contexts)]
    pd.DataFrame(rows).to_csv(tmp_path / "qa.csv", index=False)
    (tmp_path / "qa.yaml").write_text(yaml.safe_dump({
        "name": "rivers", "task": {"type": "question-answering"}, "privacy": {"pii": "off"},
        "paths": {"data_roots": ["."]},
        "data": {"format": "csv", "file": "qa.csv", "invalid_rows": "drop",
                 "split": {"train": 0.6, "validation": 0.2, "test": 0.2}},
    }))
    result = CliRunner().invoke(app, ["validate", "qa.yaml"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert "class balance" not in result.output  # a task without labels has none to print, not three times 'no labels'
    assert len(lines) == len(set(lines))
    assert "rows: train 5, validation 3, test 3" in lines  # 11 questions, split by context (seeded)
    assert "dropped: 1 invalid row (data.invalid_rows: drop; blank question 1), first: qa.csv:7 (blank question)" in lines
    assert any(line.startswith("data version ") and "data_tracked=false" in line for line in lines)
