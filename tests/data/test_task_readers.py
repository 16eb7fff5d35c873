"""Readers of the task types beyond single-text classification: pairs, entities and answers from
tables through config alone, conll and SQuAD JSON files, and the split by group."""

import json
from pathlib import Path

import pandas as pd
import pytest

from tlflow.config import DataConfig, parse_config
from tlflow.data.readers import DataError, load_labelled_data, overlap_keys, read_table
from tlflow.data.splits import grouped_split
from tlflow.task_types.registry import get_task_type

pytestmark = [pytest.mark.unit]

TESTS = Path(__file__).resolve().parents[1]
ASSETS, DATA = TESTS / "assets", TESTS.parent / "data"


def spec(name: str):
    return get_task_type(name).dataset_spec()


def test_pairs_from_tsv_keep_both_texts(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("\ufeffq\ta\tb\n1\tThe cat sat.\tA cat sat.\n0\tIt rained.\tStocks fell.\n", encoding="utf-8")
    cfg = DataConfig(format="tsv", files={"train": str(path), "test": str(path)}, text_columns=["a"],
                     columns={"text_pair": "b"}, label_column="q")
    df = read_table(path, cfg, spec("sentence-pair"))
    assert list(df.columns) == ["text", "text_pair", "label", "source_file", "source_row"]
    assert df["text_pair"].tolist() == ["A cat sat.", "Stocks fell."]
    assert df["label"].tolist() == ["1", "0"] and df["source_row"].tolist() == [2, 3]


def test_pair_column_missing_names_the_file_and_columns(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("q\ta\n1\tx\n", encoding="utf-8")
    cfg = DataConfig(format="tsv", files={"train": str(path), "test": str(path)}, text_columns=["a"],
                     label_column="q")
    with pytest.raises(DataError, match=r"pairs\.tsv: no column 'text_pair' \(columns: 'q', 'a'\)"):
        read_table(path, cfg, spec("sentence-pair"))


def test_entities_from_jsonl_lists_and_from_csv_strings(tmp_path):
    jsonl = tmp_path / "ner.jsonl"
    jsonl.write_text(json.dumps({"words": ["EU", "rejects", "it"], "labels": ["B-ORG", "O", "O"]}) + "\n")
    cfg = DataConfig(format="jsonl", file=str(jsonl), columns={"tokens": "words", "tags": "labels"})
    df = read_table(jsonl, cfg, spec("token-classification"))
    assert df["tokens"][0] == ["EU", "rejects", "it"] and df["tags"][0] == ["B-ORG", "O", "O"]
    assert df["text"][0] == "EU rejects it"
    csv = tmp_path / "ner.csv"
    csv.write_text("tokens,tags\nPeter runs,B-PER O\n")
    df = read_table(csv, DataConfig(file=str(csv)), spec("token-classification"))
    assert df["tokens"][0] == ["Peter", "runs"] and df["tags"][0] == ["B-PER", "O"]


def test_answers_from_csv_without_ids_get_row_ids(tmp_path):
    path = tmp_path / "qa.csv"
    pd.DataFrame({"q": ["Who?"], "c": ["Ann wrote it."], "a": ["Ann"], "s": [0]}).to_csv(path, index=False)
    cfg = DataConfig(file=str(path), columns={"question": "q", "context": "c", "answer_text": "a", "answer_start": "s"})
    df = read_table(path, cfg, spec("question-answering"))
    assert df.loc[0, "id"] == "row-2" and df.loc[0, "title"] == "Ann wrote it."
    assert df.loc[0, "answer_texts"] == ["Ann"] and df.loc[0, "answer_starts"] == [0]


def test_structured_format_of_another_task_type_is_read_as_a_table_of_its_fields(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\n")
    with pytest.raises(DataError, match=r"x.txt: conll data has no field 'text' \(fields: tokens, tags\)"):
        read_table(path, DataConfig(format="conll", file=str(path)), spec("text-classification"))
    cfg = DataConfig(format="conll", file=str(path), text_columns=["tokens"], label_column="tags")
    df = read_table(path, cfg, spec("text-classification"))
    assert df["text"].tolist() == ["EU rejects", "Peter"] and df["label"].tolist() == ["B-ORG O", "B-PER"]
    assert df["source_row"].tolist() == [1, 4]


def test_squad_json_feeds_a_generation_template_and_groups_by_a_raw_field(tmp_path):
    from tlflow.task_types.registry import check_config

    cfg = check_config(parse_config({
        "name": "qg",
        "data": {"format": "squad", "file": str(ASSETS / "squad_sample.json"), "group_column": "title",
                 "columns": {"answer": "answer_text", "target": "question"}},
        "task": {"type": "text-generation", "prompt_template": "{context} | {answer}"},
    }))
    task = get_task_type("text-generation").configured(cfg)
    df = read_table(cfg.data.file, cfg.data, task.dataset_spec())
    first = json.loads((ASSETS / "squad_sample.json").read_text())["data"][0]
    qa = first["paragraphs"][0]["qas"][0]
    assert df.loc[0, "prompt"] == f"{first['paragraphs'][0]['context']} | {qa['answers'][0]['text']}"
    assert df.loc[0, "target"] == qa["question"] and df.loc[0, "title"] == first["title"]
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    titles = {s: set(df.loc[df["source_row"].isin(loaded.splits[s]["source_row"]), "title"]) for s in loaded.splits}
    assert not titles["train"] & titles["test"] and "title" not in loaded.splits["train"].column_names


def test_grouped_split_never_shares_a_group_and_is_seeded():
    df = pd.DataFrame({"title": [f"t{i // 5}" for i in range(100)], "x": range(100)})
    parts = grouped_split(df, {"train": 0.8, "validation": 0.1, "test": 0.1}, "title", seed=3)
    groups = {name: set(part["title"]) for name, part in parts.items()}
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
    assert sum(len(p) for p in parts.values()) == 100
    assert len(parts["test"]) == 10 and len(parts["validation"]) == 10
    again = grouped_split(df, {"train": 0.8, "validation": 0.1, "test": 0.1}, "title", seed=3)
    assert all(again[k].equals(parts[k]) for k in parts)


def _squad_split_by_article(file: str, questions: int) -> None:
    loaded = load_labelled_data(DataConfig(format="squad", file=file), spec("question-answering"))
    titles = {split: set(ds["title"]) for split, ds in loaded.splits.items()}
    assert not titles["train"] & titles["test"] and not titles["validation"] & titles["test"]
    contexts = {split: set(ds["context"]) for split, ds in loaded.splits.items()}
    assert not contexts["train"] & contexts["test"]
    assert sum(len(ds) for ds in loaded.splits.values()) == questions
    assert loaded.label_names == []


def _conll_label_names(files: dict[str, str]) -> None:
    loaded = load_labelled_data(DataConfig(format="conll", files=files), spec("token-classification"))
    assert loaded.label_names[0] == "O"
    assert set(loaded.label_names) == {"O", *(f"{p}-{t}" for p in "BI" for t in ("PER", "LOC", "ORG", "MISC"))}


def test_squad_is_split_by_article_with_no_shared_context():
    # 10 articles of SQuAD v1.1 dev, one paragraph and two questions each (tests/assets/README.md).
    _squad_split_by_article(str(ASSETS / "squad_sample.json"), 20)


def test_conll_label_names_default_to_the_train_tags_outside_first():
    # The first 40 sentences of CoNLL-2003 valid.txt (every tag occurs) and 15 of test.txt.
    _conll_label_names({"train": str(ASSETS / "conll_train.txt"), "test": str(ASSETS / "conll_test.txt")})


@pytest.mark.needs_data
@pytest.mark.integration
def test_real_squad_dev_is_split_by_article():
    _squad_split_by_article(str(DATA / "squad" / "dev-v1.1.json"), 10570)


@pytest.mark.needs_data
@pytest.mark.integration
def test_real_conll_label_names():
    _conll_label_names({"train": str(DATA / "conll2003" / "valid.txt"), "test": str(DATA / "conll2003" / "test.txt")})


def test_overlap_keys_per_task_type():
    pairs = pd.DataFrame({"text": ["A  b", None], "text_pair": ["C", "d"]})
    assert overlap_keys(pairs, spec("sentence-pair").overlap_columns) == ["a b ||| c", None]
    qa = pd.DataFrame({"context": [" The Text "]})
    assert overlap_keys(qa, spec("question-answering").overlap_columns) == ["the text"]
