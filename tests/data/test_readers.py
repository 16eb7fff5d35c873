"""Tests of tlflow.data.readers: every file format option, splitting, sampling and bad files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tlflow.config import DataConfig, SplitFractions
from tlflow.data.readers import DataError, LoadedData
from tlflow.data.readers import load_labelled_data as _load_labelled_data
from tlflow.data.readers import read_table as _read_table
from tlflow.data.splits import stratified_sample, stratified_split
from tlflow.task_types.registry import get_task_type

DATA = Path(__file__).resolve().parents[2] / "data"
COLUMNS = ["text", "label", "source_file", "source_row"]

pytestmark = [pytest.mark.unit]

#: What the readers get from single-text classification (the task type these tests read).
SPEC = get_task_type("text-classification").dataset_spec()


def read_table(path, cfg: DataConfig):
    return _read_table(path, cfg, SPEC)


def load_labelled_data(cfg: DataConfig) -> LoadedData:
    return _load_labelled_data(cfg, SPEC)


def write(path: Path, text: str, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


def config(**kw) -> DataConfig:
    kw.setdefault("files", {})
    if not kw["files"] and "file" not in kw:
        kw["file"] = "unused.csv"
    return DataConfig(**kw)


def labelled(counts: dict[str, int]) -> pd.DataFrame:
    """A canonical frame with `counts[label]` rows per label and unique texts."""
    labels = [lab for lab, n in counts.items() for _ in range(n)]
    return pd.DataFrame(
        {
            "text": [f"text {i}" for i in range(len(labels))],
            "label": labels,
            "source_file": "f.csv",
            "source_row": range(2, len(labels) + 2),
        }
    )


def split_files(tmp_path: Path, fmt: str = "tsv", **splits: str) -> dict[str, str]:
    return {name: write(tmp_path / f"{name}.{fmt}", body) for name, body in splits.items()}


# --------------------------------------------------------------------------- formats


def test_csv_with_quotes_and_embedded_newline(tmp_path):
    path = write(tmp_path / "a.csv", 'text,label\n"hello, world",pos\n"two\nlines",neg\nplain,pos\n')
    df = read_table(path, config())
    assert list(df.columns) == COLUMNS
    assert df["text"].tolist() == ["hello, world", "two\nlines", "plain"]
    assert df["label"].tolist() == ["pos", "neg", "pos"]
    assert df["source_row"].tolist() == [2, 3, 5]  # the quoted line break moves the next row down
    assert set(df["source_file"]) == {path}


def test_tsv_keeps_unbalanced_quotes_and_handles_crlf(tmp_path):
    path = write(tmp_path / "a.tsv", 'sentence\tlabel\r\n" he said yes\t1\r\n\r\nit \'s " fine\t0\r\n')
    df = read_table(path, config(format="tsv", text_columns=["sentence"]))
    assert df["text"].tolist() == ['" he said yes', 'it \'s " fine']
    assert df["label"].tolist() == ["1", "0"]
    assert df["source_row"].tolist() == [2, 4]  # blank line skipped but counted


def test_text_format_with_semicolon_separator(tmp_path):
    path = write(tmp_path / "a.txt", "text;label_name\ni feel great;joy\ni am \"so\" sad;sadness\n")
    df = read_table(path, config(format="text", separator=";", label_column="label_name"))
    assert df["text"].tolist() == ["i feel great", 'i am "so" sad']
    assert df["label"].tolist() == ["joy", "sadness"]


def test_separator_overrides_csv_default(tmp_path):
    path = write(tmp_path / "a.csv", 'text|label\n"a|b, c"|x\n')
    df = read_table(path, config(separator="|"))
    assert df["text"].tolist() == ["a|b, c"]
    assert df["label"].tolist() == ["x"]


@pytest.mark.parametrize("text_col,label_col", [(1, 0), ("1", "0")])
def test_no_header_uses_zero_based_indices(tmp_path, text_col, label_col):
    path = write(tmp_path / "a.csv", "2,first text\n1,second text\n")
    df = read_table(path, config(header=False, text_columns=[text_col], label_column=label_col))
    assert df["text"].tolist() == ["first text", "second text"]
    assert df["label"].tolist() == ["2", "1"]
    assert df["source_row"].tolist() == [1, 2]


def test_no_header_index_out_of_range(tmp_path):
    path = write(tmp_path / "a.csv", "2,first text\n")
    with pytest.raises(DataError, match=r"a\.csv: no column 5 .*no header.*0\.\.1"):
        read_table(path, config(header=False, text_columns=[5], label_column=0))


def test_jsonl_columns_by_key(tmp_path):
    rows = [{"text": "a", "label": 1}, {"label": 0, "text": "b", "extra": [1]}, {"text": None, "label": 1}]
    body = json.dumps(rows[0]) + "\n\n" + "\n".join(json.dumps(r) for r in rows[1:]) + "\n"
    path = write(tmp_path / "a.jsonl", body)
    df = read_table(path, config(format="jsonl", label_map={"0": "neg", "1": "pos"}))
    assert df["text"].tolist() == ["a", "b", None]
    assert df["label"].tolist() == ["pos", "neg", "pos"]
    assert df["source_row"].tolist() == [1, 3, 4]


def test_jsonl_bad_line(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    with pytest.raises(DataError, match=r"a\.jsonl: line 2: invalid JSON"):
        read_table(path, config(format="jsonl"))
    path = write(tmp_path / "b.jsonl", '["a", "x"]\n')
    with pytest.raises(DataError, match=r"b\.jsonl: line 1: expected a JSON object, got list"):
        read_table(path, config(format="jsonl"))


def test_parquet(tmp_path):
    path = tmp_path / "a.parquet"
    pd.DataFrame({"review": ["good", "bad", None], "stars": [1, 0, 1]}).to_parquet(path)
    df = read_table(path, config(format="parquet", text_columns=["review"], label_column="stars",
                                 label_map={"0": "neg", "1": "pos"}))
    assert df["text"].tolist() == ["good", "bad", None]
    assert df["label"].tolist() == ["pos", "neg", "pos"]
    assert df["source_row"].tolist() == [1, 2, 3]
    assert set(df["source_file"]) == {str(path)}


def test_parquet_missing_column(tmp_path):
    path = tmp_path / "a.parquet"
    pd.DataFrame({"review": ["good"], "stars": [1]}).to_parquet(path)
    with pytest.raises(DataError, match=r"a\.parquet: no column 'text' \(columns: 'review', 'stars'\)"):
        read_table(path, config(format="parquet", label_column="stars"))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"])
def test_bom_is_stripped_from_first_column_name(tmp_path, encoding):
    path = write(tmp_path / "a.tsv", "label\ttext\n1\tnaïve\n", encoding="utf-8-sig")
    df = read_table(path, config(format="tsv", encoding=encoding))
    assert df["label"].tolist() == ["1"]
    assert df["text"].tolist() == ["naïve"]


def test_latin1_encoding(tmp_path):
    path = write(tmp_path / "a.csv", "text,label\ncafé crème,pos\n", encoding="latin-1")
    df = read_table(path, config(encoding="latin-1"))
    assert df["text"].tolist() == ["café crème"]


def test_undecodable_bytes_name_file_byte_and_line(tmp_path):
    path = write(tmp_path / "a.tsv", "text\tlabel\nok\t1\ncafé\t0\n", encoding="latin-1")
    with pytest.raises(DataError) as err:
        read_table(path, config(format="tsv"))
    message = str(err.value)
    assert message == f"{path}: cannot decode as utf-8 at byte 19 (line 3): invalid continuation byte"


def test_unknown_encoding(tmp_path):
    path = write(tmp_path / "a.csv", "text,label\na,b\n")
    with pytest.raises(DataError, match="unknown encoding 'no-such-codec'"):
        read_table(path, config(encoding="no-such-codec"))


def test_label_map_strip_and_unknown_values(tmp_path):
    path = write(tmp_path / "a.tsv", "text\tlabel\na\t 1 \nb\t0\nc\t7\nd\t \n")
    df = read_table(path, config(format="tsv", label_map={"0": "negative", "1": "positive"}))
    # unmapped raw values are kept for the validation suite; a blank label is missing
    assert df["label"].tolist() == ["positive", "negative", "7", None]


def test_multi_column_join_skips_empty_parts(tmp_path):
    path = write(tmp_path / "a.csv", 'y,title,body\n1, Title ,Body text\n2,,only body\n3,only title,\n4,,\n')
    df = read_table(path, config(text_columns=["title", "body"], label_column="y", text_join=" | "))
    assert df["text"].tolist() == ["Title | Body text", "only body", "only title", ""]


def test_blank_text_is_kept_as_empty_string(tmp_path):
    path = write(tmp_path / "a.tsv", "text\tlabel\n\tpos\nfine\tneg\n")
    df = read_table(path, config(format="tsv"))
    assert df["text"].tolist() == ["", "fine"]


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_table(missing, config())
    assert issubclass(DataError, ValueError)


def test_missing_column_names_existing_columns(tmp_path):
    path = write(tmp_path / "a.tsv", "sentence\tlabel\nx\t1\n")
    with pytest.raises(DataError) as err:
        read_table(path, config(format="tsv", text_columns=["text"]))
    assert str(err.value) == f"{path}: no column 'text' (columns: 'sentence', 'label')"


@pytest.mark.parametrize(
    "body,line,found,fix",
    [("text\tlabel\na\t1\nb\t0\textra\n", 3, 3, "if the last column may hold '\\t': data.maxsplit: 1?"),
     ("text\tlabel\na\t1\n\njust text\n", 4, 1, "data.invalid_rows: drop skips such lines")],
)
def test_ragged_row_names_file_and_line(tmp_path, body, line, found, fix):
    path = write(tmp_path / "a.tsv", body)
    with pytest.raises(DataError) as err:
        read_table(path, config(format="tsv"))
    message = str(err.value)
    assert message == f"{path}: line {line}: expected 2 fields separated by '\\t', found {found}; {fix}"
    assert "\n" not in message


def test_unterminated_quote_in_csv(tmp_path):
    path = write(tmp_path / "a.csv", 'text,label\n"ok",1\n"bad"x,0\n')
    with pytest.raises(DataError, match=r"a\.csv: line 3: "):
        read_table(path, config())


def test_empty_split_names_split_and_file(tmp_path):
    files = split_files(tmp_path, train="text\tlabel\na\tx\nb\ty\n", test="text\tlabel\n")
    with pytest.raises(DataError) as err:
        load_labelled_data(config(format="tsv", files=files))
    assert str(err.value) == f"{files['test']}: test split is empty (0 rows)"


def test_empty_single_file(tmp_path):
    path = write(tmp_path / "a.csv", "")
    with pytest.raises(DataError, match=r"a\.csv: no rows to split"):
        load_labelled_data(config(file=path))


def test_split_emptied_by_overlap_drop_is_an_error(tmp_path):
    files = split_files(tmp_path, train="text\tlabel\nSame\tx\n", test="text\tlabel\nsame\tx\n",
                        validation="text\tlabel\nother\tx\n")
    with pytest.raises(DataError, match=r"train\.tsv: train split is empty"):
        load_labelled_data(config(format="tsv", files=files, drop_train_overlap=True))


# --------------------------------------------------------------------------- splitting and sampling


def test_stratified_split_proportions_and_coverage():
    df = labelled({"a": 100, "b": 50, "c": 3})
    parts = stratified_split(df, SplitFractions(train=0.8, validation=0.1, test=0.1, seed=1))
    assert set(parts) == {"train", "validation", "test"}
    counts = {name: Counter(part["label"]) for name, part in parts.items()}
    assert counts["train"] == {"a": 80, "b": 40, "c": 3}
    assert counts["validation"] == {"a": 10, "b": 5}
    assert counts["test"] == {"a": 10, "b": 5}
    all_texts = [t for part in parts.values() for t in part["text"]]
    assert sorted(all_texts) == sorted(df["text"])  # a partition: nothing lost, nothing twice
    for part in parts.values():  # original order kept
        assert part["source_row"].is_monotonic_increasing


def test_stratified_split_keeps_small_labels_in_train():
    df = labelled({"big": 20, "three": 3, "two": 2, "one": 1})
    parts = stratified_split(df, SplitFractions(train=0.4, validation=0.3, test=0.3))
    assert set(parts["train"]["label"]) == {"big", "three", "two", "one"}


def test_stratified_split_is_seeded():
    df = labelled({"a": 60, "b": 40})
    first = stratified_split(df, SplitFractions(seed=7))
    again = stratified_split(df, SplitFractions(seed=7))
    other = stratified_split(df, SplitFractions(seed=8))
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert first["test"]["text"].tolist() != other["test"]["text"].tolist()


def test_stratified_split_without_validation():
    parts = stratified_split(labelled({"a": 10, "b": 10}), SplitFractions(train=0.5, validation=0, test=0.5))
    assert set(parts) == {"train", "test"}
    assert len(parts["test"]) == 10


def test_stratified_sample_keeps_every_label():
    df = labelled({"a": 900, "b": 95, "c": 5})
    sample = stratified_sample(df, 100, seed=3)
    assert len(sample) == 100
    assert Counter(sample["label"]) == {"a": 90, "b": 9, "c": 1}
    rare = stratified_sample(labelled({"a": 990, "b": 5, "c": 5}), 10, seed=3)
    assert len(rare) == 10 and set(rare["label"]) == {"a", "b", "c"}
    pd.testing.assert_frame_equal(sample, stratified_sample(df, 100, seed=3))
    assert sample["text"].tolist() != stratified_sample(df, 100, seed=4)["text"].tolist()


def test_stratified_sample_edge_sizes():
    df = labelled({"a": 5, "b": 3, "c": 1})
    assert len(stratified_sample(df, 50, seed=0)) == 9
    two = stratified_sample(df, 2, seed=0)
    assert sorted(two["label"]) == ["a", "b"]  # fewer rows than labels: the most frequent labels


# --------------------------------------------------------------------------- whole dataset


def _pair(tmp_path: Path, train_rows: list[tuple[str, str]], test_rows: list[tuple[str, str]], **kw) -> dict[str, str]:
    def body(rows):
        return "text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows)

    files = split_files(tmp_path, train=body(train_rows), test=body(test_rows), **kw)
    return files


def test_load_splits_files_and_columns(tmp_path):
    files = _pair(tmp_path, [("a", "x"), ("b", "y")], [("c", "x")], validation="text\tlabel\nd\ty\n")
    data = load_labelled_data(config(format="tsv", files=files))
    assert isinstance(data, LoadedData)
    assert set(data.splits) == {"train", "validation", "test"}
    assert data.splits["train"].column_names == COLUMNS
    assert data.splits["train"].features["source_row"].dtype == "int64"
    assert data.splits["train"][0] == {"text": "a", "label": "x", "source_file": files["train"], "source_row": 2}
    assert data.label_names == ["x", "y"]
    assert data.dropped_overlap == 0
    assert data.files == [files["test"], files["train"], files["validation"]]


def test_declared_label_names_are_kept(tmp_path):
    files = _pair(tmp_path, [("a", "zeta"), ("b", "alpha")], [("c", "alpha")], validation="text\tlabel\nd\tzeta\n")
    data = load_labelled_data(config(format="tsv", files=files, label_names=["zeta", "alpha", "beta"]))
    assert data.label_names == ["zeta", "alpha", "beta"]


def test_missing_validation_is_carved_from_train(tmp_path):
    train = [(f"p{i}", "pos") for i in range(60)] + [(f"n{i}", "neg") for i in range(40)]
    files = _pair(tmp_path, train, [("t", "pos")])
    data = load_labelled_data(config(format="tsv", files=files, seed=5))
    val, tr = data.splits["validation"], data.splits["train"]
    assert Counter(val["label"]) == {"pos": 6, "neg": 4}
    assert len(tr) == 90
    assert set(val["text"]).isdisjoint(tr["text"])
    assert set(val["source_file"]) == {files["train"]}
    again = load_labelled_data(config(format="tsv", files=files, seed=5))
    assert again.splits["validation"]["text"] == val["text"]
    other = load_labelled_data(config(format="tsv", files=files, seed=6))
    assert other.splits["validation"]["text"] != val["text"]


def test_drop_train_overlap_counts_before_subsetting(tmp_path):
    train = [(f"text {i}", "a" if i % 2 else "b") for i in range(40)] + [("Shared  ONE", "a"), ("shared two", "b")]
    files = _pair(tmp_path, train, [("shared one", "a")], validation="text\tlabel\n SHARED two\tb\n")
    kept = load_labelled_data(config(format="tsv", files=files))
    assert kept.dropped_overlap == 0 and len(kept.splits["train"]) == 42
    dropped = load_labelled_data(config(format="tsv", files=files, drop_train_overlap=True))
    assert dropped.dropped_overlap == 2
    assert len(dropped.splits["train"]) == 40
    assert not any(t.startswith(("Shared", "shared")) for t in dropped.splits["train"]["text"])
    small = load_labelled_data(config(format="tsv", files=files, drop_train_overlap=True, max_train_rows=10))
    assert small.dropped_overlap == 2  # counted on the full train split
    assert len(small.splits["train"]) == 10


def test_max_rows_are_stratified_subsets(tmp_path):
    train = [(f"p{i}", "pos") for i in range(80)] + [(f"n{i}", "neg") for i in range(20)]
    test = [(f"tp{i}", "pos") for i in range(30)] + [(f"tn{i}", "neg") for i in range(30)]
    files = _pair(tmp_path, train, test, validation="text\tlabel\n" + "".join(f"v{i}\tpos\n" for i in range(9)))
    data = load_labelled_data(config(format="tsv", files=files, max_train_rows=10, max_eval_rows=6))
    assert Counter(data.splits["train"]["label"]) == {"pos": 8, "neg": 2}
    assert Counter(data.splits["test"]["label"]) == {"pos": 3, "neg": 3}
    assert len(data.splits["validation"]) == 6


def test_too_small_train_to_carve_validation(tmp_path):
    files = _pair(tmp_path, [("a", "x"), ("b", "y")], [("c", "x")])
    with pytest.raises(DataError, match=r"train\.tsv: validation split is empty"):
        load_labelled_data(config(format="tsv", files=files))


def test_single_file_split_by_fractions(tmp_path):
    rows = "".join(f"t{i},{'x' if i % 4 else 'y'}\n" for i in range(200))
    path = write(tmp_path / "all.csv", "text,label\n" + rows)
    data = load_labelled_data(config(file=path, split=SplitFractions(train=0.6, validation=0.2, test=0.2)))
    sizes = {name: len(ds) for name, ds in data.splits.items()}
    assert sizes == {"train": 120, "validation": 40, "test": 40}
    assert Counter(data.splits["test"]["label"]) == {"x": 30, "y": 10}
    assert data.files == [path]


# --------------------------------------------------------------------------- real datasets

def needs_data(test):
    """Reads the real datasets in data/: an `integration` test, skipped without them (`dvc pull`)."""
    return pytest.mark.integration(pytest.mark.needs_data(test))


def _load_timed(cfg: DataConfig) -> LoadedData:
    """Loads every configured file exactly once (loading speed is measured in bench/, not here)."""
    data = load_labelled_data(cfg)
    expected = [cfg.file] if cfg.file else list(dict.fromkeys(cfg.files.values()))
    assert sorted(data.files) == sorted(expected)
    return data


@needs_data
def test_real_sst2(monkeypatch):
    monkeypatch.chdir(DATA.parent)
    cfg = DataConfig(
        format="tsv",
        files={"train": "data/sst2/train.tsv", "validation": "data/sst2/dev.tsv", "test": "data/sst2/test.tsv"},
        text_columns=["sentence"],
        label_column="label",
        label_names=["negative", "positive"],
        label_map={"0": "negative", "1": "positive"},
    )
    data = _load_timed(cfg)
    assert {name: len(ds) for name, ds in data.splits.items()} == {"train": 67349, "validation": 872, "test": 1821}
    assert data.splits["train"][0] == {
        "text": "hide new secretions from the parental units ",
        "label": "negative",
        "source_file": "data/sst2/train.tsv",
        "source_row": 2,
    }
    assert data.splits["test"][0]["text"] == "uneasy mishmash of styles and genres ."  # CRLF file
    assert {lab for ds in data.splits.values() for lab in ds["label"]} == {"negative", "positive"}


@needs_data
def test_real_emotion(monkeypatch):
    monkeypatch.chdir(DATA.parent)
    cfg = DataConfig(
        format="text",
        separator=";",
        files={"train": "data/emotion/train.txt", "validation": "data/emotion/val.txt", "test": "data/emotion/test.txt"},
        text_columns=["text"],
        label_column="label_name",
    )
    data = _load_timed(cfg)
    assert {name: len(ds) for name, ds in data.splits.items()} == {"train": 16000, "validation": 2000, "test": 2000}
    assert data.label_names == ["anger", "fear", "joy", "love", "sadness", "surprise"]
    assert data.splits["train"][0]["text"] == "i didnt feel humiliated"
    assert data.splits["train"][0]["label"] == "sadness"


@needs_data
def test_real_ag_news(monkeypatch):
    monkeypatch.chdir(DATA.parent)
    cfg = DataConfig(
        format="csv",
        header=False,
        file="data/ag_news/test.csv",
        text_columns=[1, 2],
        label_column=0,
        label_map={"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"},
        split=SplitFractions(train=0.8, validation=0.1, test=0.1),
    )
    data = _load_timed(cfg)
    sizes = {name: len(ds) for name, ds in data.splits.items()}
    assert sum(sizes.values()) == 7600
    assert sizes == {"train": 6080, "validation": 760, "test": 760}
    overall = Counter(lab for ds in data.splits.values() for lab in ds["label"])
    assert overall == {"World": 1900, "Sports": 1900, "Business": 1900, "Sci/Tech": 1900}
    assert data.label_names == ["Business", "Sci/Tech", "Sports", "World"]
    rows = {row["source_row"]: row for ds in data.splits.values() for row in ds}
    assert rows[1]["label"] == "Business"
    assert rows[1]["text"].startswith("Fears for T N pension after talks. Unions representing workers at Turner")
