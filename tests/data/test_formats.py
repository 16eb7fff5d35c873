"""Datasets in the shapes public datasets come in, read through config alone: one file per class,
a column naming each row's split, lines that are not cleanly delimited (maxsplit, regex, derived
labels), compressed files, the invalid-rows policy, and the version of data outside DVC."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tlflow.config import DataConfig
from tlflow.data.readers import DataError, InvalidRow, load_labelled_data, read_table
from tlflow.data.version import data_version
from tlflow.task_types.registry import get_task_type

pytestmark = [pytest.mark.unit]

TEXT = get_task_type("text-classification").dataset_spec()
PAIR = get_task_type("sentence-pair").dataset_spec()
NER = get_task_type("token-classification").dataset_spec()

#: Snippets in the style of the sentence-polarity review files (one lower-cased snippet per line).
POSITIVE = [f"the film is a charming , often hilarious ride number {i} ." for i in range(60)]
NEGATIVE = [f"a sluggish , tired retread that never finds its footing , take {i} ." for i in range(40)]
#: Question-type lines (coarse:fine label, a space, the question, which may hold ':' itself).
TREC = [
    "DESC:manner How did serfdom develop in and then leave Russia ?",
    "ENTY:cremat What films featured the character Popeye Doyle ?",
    "HUM:ind Who wrote the song : `` Stardust '' ?",
    "LOC:city What is the capital of Yugoslavia ?",
    "NUM:date When was Ozzy Osbourne born ?",
]


def write(path: Path, text: str, encoding: str = "utf-8") -> str:
    path.write_bytes(text.encode(encoding))
    return str(path)


# --------------------------------------------------------------------------- one file per class


def test_class_files_give_one_labelled_example_per_line_split_per_label(tmp_path):
    pos = write(tmp_path / "rt-polarity.pos", "\n".join(POSITIVE) + "\n", "latin-1")
    neg = write(tmp_path / "rt-polarity.neg", "\r\n".join(NEGATIVE) + "\r\n\r\n", "latin-1")
    cfg = DataConfig(class_files={"positive": pos, "negative": neg}, encoding="latin-1",
                     split={"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 3})
    data = load_labelled_data(cfg, TEXT)
    sizes = {split: Counter(ds["label"]) for split, ds in data.splits.items()}
    assert sizes == {"train": {"positive": 48, "negative": 32}, "validation": {"positive": 6, "negative": 4},
                     "test": {"positive": 6, "negative": 4}}
    assert data.label_names == ["negative", "positive"] and data.files == [neg, pos]
    row = next(r for r in data.splits["train"] if r["source_file"] == pos)
    assert row["text"] == POSITIVE[row["source_row"] - 1]  # the line number of the example
    again = load_labelled_data(cfg, TEXT)
    assert again.splits["test"]["text"] == data.splits["test"]["text"]  # seeded
    other = load_labelled_data(cfg.model_copy(update={"split": cfg.split.model_copy(update={"seed": 4})}), TEXT)
    assert other.splits["test"]["text"] != data.splits["test"]["text"]


def test_class_files_need_a_task_of_one_text_and_a_label(tmp_path):
    pos = write(tmp_path / "a.pos", "one\n")
    with pytest.raises(DataError, match=r"data\.class_files: .*sentence-pair rows need text, label, text_pair"):
        load_labelled_data(DataConfig(class_files={"yes": pos}), PAIR)


# --------------------------------------------------------------------------- a column naming the split


def _sick(tmp_path: Path) -> str:
    """A SICK-style file: pairs, a judgment and the SemEval set each row belongs to."""
    sets = ["TRAIN"] * 12 + ["TRIAL"] * 3 + ["TEST"] * 5
    lines = ["pair_ID\tsentence_A\tsentence_B\tentailment_judgment\tSemEval_set"]
    for i, part in enumerate(sets, start=1):
        judgment = ["ENTAILMENT", "NEUTRAL", "CONTRADICTION"][i % 3]
        lines.append(f"{i}\tA man is playing a guitar on stage {i}\tA person plays an instrument {i}\t{judgment}\t{part}")
    return write(tmp_path / "SICK.txt", "\n".join(lines) + "\n")


def test_split_column_with_a_value_map_cuts_the_splits(tmp_path):
    path = _sick(tmp_path)
    cfg = DataConfig(file=path, format="tsv", text_columns=["sentence_A"], columns={"text_pair": "sentence_B"},
                     label_column="entailment_judgment", split_column="SemEval_set",
                     split_map={"TRAIN": "train", "TRIAL": "validation", "TEST": "test"})
    data = load_labelled_data(cfg, PAIR)
    assert {s: len(ds) for s, ds in data.splits.items()} == {"train": 12, "validation": 3, "test": 5}
    assert data.splits["validation"]["source_row"] == [14, 15, 16]  # the TRIAL rows, in file order
    assert data.splits["test"][0]["text_pair"] == "A person plays an instrument 16"
    assert data.splits["train"].column_names == ["text", "text_pair", "label", "source_file", "source_row"]
    # without a validation value, validation is carved from train as for split files
    no_trial = load_labelled_data(cfg.model_copy(update={"split_map": {"TRAIN": "train", "TRIAL": "train",
                                                                       "TEST": "test"}}), PAIR)
    assert len(no_trial.splits["validation"]) + len(no_trial.splits["train"]) == 15


def test_a_split_value_without_a_split_names_its_line_and_the_fix(tmp_path):
    path = _sick(tmp_path)
    cfg = DataConfig(file=path, format="tsv", text_columns=["sentence_A"], columns={"text_pair": "sentence_B"},
                     label_column="entailment_judgment", split_column="SemEval_set", split_map={"TRAIN": "train"})
    with pytest.raises(DataError) as err:
        load_labelled_data(cfg, PAIR)
    assert str(err.value) == (f"{path}: line 14: data.split_column 'SemEval_set' value 'TRIAL' names no split: map "
                              "it to train, validation or test in data.split_map (values without a split: 'TRIAL', "
                              "'TEST')")


# --------------------------------------------------------------------------- lines not cleanly delimited


def test_maxsplit_keeps_the_separator_in_the_last_column_and_derives_the_coarse_label(tmp_path):
    path = write(tmp_path / "train_5500.label", "\n".join(TREC) + "\n")
    cfg = DataConfig(file=path, format="text", separator=" ", maxsplit=1, header=False, text_columns=[1],
                     label_column="coarse", derived_columns={"coarse": {"source": 0, "pattern": "^([A-Z]+):"}})
    df = read_table(path, cfg, TEXT)
    assert df["label"].tolist() == ["DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert df["text"][2] == "Who wrote the song : `` Stardust '' ?"
    fine = read_table(path, cfg.model_copy(update={"label_column": 0}), TEXT)
    assert fine["label"][0] == "DESC:manner"


def test_regex_format_reads_named_groups(tmp_path):
    path = write(tmp_path / "TREC_10.label", "\n".join(TREC) + "\r\n")
    cfg = DataConfig(file=path, format="regex", pattern=r"(?P<label>[A-Z]+):(?P<fine>\S+) (?P<text>.*)")
    df = read_table(path, cfg, TEXT)
    assert df["label"].tolist() == ["DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert df["text"][2] == "Who wrote the song : `` Stardust '' ?" and df["source_row"].tolist() == [1, 2, 3, 4, 5]
    fine = read_table(path, cfg.model_copy(update={"label_column": "fine"}), TEXT)
    assert fine["label"].tolist() == ["manner", "cremat", "ind", "city", "date"]


def test_a_line_the_pattern_does_not_match_names_its_line(tmp_path):
    path = write(tmp_path / "q.label", TREC[0] + "\nno label here\n")
    cfg = DataConfig(file=path, format="regex", pattern=r"(?P<label>[A-Z]+):\S+ (?P<text>.*)")
    with pytest.raises(DataError) as err:
        read_table(path, cfg, TEXT)
    assert str(err.value) == (f"{path}: line 2: does not match data.pattern: 'no label here'; "
                              "data.invalid_rows: drop skips such lines")


# --------------------------------------------------------------------------- compressed files

CSV = "text,label\n\"a gripping, moving film\",positive\ndull and far too long,negative\n"


@pytest.mark.parametrize("name,pack", [
    ("reviews.csv.gz", gzip.compress), ("reviews.csv.bz2", bz2.compress), ("reviews.csv.xz", lzma.compress),
    ("reviews.zip", None),
])
def test_compressed_files_are_read_by_extension(tmp_path, name, pack):
    path = tmp_path / name
    if pack is None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("reviews.csv", CSV)
    else:
        path.write_bytes(pack(CSV.encode()))
    df = read_table(path, DataConfig(file=str(path)), TEXT)
    assert df["text"].tolist() == ["a gripping, moving film", "dull and far too long"]
    assert df["source_row"].tolist() == [2, 3] and set(df["source_file"]) == {str(path)}


def test_compression_setting_reads_a_file_without_its_extension(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(bz2.compress(CSV.encode()))
    with pytest.raises(DataError) as err:  # today's misleading "cannot decode as utf-8 at byte ..." is gone
        read_table(path, DataConfig(file=str(path)), TEXT)
    assert str(err.value) == (f"{path}: looks bz2-compressed (the file starts with the bz2 signature): name it "
                              "reviews.csv.bz2 or set data.compression: bz2")
    df = read_table(path, DataConfig(file=str(path), compression="bz2"), TEXT)
    assert df["label"].tolist() == ["positive", "negative"]


def test_compressed_conll_and_jsonl(tmp_path):
    conll = tmp_path / "train.txt.gz"
    conll.write_bytes(gzip.compress(b"-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"))
    df = read_table(conll, DataConfig(format="conll", file=str(conll)), NER)
    assert df["tokens"][0] == ["EU", "rejects"] and df["tags"][0] == ["B-ORG", "O"]
    jsonl = tmp_path / "a.jsonl.xz"
    jsonl.write_bytes(lzma.compress(b'{"text": "fine", "label": "pos"}\n'))
    assert read_table(jsonl, DataConfig(format="jsonl", file=str(jsonl)), TEXT)["label"].tolist() == ["pos"]


def test_a_zip_must_hold_one_file_and_a_corrupt_archive_is_one_line(tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.csv", CSV)
        archive.writestr("test.csv", CSV)
    with pytest.raises(DataError, match=r"two\.zip: a zip data file must hold exactly one file, this one holds 2 "
                                        r"\(train\.csv, test\.csv\)"):
        read_table(path, DataConfig(file=str(path)), TEXT)
    broken = tmp_path / "cut.csv.gz"
    broken.write_bytes(gzip.compress(CSV.encode())[:20])
    with pytest.raises(DataError, match=r"cut\.csv\.gz: cannot read as gz: "):
        read_table(broken, DataConfig(file=str(broken)), TEXT)
    wrong = tmp_path / "b.csv.gz"
    wrong.write_bytes(bz2.compress(CSV.encode()))
    with pytest.raises(DataError, match=r"b\.csv\.gz: cannot read as gz: .*\(it looks bz2-compressed: "
                                        r"data\.compression: bz2\?\)"):
        read_table(wrong, DataConfig(file=str(wrong)), TEXT)


# --------------------------------------------------------------------------- invalid rows


def _spam(tmp_path: Path) -> str:
    """An SMS-spam-style tsv with a blank message, a missing label and a line of three fields."""
    lines = ["label\tmessage"] + [f"{'spam' if i % 4 == 0 else 'ham'}\tmessage number {i}" for i in range(40)]
    lines[6] = "ham\t  "
    lines[11] = "\tno label on this one"
    lines[20] = "ham\tcall me\tlater"
    return write(tmp_path / "SMSSpamCollection.tsv", "\n".join(lines) + "\n")


def test_invalid_rows_drop_counts_them_with_their_lines(tmp_path):
    path = _spam(tmp_path)
    cfg = DataConfig(file=path, format="tsv", text_columns=["message"], invalid_rows="drop")
    data = load_labelled_data(cfg, TEXT)
    assert data.invalid == [
        InvalidRow(path, 7, "blank text"), InvalidRow(path, 12, "missing label"),
        InvalidRow(path, 21, "unparseable line", "expected 2 fields separated by '\\t', found 3"),
    ]
    assert sum(len(ds) for ds in data.splits.values()) == 37
    with pytest.raises(DataError, match=r"line 21: expected 2 fields separated by '\\t', found 3; "
                                        r"if the last column may hold '\\t': data\.maxsplit: 1\?"):
        load_labelled_data(cfg.model_copy(update={"invalid_rows": "fail"}), TEXT)


def test_validation_sees_the_rows_left_out_by_max_train_rows(tmp_path):
    from tlflow.config import PipelineConfig
    from tlflow.data.validation.stage import check_data
    from tlflow.data.validation.suite import CHECK_TEXT_NOT_BLANK

    lines = ["text\tlabel"] + [f"review {i}\t{'pos' if i % 2 else 'neg'}" for i in range(200)]
    lines[41] = "   \tpos"
    train = write(tmp_path / "train.tsv", "\n".join(lines) + "\n")
    test = write(tmp_path / "test.tsv", "text\tlabel\nheld out a\tpos\nheld out b\tneg\n")
    data = {"format": "tsv", "files": {"train": train, "test": test}, "max_train_rows": 10}
    cfg = PipelineConfig.model_validate({"name": "whole", "data": data, "privacy": {"pii": "off"}})
    task = get_task_type("text-classification")
    loaded, report, _ = check_data(cfg, task.dataset_spec(), task.data_checks(), tmp_path / "reports")
    assert len(loaded.splits["train"]) == 10 and len(loaded.whole["train"]) == 180
    assert 42 not in list(loaded.splits["train"]["source_row"])  # the blank row is outside the sample ...
    blank = next(c for c in report.checks if c.check == CHECK_TEXT_NOT_BLANK and c.split == "train")
    assert not blank.success and blank.examples[0]["row"] == 42  # ... and validation still finds it
    assert "rows: train 10 of 180 (max_train_rows), validation 20, test 2" in report.summary()


# --------------------------------------------------------------------------- data outside DVC


def _dvc_project(root: Path, files: dict[str, str]) -> Path:
    """A project whose data.dvc tracks data/ and whose DVC cache holds the folder's manifest."""
    import hashlib

    for rel, text in files.items():
        (root / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / rel).write_text(text)
    manifest = [{"md5": hashlib.md5(text.encode()).hexdigest(), "relpath": rel} for rel, text in files.items()]
    md5 = "0123456789abcdef0123456789abcdef"
    cache = root / ".dvc" / "cache" / "files" / "md5" / md5[:2]
    cache.mkdir(parents=True)
    (cache / f"{md5[2:]}.dir").write_text(json.dumps(manifest))
    (root / "data.dvc").write_text(f"outs:\n- md5: {md5}.dir\n  path: data\n")
    return root / "data.dvc"


def test_data_outside_dvc_is_versioned_by_content_per_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dvc = _dvc_project(tmp_path, {"sst2/train.tsv": "text\tlabel\na\t1\n", "sst2/test.tsv": "text\tlabel\nb\t0\n"})
    inside = DataConfig(format="tsv", files={"train": "data/sst2/train.tsv", "test": "data/sst2/test.tsv"})
    version = data_version(inside, dvc)
    assert (version.md5, version.tracked) == ("0123456789abcdef0123456789abcdef", True)
    assert version.tags() == {"data_md5": version.md5, "data_tracked": "true"}
    (tmp_path / "mine").mkdir()
    write(tmp_path / "mine" / "train.tsv", "text\tlabel\nc\t1\n")
    outside = DataConfig(format="tsv", files={"train": "mine/train.tsv", "test": "data/sst2/test.tsv"})
    version = data_version(outside, dvc)
    assert not version.tracked and version.md5 != "0123456789abcdef0123456789abcdef"
    assert version.splits["train"] == version.splits["validation"] != version.splits["test"]  # carved from train
    assert version.tags()["data_tracked"] == "false" and "data_tracked=false" in version.line()
    write(tmp_path / "mine" / "train.tsv", "text\tlabel\nc\t0\n")
    assert data_version(outside, dvc).splits["train"] != version.splits["train"]  # content, not the path
    # a file inside data/ that DVC's record does not cover (added or edited since `dvc add`)
    write(tmp_path / "data" / "sst2" / "test.tsv", "text\tlabel\nedited\t0\n")
    assert not data_version(inside, dvc).tracked
    write(tmp_path / "data" / "extra.tsv", "text\tlabel\nnew\t0\n")
    assert not data_version(DataConfig(format="tsv", file="data/extra.tsv"), dvc).tracked


def test_lineage_of_a_config_outside_dvc_is_tagged_untracked(tmp_path, monkeypatch):
    from tlflow.config import load_config
    from tlflow.registry.lineage import Lineage

    monkeypatch.chdir(tmp_path)
    _dvc_project(tmp_path, {"a.csv": CSV})
    write(tmp_path / "b.csv", CSV)
    tracked = Lineage.of(load_config(None, ["data.file=data/a.csv", "data.files={}", "data.format=csv"]))
    assert (tracked.data_md5, tracked.data_tracked) == ("0123456789abcdef0123456789abcdef", "true")
    untracked = Lineage.of(load_config(None, ["data.file=b.csv", "data.files={}", "data.format=csv"]))
    assert untracked.data_tracked == "false" and untracked.data_md5 == untracked.data_files_md5
    assert untracked.tags()["data_tracked"] == "false"


def test_parquet_may_be_compressed(tmp_path):
    path = tmp_path / "a.parquet.gz"
    raw = tmp_path / "raw.parquet"
    pd.DataFrame({"text": ["good"], "label": ["pos"]}).to_parquet(raw)
    path.write_bytes(gzip.compress(raw.read_bytes()))
    df = read_table(path, DataConfig(format="parquet", file=str(path)), TEXT)
    assert df["text"].tolist() == ["good"] and df["source_row"].tolist() == [1]


@pytest.mark.integration
def test_redaction_with_sampling_shows_no_value_the_scan_did_not_see(tmp_path):
    from tlflow.config import PipelineConfig
    from tlflow.data.pii.report import CHECK_PII
    from tlflow.data.validation.stage import UNSCANNED_VALUE, check_data
    from tlflow.data.validation.suite import CHECK_TEXT_LENGTH

    email = "jane.doe@example.com"
    lines = ["text\tlabel"] + [f"short review {i}\t{'pos' if i % 2 else 'neg'}" for i in range(60)]
    lines[41] = f"write to {email} for the long version of this review\tpos"  # too long, outside the sample
    train = write(tmp_path / "train.tsv", "\n".join(lines) + "\n")
    test = write(tmp_path / "test.tsv", f"text\tlabel\nmail {email}\tpos\nheld out\tneg\n")
    cfg = PipelineConfig.model_validate({
        "name": "redacted", "validate": {"max_chars": 30},
        "data": {"format": "tsv", "files": {"train": train, "test": test}, "max_train_rows": 10},
        "privacy": {"pii": "redact", "entities": ["EMAIL_ADDRESS"], "max_pii_fraction": 0.2},
    })
    task = get_task_type("text-classification")
    loaded, report, path = check_data(cfg, task.dataset_spec(), task.data_checks(), tmp_path / "reports")
    assert 42 not in list(loaded.splits["train"]["source_row"])
    long = next(c for c in report.checks if c.check == CHECK_TEXT_LENGTH and c.split == "train")
    assert not long.success and long.examples[0]["row"] == 42 and long.examples[0]["value"] == UNSCANNED_VALUE
    pii = {c.split: c for c in report.checks if c.check == CHECK_PII}
    assert pii["train"].observed.startswith("0 of 10 rows")  # the PII share counts the scanned rows only
    assert not pii["test"].success and pii["test"].observed.startswith("1 of 2 rows")
    assert email not in path.read_text(encoding="utf-8") and email not in json.dumps(report.to_dict())
