"""The pretraining stage: examples from documents, dynamic masking, training and held-out scoring.

`scratch` trains a WordPiece vocabulary and a new BERT; `continue` starts from the base checkpoint
(MLM head fresh, tied to the input embeddings). Both train with MLM (+ NSP when enabled) through the
shared training loop, so checkpoints and resume work as in fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from tlflow.config import PretrainConfig
from tlflow.pretraining.corpus import Document
from tlflow.pretraining.examples import SpecialIds, create_nsp_examples, mask_tokens, pack_sequences, word_start_flags
from tlflow.pretraining.model import BertForMaskedPretraining
from tlflow.training.loop import MetricsCallback, TrainResult, train_loop
from tlflow.training.settings import LoopSettings

#: Masking seed of the held-out set: the same masks every evaluation, so numbers are comparable.
HELDOUT_MASK_SEED = 1234


def tokenize_documents(docs: Sequence[Document], tokenizer: PreTrainedTokenizerBase) -> list[list[list[int]]]:
    """Token ids per sentence per document, without special tokens (one batched tokenizer call)."""
    sentences = [s for doc in docs for s in doc.sentences]
    ids = tokenizer(sentences, add_special_tokens=False, return_attention_mask=False)["input_ids"] if sentences else []
    out, i = [], 0
    for doc in docs:
        out.append([x for x in ids[i : i + len(doc.sentences)] if x])
        i += len(doc.sentences)
    return [d for d in out if d]


def build_examples(
    docs: Sequence[Document], tokenizer: PreTrainedTokenizerBase, cfg: PretrainConfig, seed: int
) -> Dataset:
    """Pretraining examples: NSP sentence pairs (cfg.nsp) or packed full-length sequences."""
    ids = tokenize_documents(docs, tokenizer)
    if cfg.nsp:
        rows = create_nsp_examples(
            ids, cfg.max_seq_length, cfg.short_seq_prob, np.random.default_rng(seed), SpecialIds.from_tokenizer(tokenizer)
        )
        keep = ("input_ids", "token_type_ids", "next_sentence_label")
        rows = [{k: r[k] for k in keep} for r in rows]
    else:
        rows = pack_sequences(ids, cfg.max_seq_length, SpecialIds.from_tokenizer(tokenizer))
    return Dataset.from_list(rows)


@dataclass
class MaskingCollator:
    """Turns example indices into a masked, padded batch. Masks are drawn from (seed, step), so the
    same step always gets the same masks (a resumed run continues identically) and each epoch
    masks differently (dynamic masking, as in RoBERTa)."""

    input_ids: Sequence[Sequence[int]]
    token_type_ids: Sequence[Sequence[int]]
    nsp_labels: Sequence[int] | None
    special: SpecialIds
    probability: float
    seed: int
    word_starts: Callable[[Sequence[int]], list[bool]] | None = None

    def __call__(self, batch: list[int], step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        width = max(len(self.input_ids[i]) for i in batch)
        ids = torch.full((len(batch), width), self.special.pad, dtype=torch.long)
        types = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols, labels = [], [], []
        for row, i in enumerate(batch):
            seq = self.input_ids[i]
            starts = self.word_starts(seq) if self.word_starts else None
            masked, positions, targets = mask_tokens(list(seq), self.special, self.probability, rng, starts)
            n = len(seq)
            ids[row, :n] = torch.as_tensor(masked)
            types[row, :n] = torch.as_tensor(self.token_type_ids[i])
            mask[row, :n] = 1
            rows += [row] * len(positions)
            cols += positions
            labels += targets
        out = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": types,
            "mlm_positions": torch.as_tensor([rows, cols], dtype=torch.long).T.reshape(-1, 2),
            "mlm_labels": torch.as_tensor(labels, dtype=torch.long),
        }
        if self.nsp_labels is not None:
            out["next_sentence_label"] = torch.as_tensor([self.nsp_labels[i] for i in batch], dtype=torch.long)
        return out


def make_collator(examples: Dataset, tokenizer: PreTrainedTokenizerBase, cfg: PretrainConfig, seed: int) -> MaskingCollator:
    """Collator over a prepared example set (with whole-word masking when configured)."""
    columns = examples.column_names
    word_starts = None
    if cfg.whole_word_masking:
        def word_starts(seq: Sequence[int]) -> list[bool]:
            return word_start_flags(tokenizer.convert_ids_to_tokens(list(seq)))
    return MaskingCollator(
        input_ids=examples["input_ids"],
        token_type_ids=examples["token_type_ids"],
        nsp_labels=examples["next_sentence_label"] if "next_sentence_label" in columns and cfg.nsp else None,
        special=SpecialIds.from_tokenizer(tokenizer),
        probability=cfg.mlm_probability,
        seed=seed,
        word_starts=word_starts,
    )


def output_metrics(output) -> dict[str, float]:
    """Per-step MLM/NSP numbers for the training log (the loop logs them as `train/<name>`)."""
    metrics = {
        "mlm_loss": float(output.mlm_loss.detach()),
        "mlm_accuracy": int(output.mlm_correct) / max(1, int(output.mlm_total)),
    }
    if output.nsp_loss is not None:
        metrics["nsp_loss"] = float(output.nsp_loss.detach())
        metrics["nsp_accuracy"] = int(output.nsp_correct) / max(1, int(output.nsp_total))
    return metrics


def score_heldout(model: BertForMaskedPretraining, collator: MaskingCollator, n_examples: int, batch_size: int) -> dict[str, float]:
    """Held-out MLM loss, accuracy and perplexity (and NSP accuracy), with fixed masks."""
    model.eval()
    loss_sum = correct = total = nsp_correct = nsp_total = 0.0
    with torch.inference_mode():
        for start in range(0, n_examples, batch_size):
            batch = list(range(start, min(n_examples, start + batch_size)))
            out = model(**collator(batch, step=start))
            n = int(out.mlm_total)
            loss_sum += float(out.mlm_loss) * n
            correct += int(out.mlm_correct)
            total += n
            if out.nsp_loss is not None:
                nsp_correct += int(out.nsp_correct)
                nsp_total += int(out.nsp_total)
    model.train()
    mlm_loss = loss_sum / max(1.0, total)
    metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": correct / max(1.0, total), "perplexity": math.exp(min(mlm_loss, 50.0))}
    if nsp_total:
        metrics["nsp_accuracy"] = nsp_correct / nsp_total
    return metrics


def pretrain(
    model: BertForMaskedPretraining,
    tokenizer: PreTrainedTokenizerBase,
    train_examples: Dataset,
    heldout_examples: Dataset,
    cfg: PretrainConfig,
    checkpoint_dir: Path,
    log_metrics: MetricsCallback | None = None,
    progress: bool = True,
    eval_every_steps: int = 0,
) -> tuple[TrainResult, dict[str, float]]:
    """Pretrain `model` for `cfg.max_steps` steps; returns the loop result and held-out metrics."""
    collator = make_collator(train_examples, tokenizer, cfg, cfg.seed)
    heldout = make_collator(heldout_examples, tokenizer, cfg, HELDOUT_MASK_SEED)
    settings = LoopSettings.for_pretrain(cfg)
    if eval_every_steps:
        settings = replace(settings, eval_every_steps=eval_every_steps)
    result = train_loop(
        model,
        [len(x) for x in train_examples["input_ids"]],
        collator,
        settings,
        checkpoint_dir,
        evaluate=lambda m: score_heldout(m, heldout, len(heldout_examples), cfg.batch_size),
        log_metrics=log_metrics,
        output_metrics=output_metrics,
        progress=progress,
        desc="pretrain",
    )
    return result, result.val_metrics
