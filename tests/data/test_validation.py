"""Tests of tlflow.data.validation.suite: the Great Expectations data-quality suite run on every split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

pytestmark = [pytest.mark.unit]

ROOT = Path(__file__).resolve().parents[2]

from tlflow.config import ValidateConfig
from tlflow.data.validation.suite import (
    CHECK_CLASS_SHARE,
    CHECK_LABEL_COLUMN,
    CHECK_LABEL_IN_SET,
    CHECK_LABEL_NOT_NULL,
    CHECK_LABELS_IN_TRAIN,
    CHECK_LEAKAGE,
    CHECK_TEXT_COLUMN,
    CHECK_TEXT_LENGTH,
    CHECK_TEXT_NOT_BLANK,
    CHECK_TEXT_NOT_NULL,
    CheckResult,
    ValidationReport,
    build_suite,
    validate_splits,
)
from tlflow.task_types.registry import get_task_type

#: The checks single-text classification adds (the task type these tests validate).
CHECKS = get_task_type("text-classification").data_checks()

LABELS = ["negative", "positive"]
SST2_DEV = ROOT / "data" / "sst2" / "dev.tsv"


def frame(rows: list[tuple], file: str, first_row: int = 2) -> pd.DataFrame:
    """Rows of (text, label) in the reader's output shape; source_row counts from `first_row`."""
    return pd.DataFrame(
        {
            "text": [r[0] for r in rows],
            "label": [r[1] for r in rows],
            "source_file": file,
            "source_row": list(range(first_row, first_row + len(rows))),
        }
    )


def clean_frames() -> dict[str, pd.DataFrame]:
    return {
        "train": frame(
            [
                ("a gripping and moving film", "positive"),
                ("dull , lifeless and far too long", "negative"),
                ("the cast is wonderful", "positive"),
                ("a mess from start to finish", "negative"),
                ("funny and warm", "positive"),
                ("i wanted my money back", "negative"),
            ],
            "data/x/train.csv",
        ),
        "validation": frame(
            [("a quiet triumph", "positive"), ("tedious beyond words", "negative")], "data/x/dev.csv"
        ),
        "test": frame([("sharp , smart writing", "positive"), ("an utter bore", "negative")], "data/x/test.csv"),
    }


def to_dd(frames: dict[str, pd.DataFrame]) -> DatasetDict:
    return DatasetDict({k: Dataset.from_pandas(v, preserve_index=False) for k, v in frames.items()})


def run(frames: dict[str, pd.DataFrame], labels: list[str] = LABELS, **cfg) -> ValidationReport:
    return validate_splits(to_dd(frames), labels, ValidateConfig(**cfg), CHECKS)


def failed(report: ValidationReport) -> list[tuple[str, str]]:
    return [(c.split, c.check) for c in report.failures()]


def only_failure(report: ValidationReport) -> CheckResult:
    assert not report.success
    assert len(report.failures()) == 1, report.summary()
    return report.failures()[0]


def with_row(frames: dict[str, pd.DataFrame], split: str, text, label) -> dict[str, pd.DataFrame]:
    """Append one row to a split; it gets the next source_row of that split's file."""
    df = frames[split]
    extra = frame([(text, label)], df["source_file"].iloc[0], first_row=int(df["source_row"].max()) + 1)
    frames[split] = pd.concat([df, extra], ignore_index=True)
    return frames


# --- clean data ---------------------------------------------------------------------------------


def test_clean_dataset_passes():
    report = run(clean_frames())
    assert report.success, report.summary()
    assert report.failures() == []
    splits = {c.split for c in report.checks}
    assert splits == {"train", "validation", "test"}
    names = {(c.split, c.check) for c in report.checks}
    # the train-only and eval-only checks are where they belong
    assert ("train", CHECK_LABELS_IN_TRAIN) in names and ("test", CHECK_LABELS_IN_TRAIN) not in names
    assert ("test", CHECK_LEAKAGE) in names and ("validation", CHECK_LEAKAGE) in names
    assert ("train", CHECK_LEAKAGE) not in names
    first_line = f"all {len(report.checks)} checks passed on splits train, validation, test"
    assert report.summary().splitlines()[0] == first_line


def test_checks_use_the_declared_ge_expectations():
    report = run(clean_frames())
    by_name = {c.check: c.expectation for c in report.checks}
    assert by_name[CHECK_TEXT_COLUMN] == "expect_column_to_exist"
    assert by_name[CHECK_TEXT_NOT_NULL] == "expect_column_values_to_not_be_null"
    assert by_name[CHECK_TEXT_NOT_BLANK] == "expect_column_values_to_not_match_regex"
    assert by_name[CHECK_TEXT_LENGTH] == "expect_column_value_lengths_to_be_between"
    assert by_name[CHECK_LABEL_IN_SET] == "expect_column_values_to_be_in_set"
    assert by_name[CHECK_LABELS_IN_TRAIN] == "expect_column_distinct_values_to_contain_set"
    assert by_name[CHECK_LEAKAGE] == "expect_column_values_to_not_be_in_set"


def test_build_suite_follows_config():
    cfg = ValidateConfig(min_chars=3, max_chars=40)
    train = build_suite("train", LABELS, cfg, None, CHECKS)
    test = build_suite("test", LABELS, cfg, {"Some  Text"}, CHECKS)
    types = [e.expectation_type for e in train.expectations]
    assert "expect_column_distinct_values_to_contain_set" in types
    assert "expect_column_values_to_not_be_in_set" not in types
    length = next(e for e in train.expectations if e.expectation_type.startswith("expect_column_value_lengths"))
    assert (length.min_value, length.max_value) == (3, 40)
    leak = next(e for e in test.expectations if e.expectation_type == "expect_column_values_to_not_be_in_set")
    assert list(leak.value_set) == ["some text"]
    no_leak = build_suite("test", LABELS, ValidateConfig(check_leakage=False), {"x"}, CHECKS)
    assert "expect_column_values_to_not_be_in_set" not in [e.expectation_type for e in no_leak.expectations]


# --- one failure type at a time -----------------------------------------------------------------


def test_null_text_fails_only_not_null():
    report = run(with_row(clean_frames(), "validation", None, "positive"))
    check = only_failure(report)
    assert (check.split, check.check) == ("validation", CHECK_TEXT_NOT_NULL)
    assert check.examples == [{"file": "data/x/dev.csv", "row": 4, "value": None}]
    assert check.observed == "1 of 3 rows (33.3%)"


def test_blank_text_fails_only_not_blank():
    report = run(with_row(clean_frames(), "train", " \t  ", "negative"))
    check = only_failure(report)
    assert (check.split, check.check) == ("train", CHECK_TEXT_NOT_BLANK)
    assert check.examples == [{"file": "data/x/train.csv", "row": 8, "value": " \t  "}]
    assert check.observed.startswith("1 of 7 rows")


def test_too_long_text_fails_only_length():
    long_text = "word " * 30  # 150 chars, 149 after stripping
    report = run(with_row(clean_frames(), "test", long_text, "positive"), max_chars=100)
    check = only_failure(report)
    assert (check.split, check.check) == ("test", CHECK_TEXT_LENGTH)
    [example] = check.examples
    # reports show a 60-character excerpt of a value, never the whole text
    assert (example["file"], example["row"], example["value"]) == ("data/x/test.csv", 4, long_text[:59] + "…")
    assert "1 of 3 rows" in check.observed and "1..100" in check.observed


def test_too_short_text_counts_stripped_chars():
    report = run(with_row(clean_frames(), "train", "  ok  ", "positive"), min_chars=3)
    check = only_failure(report)
    assert check.check == CHECK_TEXT_LENGTH
    assert check.examples[0]["row"] == 8


def test_unknown_label_fails_only_label_set():
    report = run(with_row(clean_frames(), "test", "so-so", "neutral"))
    check = only_failure(report)
    assert (check.split, check.check) == ("test", CHECK_LABEL_IN_SET)
    assert check.examples == [{"file": "data/x/test.csv", "row": 4, "value": "neutral"}]


def test_null_label_fails_only_label_not_null():
    report = run(with_row(clean_frames(), "train", "unlabelled row", None))
    check = only_failure(report)
    assert (check.split, check.check) == ("train", CHECK_LABEL_NOT_NULL)
    assert check.examples == [{"file": "data/x/train.csv", "row": 8, "value": None}]


def test_declared_label_missing_from_train():
    frames = clean_frames()
    report = run(frames, labels=["negative", "neutral", "positive"])
    check = only_failure(report)
    assert (check.split, check.check) == ("train", CHECK_LABELS_IN_TRAIN)
    assert "neutral" in check.observed
    assert [ex["value"] for ex in check.examples] == ["neutral"]
    assert check.examples[0]["file"] == "data/x/train.csv"


@pytest.mark.parametrize("split", ["test", "validation"])
def test_leaked_train_text_is_found_after_normalisation(split):
    # same text as train row 3 ("dull , lifeless and far too long"), other case and spacing
    report = run(with_row(clean_frames(), split, "  DULL ,   Lifeless and far\ttoo long ", "negative"))
    check = only_failure(report)
    assert (check.split, check.check) == (split, CHECK_LEAKAGE)
    [example] = check.examples
    file = "data/x/test.csv" if split == "test" else "data/x/dev.csv"
    assert (example["file"], example["row"]) == (file, 4)
    assert example["value"] == "  DULL ,   Lifeless and far\ttoo long "
    assert "data/x/train.csv:3" in example["note"]


def test_leakage_check_can_be_switched_off():
    frames = with_row(clean_frames(), "test", "Funny and warm", "positive")
    assert failed(run(frames)) == [("test", CHECK_LEAKAGE)]
    report = run(frames, check_leakage=False)
    assert report.success, report.summary()
    assert CHECK_LEAKAGE not in {c.check for c in report.checks}


@pytest.mark.parametrize("column, check_name", [("label", CHECK_LABEL_COLUMN), ("text", CHECK_TEXT_COLUMN)])
def test_missing_column_fails_its_check_without_crashing(column, check_name):
    frames = clean_frames()
    frames["test"] = frames["test"].drop(columns=[column])
    report = run(frames)
    check = only_failure(report)
    assert (check.split, check.check) == ("test", check_name)
    assert f"column '{column}' missing" in check.observed
    assert "dependent checks skipped" in check.observed
    test_checks = {c.check for c in report.checks if c.split == "test"}
    if column == "text":
        assert CHECK_TEXT_NOT_NULL not in test_checks and CHECK_LEAKAGE not in test_checks
    else:
        assert CHECK_LABEL_IN_SET not in test_checks and CHECK_LABEL_NOT_NULL not in test_checks
    report.summary()
    report.to_html()
    json.dumps(report.to_dict())


def test_missing_train_split_or_train_text_column_does_not_crash():
    frames = clean_frames()
    del frames["train"]
    report = run(frames)
    assert failed(report) == [("all", "train split present")]
    frames = clean_frames()
    frames["train"] = frames["train"].drop(columns=["text"])
    report = run(frames)
    assert failed(report) == [("train", CHECK_TEXT_COLUMN)]


def test_examples_are_capped_and_counted():
    frames = clean_frames()
    for _ in range(7):
        frames = with_row(frames, "train", "", "positive")
    report = run(frames, examples_per_failure=3)
    check = only_failure(report)
    assert check.check == CHECK_TEXT_NOT_BLANK
    assert [ex["row"] for ex in check.examples] == [8, 9, 10]
    assert check.observed == "7 of 13 rows (53.8%)"


# --- class balance ------------------------------------------------------------------------------


def test_class_balance_counts():
    frames = with_row(with_row(clean_frames(), "train", "great fun", "positive"), "test", "meh", "odd")
    report = run(frames, labels=["negative", "positive"])
    assert report.class_balance == {
        "train": {"negative": 3, "positive": 4},
        "validation": {"negative": 1, "positive": 1},
        "test": {"negative": 1, "positive": 1, "odd": 1},
    }


def test_min_class_fraction_triggers():
    frames = clean_frames()
    rows = [(f"good film number {i}", "positive") for i in range(9)] + [("bad", "negative")]
    frames["train"] = frame(rows, "t.csv")
    assert run(frames, min_class_fraction=0.1).success  # 1 of 10 is not below 10 %
    assert CHECK_CLASS_SHARE not in {c.check for c in run(frames).checks}  # 0: report only
    report = run(frames, min_class_fraction=0.2)
    check = only_failure(report)
    assert (check.split, check.check) == ("train", CHECK_CLASS_SHARE)
    assert "negative" in check.observed and "1 of 10 rows (10.0%)" in check.observed
    assert [ex["value"] for ex in check.examples] == ["negative"]


# --- rendering ----------------------------------------------------------------------------------


def test_summary_names_file_and_row():
    report = run(with_row(clean_frames(), "test", "fine", "neutral"))
    text = report.summary()
    assert "data/x/test.csv:4: 'neutral'" in text
    assert CHECK_LABEL_IN_SET in text and "[test]" in text
    assert "class balance train: negative=3" in text


def test_html_names_failed_check_and_escapes():
    report = run(with_row(clean_frames(), "test", "<script>alert(1)</script>", "<script>"))
    page = report.to_html()
    assert CHECK_LABEL_IN_SET in page and "FAILED" in page
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert page.lstrip().startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_to_dict_is_json():
    report = run(with_row(clean_frames(), "validation", None, None))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["success"] is False and data["num_failed"] == 2
    assert {c["check"] for c in data["checks"] if not c["success"]} == {CHECK_TEXT_NOT_NULL, CHECK_LABEL_NOT_NULL}
    assert data["class_balance"]["validation"] == {"negative": 1, "positive": 1}


def test_ge_prints_nothing(capfd):
    run(with_row(clean_frames(), "test", "", "neutral"))
    frames = clean_frames()
    frames["test"] = frames["test"].drop(columns=["text"])
    run(frames)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_previous_ge_context_is_restored():
    import great_expectations as gx
    from great_expectations.data_context.data_context.context_factory import project_manager

    mine = gx.get_context(mode="ephemeral")
    run(clean_frames())
    assert project_manager.get_current_project() is mine


# --- real data ----------------------------------------------------------------------------------


@pytest.mark.integration  # reads data/sst2/dev.tsv
@pytest.mark.skipif(not SST2_DEV.is_file(), reason="data/sst2/dev.tsv not present")
def test_real_sst2_dev_halves_pass():
    raw = pd.read_csv(SST2_DEV, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    df = pd.DataFrame(
        {
            "text": raw["sentence"],
            "label": raw["label"].map({"0": "negative", "1": "positive"}),
            "source_file": "data/sst2/dev.tsv",
            "source_row": range(2, len(raw) + 2),  # line 1 is the header
        }
    )
    half = len(df) // 2
    report = run({"train": df.iloc[:half], "test": df.iloc[half:]}, min_class_fraction=0.3)
    assert report.success, report.summary()
    balance = report.class_balance
    assert sum(balance["train"].values()) + sum(balance["test"].values()) == len(raw) == 872
    assert balance["train"]["negative"] + balance["test"]["negative"] == 428


# --- chunks ---------------------------------------------------------------------------------------


def messy_frames() -> dict[str, pd.DataFrame]:
    """Splits with a failure of every kind, spread over the rows (and so over the chunks)."""
    train = [(f"film number {i} was {'fine' if i % 2 else 'dull'}", LABELS[i % 2]) for i in range(40)]
    train[3] = ("   ", "positive")  # blank
    train[11] = (None, "negative")  # null text
    train[17] = ("x" * 3000, "negative")  # too long
    train[23] = ("a film", "neutral")  # not declared
    train[29] = ("another film", None)  # null label
    train[36] = ("  ", "negative")  # blank again, in a later chunk
    dev = [("film number 33 was fine", "positive"), ("a fresh text", "negative"),
           ("FILM NUMBER 8 WAS DULL", "negative"), ("film number 33 was fine", "positive")]  # leaks, late and early
    test = [(f"unseen sentence {i}", LABELS[i % 2]) for i in range(9)] + [("film number 2 was dull", "negative")]
    return {"train": frame(train, "data/m/train.csv"), "validation": frame(dev, "data/m/dev.csv"),
            "test": frame(test, "data/m/test.csv")}


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 16])
def test_a_split_validated_in_chunks_gives_the_report_of_one_frame(chunk_rows):
    labels = [*LABELS, "mixed"]  # declared, never in train: the distinct-values check fails
    cfg = ValidateConfig(examples_per_failure=3, max_chars=2000, min_class_fraction=0.3)
    whole = validate_splits(to_dd(messy_frames()), labels, cfg, CHECKS)
    chunked = validate_splits(to_dd(messy_frames()), labels, cfg, CHECKS, chunk_rows=chunk_rows)
    assert {c.check for c in whole.failures()} >= {CHECK_TEXT_NOT_BLANK, CHECK_TEXT_NOT_NULL, CHECK_TEXT_LENGTH,
                                                   CHECK_LABEL_IN_SET, CHECK_LABEL_NOT_NULL, CHECK_LABELS_IN_TRAIN,
                                                   CHECK_LEAKAGE, CHECK_CLASS_SHARE}
    assert chunked.to_dict() == whole.to_dict()
    leak = next(c for c in chunked.failures() if c.check == CHECK_LEAKAGE and c.split == "validation")
    assert [ex["note"] for ex in leak.examples] == ["same text as train data/m/train.csv:35",
                                                    "same text as train data/m/train.csv:10",
                                                    "same text as train data/m/train.csv:35"]


def test_a_share_check_over_chunks_judges_the_whole_split():
    from tlflow.data.validation.checks import ProblemCheck, TaskChecks

    def short(df, labels):
        return ["short text" if isinstance(t, str) and len(t) < 6 else None for t in df["text"]]

    checks = TaskChecks(labelled=True, problems=(
        ProblemCheck("mostly long texts", "short_error", "text", ("text",), short, mostly=0.8),))
    rows = [(f"a long enough text {i}", LABELS[i % 2]) for i in range(20)]
    for i in (0, 1, 2):  # 3 of 20 (15 %: allowed), all in the first chunk of 5 (60 %)
        rows[i] = ("tiny", LABELS[i % 2])
    splits = to_dd({"train": frame(rows, "data/s/train.csv")})
    cfg = ValidateConfig(min_class_fraction=0.0)
    whole = validate_splits(splits, LABELS, cfg, checks)
    chunked = validate_splits(splits, LABELS, cfg, checks, chunk_rows=5)
    check = next(c for c in chunked.checks if c.check == "mostly long texts")
    assert check.success and check.observed == "3 of 20 rows (15.0%)"
    assert chunked.to_dict() == whole.to_dict()
    rows[3] = rows[4] = ("tiny", "negative")  # 5 of 20: 25 %, over the 20 % allowed
    splits = to_dd({"train": frame(rows, "data/s/train.csv")})
    assert not next(c for c in validate_splits(splits, LABELS, cfg, checks, chunk_rows=5).checks
                    if c.check == "mostly long texts").success
