"""Extractive question answering: the answer is a span of the context, found over sliding windows."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import PreTrainedModel

from tlflow.modeling.inference import forward_outputs
from tlflow.task_types.base import Evaluation, TaskSettings, TaskType
from tlflow.task_types.qa_windows import Answer, postprocess_predictions, prepare_eval_features, prepare_train_features
from tlflow.task_types.squad_metrics import exact_match, f1, squad_scores


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
        stats = np.array([[1.0, max(exact_match(p, t) for t in g), max(f1(p, t) for t in g)]
                          for p, g in zip(predicted, gold)])
        return Evaluation(squad_scores(predicted, gold), self.headline_metrics, stats, mistakes=mistakes)

    def metrics_from_sums(self, sums, label_names) -> dict[str, float]:
        """Columns of the statistics: [1, exact match, F1] per question."""
        n = sums[0] or 1.0
        return {"exact_match": float(sums[1] / n), "f1": float(sums[2] / n)}
