"""Named-entity recognition: one IOB2 tag per word, learnt on the first sub-word of each word."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from tlflow.inference import forward_outputs
from tlflow.task_types.base import Evaluation, TaskSettings, TaskType
from tlflow.task_types.iob import align_labels, entity_metrics, entity_spans, iob2_error, word_predictions


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


class TokenClassification(TaskType):
    name = "token-classification"
    headline_metrics = ("precision", "recall", "f1")
    request_columns = {"text": "a sentence; words are separated by whitespace"}
    response_fields = {
        "tags": "one IOB2 tag per word",
        "entities": "list of {type, text, start_word, end_word} (word indices, inclusive)",
    }

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
        return Evaluation(entity_metrics(gold, pred), self.headline_metrics, mistakes, label_names=label_names)
