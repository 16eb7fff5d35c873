"""Metrics of generated text as per-example additive statistics.

Every column of `example_stats` sums over any subset of examples to what `metrics_from_sums`
turns into that subset's metrics, which is what the promotion gate's paired bootstrap needs:
ROUGE-1/2/L F-measures (rouge-score, stemmed) and exact match are means over examples; BLEU is
corpus-level, but sacrebleu's corpus BLEU is a function of summed n-gram statistics (matches and
totals per order, hypothesis and reference lengths), so those are columns too and the corpus BLEU
of any subset is exact; perplexity is exp of the summed target-token NLL over the summed target
tokens.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
BLEU_ORDER = 4
#: Columns of the statistics, in order (BLEU: hypothesis length, reference length, then the
#: matches and totals of each n-gram order, sacrebleu's layout).
COLUMNS = (
    "count", *ROUGE_TYPES, "exact_match", "target_nll", "target_tokens", "generated_tokens",
    "bleu_sys_len", "bleu_ref_len",
    *(f"bleu_correct_{n}" for n in range(1, BLEU_ORDER + 1)),
    *(f"bleu_total_{n}" for n in range(1, BLEU_ORDER + 1)),
)
COL = {name: i for i, name in enumerate(COLUMNS)}
_BLEU_FIRST = COL["bleu_sys_len"]


def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def _bleu():
    from sacrebleu.metrics import BLEU

    return BLEU()


def normalize_answer(text: str) -> str:
    """Lower case, whitespace collapsed: what exact match compares."""
    return re.sub(r"\s+", " ", text.strip().lower())


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per-example ROUGE-1/2/L F-measures, shape (n, 3)."""
    scorer = _scorer()
    return np.array(
        [[scorer.score(ref, pred)[k].fmeasure for k in ROUGE_TYPES] for pred, ref in zip(predictions, references)],
        dtype=np.float64,
    ).reshape(len(predictions), len(ROUGE_TYPES))


def bleu_statistics(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """sacrebleu's sufficient statistics of each example, shape (n, 2 + 2 * order): hypothesis and
    reference length, then n-gram matches and totals per order (each example scored as a corpus of
    one through the public API)."""
    bleu = _bleu()
    rows = []
    for pred, ref in zip(predictions, references):
        score = bleu.corpus_score([pred], [[ref]])
        rows.append([score.sys_len, score.ref_len, *score.counts, *score.totals])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 + 2 * BLEU_ORDER)


def bleu_from_stats(summed: Sequence[float]) -> float:
    """sacrebleu's corpus BLEU (0..100, its default smoothing) from summed `bleu_statistics`."""
    bleu = _bleu()
    ints = [int(round(x)) for x in summed]
    sys_len, ref_len = ints[0], ints[1]
    correct, total = ints[2 : 2 + BLEU_ORDER], ints[2 + BLEU_ORDER :]
    return float(bleu.compute_bleu(correct, total, sys_len, ref_len, smooth_method=bleu.smooth_method,
                                   smooth_value=bleu.smooth_value, effective_order=bleu.effective_order,
                                   max_ngram_order=bleu.max_ngram_order).score)


def example_stats(
    predictions: Sequence[str],
    references: Sequence[str],
    target_nll: Sequence[float],
    target_tokens: Sequence[int],
    generated_tokens: Sequence[int],
) -> np.ndarray:
    """Per-example additive statistics (columns: `COLUMNS`)."""
    n = len(predictions)
    stats = np.zeros((n, len(COLUMNS)), dtype=np.float64)
    stats[:, COL["count"]] = 1.0
    stats[:, COL["rouge1"] : COL["rougeL"] + 1] = rouge_scores(predictions, references)
    stats[:, COL["exact_match"]] = [normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)]
    stats[:, COL["target_nll"]] = target_nll
    stats[:, COL["target_tokens"]] = target_tokens
    stats[:, COL["generated_tokens"]] = generated_tokens
    stats[:, _BLEU_FIRST:] = bleu_statistics(predictions, references)
    return stats


def metrics_from_sums(sums: np.ndarray) -> dict[str, float]:
    """rouge1/2/L, exact_match and gen_length (means), bleu (corpus BLEU, 0..100) and perplexity
    (exp of the mean target-token NLL) from summed `example_stats`."""
    n = float(sums[COL["count"]]) or 1.0
    tokens = float(sums[COL["target_tokens"]])
    metrics = {k: float(sums[COL[k]] / n) for k in (*ROUGE_TYPES, "exact_match")}
    metrics["bleu"] = bleu_from_stats(sums[_BLEU_FIRST:])
    metrics["gen_length"] = float(sums[COL["generated_tokens"]] / n)
    metrics["perplexity"] = float(math.exp(min(sums[COL["target_nll"]] / tokens, 700.0))) if tokens else float("nan")
    return metrics
