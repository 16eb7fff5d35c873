"""Sentence-pair classification: one label per pair of texts (paraphrase, entailment)."""

from __future__ import annotations

import datasets

from tlflow.data.pii.fields import TextFields
from tlflow.data.spec import LABEL_FIELD, SOURCE_FEATURES, STRING, TEXT_FIELD, RawTable
from tlflow.data.validation.checks import TaskChecks
from tlflow.task_types.text_classification import TextClassification

CHECK_PAIR_NOT_BLANK = "second text not blank"


class SentencePair(TextClassification):
    name = "sentence-pair"
    headline_metrics = ("accuracy", "f1")
    request_columns = {"text": "first sentence (segment A)", "text_pair": "second sentence (segment B)"}
    features = datasets.Features({"text": STRING, "text_pair": STRING, "label": STRING, **SOURCE_FEATURES})
    table_fields = (TEXT_FIELD, LABEL_FIELD, "text_pair")
    overlap_columns = ("text", "text_pair")
    text_fields = TextFields(texts=("text", "text_pair"))
    primary_metrics = ("f1", "accuracy", "macro_f1")
    text_probabilities = False  # a pair, not a single text

    def from_table(self, table: RawTable) -> dict[str, list]:
        return {**super().from_table(table), "text_pair": table.field("text_pair")}

    def data_checks(self) -> TaskChecks:
        return TaskChecks(labelled=True, overlap_columns=self.overlap_columns,
                          not_blank=(("text_pair", CHECK_PAIR_NOT_BLANK),))

    def encode(self, tokenizer, frame, max_length) -> dict:
        return dict(tokenizer(list(frame["text"]), list(frame["text_pair"]), truncation=True, max_length=max_length,
                              return_token_type_ids=True, return_attention_mask=False))

    def corpus_texts(self, split) -> list[str]:
        return [t for pair in zip(split["text"], split["text_pair"]) for t in pair if t]

    def headline(self, label_names: list[str]) -> tuple[str, ...]:
        return self.headline_metrics if len(label_names) == 2 else ("accuracy", "macro_f1")

    def shown_texts(self, split) -> list[str]:
        return [f"{a} ||| {b}" for a, b in zip(split["text"], split["text_pair"])]
