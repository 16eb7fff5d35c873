"""Named-entity recognition: one IOB2 tag per word, learnt on the first sub-word of each word."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import datasets
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoModelForTokenClassification, BertForTokenClassification, PreTrainedTokenizerBase

from tlflow.data.pii.fields import TextFields
from tlflow.data.spec import SOURCE_FEATURES, STRING, RawTable
from tlflow.data.validation.checks import ProblemCheck, TaskChecks
from tlflow.modeling.inference import forward_outputs
from tlflow.task_types.base import Evaluation, TaskSettings, TaskType
from tlflow.task_types.token_classification.iob import (
    align_labels,
    entity_metrics,
    entity_spans,
    iob2_error,
    word_predictions,
)

CHECK_TAGS_ALIGN = "tokens and tags align"
CHECK_TAGS_IOB2 = "tags form valid IOB2"
CHECK_TAGS_IN_SET = "tags in declared set"


def _entities(words: list[str], tags: list[str]) -> list[dict[str, Any]]:
    """Entities of a tag sequence; ill-formed predicted runs (I- after O) are read as IOB2 repairs them."""
    if iob2_error(tags) is not None:
        tags = repair_iob2(tags)
    return [{"type": kind, "text": " ".join(words[s : e + 1]), "start_word": s, "end_word": e}
            for kind, s, e in entity_spans(tags)]


def repair_iob2(tags: list[str]) -> list[str]:
    """Turn an I-X that does not continue an X entity into B-X (how predicted tags are read)."""
    out: list[str] = []
    for tag in tags:
        if tag.startswith("I-") and (not out or out[-1][2:] != tag[2:] or out[-1] == "O"):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def entity_types(label_names: list[str]) -> list[str]:
    """Entity types of a tag set (B-PER, I-PER, ... -> PER), sorted."""
    return sorted({name[2:] for name in label_names if name[:2] in ("B-", "I-")})


def sentence_stats(gold: list[str], pred: list[str], types: list[str]) -> list[float]:
    """Additive statistics of one sentence: [correct entities, predicted, gold, correct tokens,
    tokens] then [correct, predicted, gold] per entity type. Entities match on type and span."""
    gold_spans, pred_spans = set(entity_spans(gold)), set(entity_spans(repair_iob2(pred)))
    hits = gold_spans & pred_spans
    row = [len(hits), len(pred_spans), len(gold_spans), sum(g == p for g, p in zip(gold, pred)), len(gold)]
    for kind in types:
        row += [sum(s[0] == kind for s in spans) for spans in (hits, pred_spans, gold_spans)]
    return [float(x) for x in row]


def _alignment_errors(df: pd.DataFrame, label_names: list[str]) -> list[str | None]:
    return [None if len(t) == len(g) else f"{len(t)} tokens but {len(g)} tags"
            for t, g in zip(df["tokens"].tolist(), df["tags"].tolist())]


def _iob2_errors(df: pd.DataFrame, label_names: list[str]) -> list[str | None]:
    return [iob2_error(list(g)) for g in df["tags"].tolist()]


def _unknown_tags(df: pd.DataFrame, label_names: list[str]) -> list[str | None]:
    declared = set(label_names)
    return [("undeclared tags: " + ", ".join(sorted(set(g) - declared))) if set(g) - declared else None
            for g in df["tags"].tolist()]


def _entity_counts(df: pd.DataFrame, label_names: list[str]) -> dict[str, int]:
    """Entities per type (the B- tags), the class balance of a tagging task."""
    if "tags" not in df.columns:
        return {}
    return dict(sorted(Counter(t[2:] for tags in df["tags"] for t in tags if t.startswith("B-")).items()))


class TokenOptions(BaseModel):
    """Options of token classification (config `task.<option>`)."""

    model_config = ConfigDict(extra="forbid")

    label_all_subwords: bool = Field(
        False, description="Train on every sub-word (default: the first of each word only)."
    )


class TokenClassification(TaskType):
    name = "token-classification"
    headline_metrics = ("precision", "recall", "f1")
    request_columns = {"text": "a sentence; words are separated by whitespace"}
    response_fields = {
        "tags": "one IOB2 tag per word",
        "entities": "list of {type, text, start_word, end_word} (word indices, inclusive)",
    }
    features = datasets.Features(
        {"tokens": datasets.List(STRING), "tags": datasets.List(STRING), "text": STRING, **SOURCE_FEATURES}
    )
    table_fields = ("tokens", "tags")
    native_format = "conll"
    text_fields = TextFields(texts=(), words=("tokens",), joined=(("text", "tokens"),))  # tags stay aligned
    primary_metrics = ("f1", "precision", "recall", "token_accuracy")
    model_head = (AutoModelForTokenClassification, BertForTokenClassification)
    target_column = "tags"
    Options = TokenOptions

    def from_table(self, table: RawTable) -> dict[str, list]:
        tokens = table.list_field("tokens")
        return {"tokens": tokens, "tags": table.list_field("tags"), "text": [" ".join(t) for t in tokens]}

    def infer_label_names(self, train: Iterable[pd.DataFrame]) -> list[str]:
        """The tags of the training split, 'O' first, then sorted."""
        tags = {t for chunk in train for tags in chunk["tags"] for t in tags if t}
        return ["O", *sorted(tags - {"O"})]

    def data_checks(self) -> TaskChecks:
        needs = ("tokens", "tags")
        return TaskChecks(
            overlap_columns=self.overlap_columns,
            problems=(
                ProblemCheck(CHECK_TAGS_ALIGN, "alignment_error", "tags", needs, _alignment_errors),
                ProblemCheck(CHECK_TAGS_IOB2, "iob2_error", "tags", needs, _iob2_errors),
                ProblemCheck(CHECK_TAGS_IN_SET, "unknown_tags", "tags", needs, _unknown_tags, needs_labels=True),
            ),
            class_counts=_entity_counts,
        )

    def encode(self, tokenizer: PreTrainedTokenizerBase, sentences: list[list[str]], max_length: int):
        return tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length,
                         return_token_type_ids=False, return_attention_mask=False)

    def train_features(self, split, label_names, tokenizer, settings) -> dict[str, list]:
        index = {name: i for i, name in enumerate(label_names)}
        sentences = [list(t) for t in split["tokens"]]
        enc = self.encode(tokenizer, sentences, settings.max_length)
        labels = [
            align_labels(enc.word_ids(i), [index[t] for t in tags], settings.label_all_subwords)
            for i, tags in enumerate(split["tags"])
        ]
        return {"input_ids": enc["input_ids"], "labels": labels}

    def tag_sentences(self, model, tokenizer, sentences: list[list[str]], settings: TaskSettings) -> list[list[str]]:
        """Predicted tag names per word; words cut off by `max_length` are tagged O."""
        enc = self.encode(tokenizer, sentences, settings.max_length)
        logits = forward_outputs(model, {"input_ids": enc["input_ids"]}, tokenizer.pad_token_id,
                                 settings.batch_size, token_level=True)["logits"]
        id2label = model.config.id2label
        outside = next((i for i, name in id2label.items() if name == "O"), 0)
        return [
            [id2label[p] for p in word_predictions(enc.word_ids(i), np.argmax(logits[i], -1), len(words), outside)]
            for i, words in enumerate(sentences)
        ]

    def predict(self, model, tokenizer, requests, settings) -> list[dict[str, Any]]:
        sentences = [text.split() for text in self.check_requests(requests)["text"]]
        tags = self.tag_sentences(model, tokenizer, sentences, settings)
        return [{"tags": t, "entities": _entities(words, t)} for words, t in zip(sentences, tags)]

    def evaluate(self, model, tokenizer, split, label_names, settings, n_mistakes=0) -> Evaluation:
        sentences = [list(t) for t in split["tokens"]]
        gold = [list(t) for t in split["tags"]]
        pred = [repair_iob2(t) for t in self.tag_sentences(model, tokenizer, sentences, settings)]
        mistakes = []
        for words, g, p in zip(sentences, gold, pred):
            if len(mistakes) >= n_mistakes:
                break
            if g != p:
                mistakes.append({
                    "text": " ".join(words),
                    "true": "; ".join(f"{e['type']}: {e['text']}" for e in _entities(words, g)) or "-",
                    "predicted": "; ".join(f"{e['type']}: {e['text']}" for e in _entities(words, p)) or "-",
                })
        types = entity_types(label_names)
        stats = np.array([sentence_stats(g, p, types) for g, p in zip(gold, pred)])
        metrics = entity_metrics(gold, pred)
        return Evaluation(metrics, self.headline_metrics, stats, class_f1=self.class_scores(stats, label_names),
                          mistakes=mistakes, label_names=label_names)

    def metrics_from_sums(self, sums, label_names) -> dict[str, float]:
        """From `sentence_stats` sums: micro P/R/F1 over entities (exact type and span),
        `f1_<TYPE>` and token accuracy; equal to seqeval's strict IOB2 scores on valid tags."""
        def prf(tp: float, pred: float, gold: float) -> tuple[float, float, float]:
            p = tp / pred if pred else 0.0
            r = tp / gold if gold else 0.0
            return p, r, (2 * p * r / (p + r) if p + r else 0.0)

        p, r, f = prf(*sums[:3])
        metrics = {"precision": p, "recall": r, "f1": f, "token_accuracy": float(sums[3] / sums[4]) if sums[4] else 0.0}
        for i, kind in enumerate(entity_types(label_names)):
            metrics[f"f1_{kind}"] = prf(*sums[5 + 3 * i : 8 + 3 * i])[2]
        return metrics

    def trivial_baseline(self, split, train, label_names) -> tuple[str, np.ndarray]:
        """'O' for every word: no entity found."""
        types = entity_types(label_names)
        return "all-O tags", np.array([sentence_stats(list(g), ["O"] * len(g), types) for g in split["tags"]])

    def derived_slices(self, split) -> dict[str, list[str | list[str]]]:
        """Besides length: `entity` (the sentences holding an entity of each type, by gold tags)."""
        types = [sorted({kind for kind, _, _ in entity_spans(list(tags))}) for tags in split["tags"]]
        return {**super().derived_slices(split), "entity": types}

    def class_scores(self, stats: np.ndarray, label_names: list[str]) -> dict[str, float]:
        metrics = self.metrics_from_sums(stats.sum(axis=0), label_names)
        return {kind: metrics[f"f1_{kind}"] for kind in entity_types(label_names)}
