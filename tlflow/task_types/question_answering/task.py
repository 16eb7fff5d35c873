"""Extractive question answering: the answer is a span of the context, found over sliding windows."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoModelForQuestionAnswering, BertForQuestionAnswering, PreTrainedModel

from tlflow.data.formats.squad import answer_mismatch
from tlflow.data.pii.fields import TextFields
from tlflow.data.spec import INT, SOURCE_FEATURES, STRING, RawTable
from tlflow.data.validation.checks import ProblemCheck, TaskChecks
from tlflow.modeling.inference import forward_outputs
from tlflow.task_types.base import Evaluation, TaskSettings, TaskType
from tlflow.task_types.question_answering.qa_windows import (
    Answer,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
)
from tlflow.task_types.question_answering.squad_metrics import exact_match, f1, squad_scores

CHECK_CONTEXT_NOT_BLANK = "context not blank"
CHECK_ANSWER_AT_START = "answer text at answer_start"


def _answer_errors(df: pd.DataFrame, label_names: list[str]) -> list[str | None]:
    return [answer_mismatch(c, list(t), list(s)) if isinstance(c, str) else "no context"
            for c, t, s in zip(df["context"], df["answer_texts"], df["answer_starts"])]


class QAOptions(BaseModel):
    """Options of extractive question answering (config `task.<option>`)."""

    model_config = ConfigDict(extra="forbid")

    doc_stride: int = Field(128, ge=8, description="Tokens shared by consecutive context windows.")
    max_answer_length: int = Field(30, ge=1, description="Longest answer span, in tokens.")
    n_best_size: int = Field(20, ge=1, description="Start/end candidates per window.")


#: Upper ends (inclusive) of the answer-length slices, in words; longer answers are `<last + 1>-up`.
ANSWER_WORD_BUCKETS = ((1, "1"), (2, "2"), (4, "3-4"), (8, "5-8"))


def answer_stats(predicted: list[str], gold: list[list[str]]) -> np.ndarray:
    """Additive statistics per question: [1, exact match, F1], each the best over its gold answers."""
    return np.array([[1.0, max(exact_match(p, t) for t in g), max(f1(p, t) for t in g)]
                     for p, g in zip(predicted, gold)]).reshape(-1, 3)


def answer_bucket(answers: list[str]) -> str:
    """The answer-length slice of a question by its first gold answer ('none' without one)."""
    if not len(answers):
        return "none"
    words = len(answers[0].split())
    return next((name for top, name in ANSWER_WORD_BUCKETS if words <= top), f"{ANSWER_WORD_BUCKETS[-1][0] + 1}-up")


class QuestionAnswering(TaskType):
    name = "question-answering"
    headline_metrics = ("exact_match", "f1")
    request_columns = {"question": "the question", "context": "the text that holds the answer"}
    response_fields = {
        "answer": "the answer span's text ('' when no span qualifies)",
        "score": "start + end logit of the span",
        "start": "character offset of the answer in the context",
        "end": "character offset just after the answer",
    }
    features = datasets.Features(
        {
            "id": STRING, "title": STRING, "question": STRING, "context": STRING,
            "answer_texts": datasets.List(STRING), "answer_starts": datasets.List(INT), **SOURCE_FEATURES,
        }
    )
    table_fields = ("question", "context", "answer_text", "answer_start")
    optional_table_fields = ("id", "title")
    native_format = "squad"
    group_default = "title"  # SQuAD: split by article
    overlap_columns = ("context",)
    text_fields = TextFields(texts=("question", "context", "title"), answers=("context", "answer_texts", "answer_starts"))
    has_label_names = False
    primary_metrics = ("f1", "exact_match")
    model_head = (AutoModelForQuestionAnswering, BertForQuestionAnswering)
    output_names = ("start_logits", "end_logits")
    target_column = "answer_texts"
    Options = QAOptions

    def from_table(self, table: RawTable) -> dict[str, list]:
        """Missing ids become 'row-<line>', missing titles the context (so grouping keeps a context together)."""
        contexts = table.field("context")
        return {
            "id": [i if i is not None else f"row-{r}" for i, r in zip(table.field("id"), table.rows)],
            "title": [t if t is not None else c for t, c in zip(table.field("title"), contexts)],
            "question": table.field("question"),
            "context": contexts,
            "answer_texts": table.list_field("answer_text"),
            "answer_starts": [[int(float(x)) for x in v] for v in table.list_field("answer_start")],
        }

    def data_checks(self) -> TaskChecks:
        return TaskChecks(
            text_column="question",
            overlap_columns=self.overlap_columns,
            not_blank=(("context", CHECK_CONTEXT_NOT_BLANK),),
            problems=(ProblemCheck(CHECK_ANSWER_AT_START, "answer_error", "answer_texts",
                                   ("context", "answer_texts", "answer_starts"), _answer_errors),),
        )

    def corpus_texts(self, split) -> list[str]:
        return list(dict.fromkeys(c for c in split["context"] if c))

    def train_features(self, split, label_names, tokenizer, settings) -> dict[str, list]:
        features = prepare_train_features(
            list(split["question"]), list(split["context"]),
            [s[0] if len(s) else -1 for s in split["answer_starts"]],
            [t[0] if len(t) else "" for t in split["answer_texts"]],
            tokenizer, settings.max_length, settings.doc_stride,
        )
        del features["example_index"]
        return features

    def answers(self, model: PreTrainedModel, tokenizer, questions: list[str], contexts: list[str],
                settings: TaskSettings) -> list[Answer]:
        windows = prepare_eval_features(questions, contexts, tokenizer, settings.max_length, settings.doc_stride)
        out = forward_outputs(model, windows, tokenizer.pad_token_id, settings.batch_size,
                              names=("start_logits", "end_logits"), token_level=True)
        return postprocess_predictions(contexts, windows["example_index"], windows["offset_mapping"],
                                       out["start_logits"], out["end_logits"],
                                       settings.n_best_size, settings.max_answer_length)

    def predict(self, model, tokenizer, requests, settings) -> list[dict[str, Any]]:
        requests = self.check_requests(requests)
        answers = self.answers(model, tokenizer, list(requests["question"]), list(requests["context"]), settings)
        return [{"answer": a.text, "score": a.score if a.text else 0.0, "start": a.start, "end": a.end}
                for a in answers]

    def evaluate(self, model, tokenizer, split, label_names, settings, n_mistakes=0) -> Evaluation:
        answers = self.answers(model, tokenizer, list(split["question"]), list(split["context"]), settings)
        predicted = [a.text for a in answers]
        gold = [list(t) for t in split["answer_texts"]]
        mistakes = []
        for question, p, g in zip(split["question"], predicted, gold):
            if len(mistakes) >= n_mistakes:
                break
            if not max(exact_match(p, t) for t in g):
                mistakes.append({"question": question, "predicted": p, "true": " | ".join(g),
                                 "f1": round(max(f1(p, t) for t in g), 4)})
        stats = answer_stats(predicted, gold)
        return Evaluation(squad_scores(predicted, gold), self.headline_metrics, stats, mistakes=mistakes)

    def trivial_baseline(self, split, train, label_names) -> tuple[str, np.ndarray]:
        """The empty answer to every question."""
        gold = [list(t) for t in split["answer_texts"]]
        return "the empty answer", answer_stats([""] * len(gold), gold)

    def derived_slices(self, split) -> dict[str, list[str | list[str]]]:
        """Besides length (question and context words): `answer_words` (words of the first gold
        answer: 1, 2, 3-4, 5-8, 9-up; none for a question without one)."""
        return {**super().derived_slices(split), "answer_words": [answer_bucket(t) for t in split["answer_texts"]]}

    def metrics_from_sums(self, sums, label_names) -> dict[str, float]:
        """Columns of the statistics: [1, exact match, F1] per question."""
        n = sums[0] or 1.0
        return {"exact_match": float(sums[1] / n), "f1": float(sums[2] / n)}
