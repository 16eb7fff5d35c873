"""Pretraining throughput: tlflow's packed + sparse-MLM-head path against the plain Hugging Face recipe.

Both contenders train the same BERT (PretrainConfig's scratch size: 4 layers, hidden 256, 4 heads,
intermediate 1024, max_seq_length 128) with the same WordPiece vocabulary (8000, trained once on the
WikiText-2 training documents), MLM only, the same seed, batch size, learning rate, warm-up, weight
decay, gradient clipping and 2 intra-op threads, on the same text:

* ours: `build_examples(nsp=False)` packs the corpus into full 128-token sequences, the dynamic
  masking collator of `tlflow.pretraining.stage`, `BertForMaskedPretraining` (MLM decoder only at
  the masked positions), trained by `tlflow.training.loop.train_loop` with the settings `pretrain` uses;
* packed (the headline baseline): what `run_mlm.py` does by default: every non-empty WikiText
  paragraph of the same training documents (detokenized exactly like tlflow's reader, so the text
  is identical) tokenized whole (`[CLS] ... [SEP]`, nothing truncated), then its `group_texts`:
  the token lists of each 1,000-paragraph `map` batch concatenated and cut into 128-token blocks
  (the remainder of each batch dropped), so nothing is padded;
  `DataCollatorForLanguageModeling(mlm_probability=0.15)`, `BertForMaskedLM` (dense MLM head over
  every position) and `Trainer` with its defaults (random sampler, fused AdamW, linear schedule)
  and the same hyper-parameters;
* line_by_line (second row): `run_mlm.py --line_by_line`: one paragraph per example, truncated to
  128 tokens, dynamic padding, otherwise as packed.

Ours runs `steps` steps; each baseline gets a step budget sized so it processes at least the same
number of non-pad tokens and stops once it has. Throughput is non-pad
tokens (attention_mask sum, [CLS]/[SEP] included) per second of the training steps only: from the
first batch being built to the end of the last optimizer step (setup, evaluation and the final
checkpoint write are outside). Each seed (settings `seeds`: model initialisation, masking
and order; corpus split and vocabulary stay those of the first) runs ours, packed, then
line_by_line (the first `line_by_line_seeds` seeds only); per-seed ratios are summarised with a
t interval on their logs (`benchlib.ratio_interval`). Each run waits for an idle machine and is
stopped and timed again when other processes load the CPUs during it (see `measured` in `main`): with 2 threads on 2 cores, one busy
neighbour slows a run several-fold.

Quality at equal tokens: both final models score the same held-out WikiText documents (5 % of the
articles, never trained on, the split tlflow uses) with tlflow's `score_heldout` and the same fixed
masks (HELDOUT_MASK_SEED), in two layouts: packed 128-token sequences (ours' training layout) and
one paragraph per example (the baseline's). The baseline's weights are loaded into a
`BertForMaskedPretraining` for this (same parameters, same keys), so both go through the same code.

Settings: `bench/settings/pretrain.json` (frozen; its sha256 goes into the result; `--steps` and
`--seeds` override them for a smoke run and are recorded as overrides). Each job is appended to
`bench/results/pretrain_throughput.json`.

    .venv/bin/python bench/pretrain_throughput.py [--steps N --seeds 42,43]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import io
import itertools
import json
import math
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from benchlib import load_settings, run_with_environment

if __name__ == "__main__":  # the frozen allocator and thread settings apply from process start, before torch loads
    run_with_environment(load_settings("pretrain")[0].get("environment", {}))

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

import transformers  # noqa: E402
from benchlib import (  # noqa: E402  (bench/ is sys.path[0])
    Contended,
    CpuMeter,
    Watchdog,
    allocator_loaded,
    append_job,
    environment,
    git_file_state,
    median,
    ratio_interval,
    wait_for_quiet,
)
from datasets import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from tlflow.config import CorpusConfig, PretrainConfig  # noqa: E402
from tlflow.pretraining import corpus as corpus_mod  # noqa: E402
from tlflow.pretraining.corpus import load_corpus, split_heldout  # noqa: E402
from tlflow.pretraining.model import BertForMaskedPretraining, build_scratch_model, scratch_config  # noqa: E402
from tlflow.pretraining.stage import (  # noqa: E402
    HELDOUT_MASK_SEED,
    build_examples,
    make_collator,
    output_metrics,
    score_heldout,
)
from tlflow.pretraining.vocab import train_wordpiece  # noqa: E402
from tlflow.training.loop import train_loop  # noqa: E402
from tlflow.training.settings import LoopSettings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pretrain_throughput.json"
THREADS = 2


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def wikitext_paragraphs(folder: str) -> dict[str, list[str]]:
    """Paragraphs per article id, read exactly as `read_wikitext` reads them (same headings rule,
    same detokenization), each written as its sentences joined by one space."""
    out: dict[str, list[str]] = {}
    for file in corpus_mod._text_files(folder, "WikiText"):
        lines = corpus_mod._read_text(file).split("\n")
        articles: list[tuple[str, list[str]]] = []
        preamble: list[str] = []
        for i, line in enumerate(lines):
            if corpus_mod._is_blank(line):
                continue
            heading = corpus_mod._WIKI_TITLE.match(line)
            if heading and (i == 0 or corpus_mod._is_blank(lines[i - 1])) and (
                i + 1 == len(lines) or corpus_mod._is_blank(lines[i + 1])
            ):
                articles.append((f"{len(articles)} {heading.group(1).strip()}", []))
            elif not corpus_mod._WIKI_SUBHEADING.match(line):
                sentences = corpus_mod.split_sentences(corpus_mod.detokenize_wikitext(line))
                if sentences:
                    (articles[-1][1] if articles else preamble).append(" ".join(sentences))
        if preamble:
            articles.insert(0, ("preamble", preamble))
        for suffix, paragraphs in articles:
            out[f"wikitext2/{file.name}#{suffix}"] = paragraphs
    return out


def prepare(cfg: PretrainConfig) -> dict:
    """Corpus split, one vocabulary, and the training/evaluation sets of both contenders."""
    docs = load_corpus(cfg.corpus, seed=cfg.seed)
    train_docs, held_docs = split_heldout(docs, cfg.corpus.heldout_fraction, cfg.seed)
    paragraphs = wikitext_paragraphs(cfg.corpus.wikitext_dir)
    for doc in docs:  # the baseline's lines hold exactly the text of tlflow's documents
        joined = " ".join(paragraphs[doc.doc_id])
        if joined != " ".join(doc.sentences):
            raise RuntimeError(f"paragraphs of {doc.doc_id} differ from read_wikitext's sentences")
    tokenizer = train_wordpiece(
        (s for d in train_docs for s in d.sentences), cfg.vocab_size, cfg.lowercase,
        max_length=cfg.max_position_embeddings,
    )

    ours_train = build_examples(train_docs, tokenizer, cfg, cfg.seed)
    train_lines = [p for d in train_docs for p in paragraphs[d.doc_id]]
    held_lines = [p for d in held_docs for p in paragraphs[d.doc_id]]

    def tokenize(batch):  # run_mlm.py --line_by_line: padding=False, truncation to max_seq_length
        return tokenizer(
            batch["text"], padding=False, truncation=True, max_length=cfg.max_seq_length,
            return_special_tokens_mask=True,
        )

    base_train = Dataset.from_dict({"text": train_lines}).map(tokenize, batched=True, remove_columns=["text"])

    def tokenize_whole(batch):  # run_mlm.py default: no truncation, special tokens mask kept
        return tokenizer(batch["text"], return_special_tokens_mask=True)

    def group_texts(examples):  # run_mlm.py's group_texts: concatenate, cut into max_seq_length blocks
        concatenated = {k: list(itertools.chain(*examples[k])) for k in examples}
        total = (len(concatenated["input_ids"]) // cfg.max_seq_length) * cfg.max_seq_length
        return {k: [t[i:i + cfg.max_seq_length] for i in range(0, total, cfg.max_seq_length)]
                for k, t in concatenated.items()}

    base_packed = (Dataset.from_dict({"text": train_lines})
                   .map(tokenize_whole, batched=True, remove_columns=["text"])
                   .map(group_texts, batched=True))
    held_packed = build_examples(held_docs, tokenizer, cfg, cfg.seed + 1)
    held_enc = tokenizer(held_lines, truncation=True, max_length=cfg.max_seq_length)
    held_lines_ds = Dataset.from_dict({
        "input_ids": held_enc["input_ids"],
        "token_type_ids": [[0] * len(x) for x in held_enc["input_ids"]],
    })
    ours_lengths = [len(x) for x in ours_train["input_ids"]]
    base_lengths = [len(x) for x in base_train["input_ids"]]
    all_line_tokens = tokenizer(train_lines, add_special_tokens=True)["input_ids"]
    return {
        "tokenizer": tokenizer,
        "ours_train": ours_train,
        "base_train": base_train,
        "base_packed": base_packed,
        "heldout": {"packed": held_packed, "lines": held_lines_ds},
        "stats": {
            "documents": len(docs),
            "train_documents": len(train_docs),
            "heldout_documents": len(held_docs),
            "vocab_size": len(tokenizer),
            "ours_examples": len(ours_lengths),
            "ours_mean_tokens_per_example": float(np.mean(ours_lengths)),
            "ours_tokens_per_epoch": int(sum(ours_lengths)),
            "baseline_examples": len(base_lengths),
            "baseline_mean_tokens_per_example": float(np.mean(base_lengths)),
            "baseline_tokens_per_epoch": int(sum(base_lengths)),
            "baseline_lines_truncated": int(sum(len(x) > cfg.max_seq_length for x in all_line_tokens)),
            "baseline_tokens_lost_to_truncation": int(
                sum(max(0, len(x) - cfg.max_seq_length) for x in all_line_tokens)
            ),
            "packed_baseline_examples": len(base_packed),
            "packed_baseline_tokens_per_epoch": len(base_packed) * cfg.max_seq_length,
            "packed_baseline_tokens_dropped": int(sum(len(x) for x in all_line_tokens)
                                                  - len(base_packed) * cfg.max_seq_length),
            "heldout_packed_examples": len(held_packed),
            "heldout_line_examples": len(held_lines_ds),
        },
    }


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


class TokenCounter:
    """Forward pre-hook summing the non-pad tokens (attention_mask) every training forward sees."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.tokens = 0
        self.forwards = 0
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.tokens += int(kwargs["attention_mask"].sum())
        self.forwards += 1

    def remove(self) -> None:
        self.handle.remove()


def loop_settings(cfg: PretrainConfig) -> LoopSettings:
    """The LoopSettings `tlflow.pretraining.stage.pretrain` uses, at the benchmark's thread count."""
    return dataclasses.replace(LoopSettings.for_pretrain(cfg), threads=THREADS)


def run_ours(data: dict, cfg: PretrainConfig, abort_load: float | None = None) -> tuple[BertForMaskedPretraining, dict]:
    """tlflow's path: packed examples, dynamic masking collator, sparse MLM head, train_loop."""
    torch.set_num_threads(THREADS)
    model = build_scratch_model(cfg, data["tokenizer"])
    collator = make_collator(data["ours_train"], data["tokenizer"], cfg, cfg.seed)
    marks: dict = {}

    def make_batch(batch, step):
        if "start" not in marks:
            marks["meter"], marks["start"] = CpuMeter(), time.perf_counter()
            marks["watchdog"] = Watchdog(abort_load)
        else:
            marks["watchdog"].check()
        return collator(batch, step)

    losses: list[tuple[int, float]] = []

    def log(metrics, step):
        if "train/loss" in metrics:
            losses.append((step, metrics["train/loss"]))
        if step == cfg.max_steps and "train/loss" in metrics:
            marks["end"] = time.perf_counter()  # after the last optimizer step, before the checkpoint
            marks["other_load"] = marks["meter"].other_load()
            marks["threads"] = torch.get_num_threads()

    counter = TokenCounter(model)
    with tempfile.TemporaryDirectory(prefix="tlflow-bench-") as tmp:
        result = train_loop(
            model, [len(x) for x in data["ours_train"]["input_ids"]], make_batch, loop_settings(cfg),
            Path(tmp), evaluate=None, log_metrics=log, output_metrics=output_metrics, progress=False,
            desc="pretrain",
        )
    counter.remove()
    assert counter.tokens == result.tokens, (counter.tokens, result.tokens)
    seconds = marks["end"] - marks["start"]
    return model, {
        "steps": result.steps,
        "examples": result.samples,
        "tokens": counter.tokens,
        "seconds": seconds,
        "tokens_per_s": counter.tokens / seconds,
        "steps_per_s": result.steps / seconds,
        "train_loop_seconds": result.seconds,
        "final_checkpoint_seconds": result.checkpoint_seconds,
        "other_load_cpus": marks["other_load"],
        "threads": marks["threads"],
        "final_train_loss_window": result.train_loss,
        "train_loss_curve": losses,
    }


class BudgetCallback(TrainerCallback):
    """Stops the Trainer once the forward passes have seen `target` non-pad tokens; marks the time."""

    def __init__(self, counter: TokenCounter, target: int, marks: dict) -> None:
        self.counter, self.target, self.marks = counter, target, marks

    def on_step_end(self, args, state, control, **kwargs):
        if self.counter.tokens >= self.target or state.global_step >= state.max_steps:
            self.marks["end"] = time.perf_counter()
            self.marks["other_load"] = self.marks["meter"].other_load()
            self.marks["threads"] = torch.get_num_threads()
            self.marks["steps"] = state.global_step
            control.should_training_stop = True
        return control


BASELINES = {  # contender -> (training set in `prepare`'s data, its mean non-pad tokens per example)
    "packed": ("base_packed", None),
    "line_by_line": ("base_train", "baseline_mean_tokens_per_example"),
}


def run_baseline(
    data: dict, cfg: PretrainConfig, target_tokens: int, abort_load: float | None = None, layout: str = "packed",
) -> tuple[BertForMaskedLM, dict]:
    """The plain Hugging Face recipe (run_mlm.py defaults: `packed` = group_texts, or
    `line_by_line`) until `target_tokens`."""
    torch.set_num_threads(THREADS)
    tokenizer = data["tokenizer"]
    config = scratch_config(cfg, vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id)
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(config)
    train_key, mean_key = BASELINES[layout]
    mean_batch_tokens = (data["stats"][mean_key] if mean_key else cfg.max_seq_length) * cfg.batch_size
    # The schedule must end where the run ends: steps for the token budget plus a small margin;
    # the callback stops at the budget (the learning rate is then within ~2 % of zero, as ours).
    max_steps = math.ceil(1.02 * target_tokens / mean_batch_tokens) + 1
    marks: dict = {}
    inner = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=cfg.mlm_probability)

    def collate(features):
        if "start" not in marks:
            marks["meter"], marks["start"] = CpuMeter(), time.perf_counter()
            marks["watchdog"] = Watchdog(abort_load)
        else:
            marks["watchdog"].check()
        return inner(features)

    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            max_steps=max_steps,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of max_steps in transformers 5
            max_grad_norm=1.0,
            seed=cfg.seed,
            logging_strategy="no",
            eval_strategy="no",
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data[train_key], data_collator=collate)
        counter = TokenCounter(model)
        trainer.add_callback(BudgetCallback(counter, target_tokens, marks))
        torch.set_num_threads(THREADS)
        with contextlib.redirect_stdout(io.StringIO()):
            output = trainer.train()
        counter.remove()
    seconds = marks["end"] - marks["start"]
    return model, {
        "steps": marks["steps"],
        "max_steps_of_schedule": max_steps,
        "examples": marks["steps"] * cfg.batch_size,
        "tokens": counter.tokens,
        "forwards": counter.forwards,
        "seconds": seconds,
        "tokens_per_s": counter.tokens / seconds,
        "steps_per_s": marks["steps"] / seconds,
        "trainer_train_runtime": output.metrics.get("train_runtime"),
        "other_load_cpus": marks["other_load"],
        "threads": marks["threads"],
        "mean_train_loss": output.training_loss,
        "optimizer": str(args.optim),
    }


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def as_masked_pretraining(model: torch.nn.Module, cfg: PretrainConfig, tokenizer) -> BertForMaskedPretraining:
    """The baseline's weights in a BertForMaskedPretraining (only the unused pooler/NSP head are new)."""
    config = scratch_config(cfg, vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id)
    target = BertForMaskedPretraining(config)
    missing, unexpected = target.load_state_dict(model.state_dict(), strict=False)
    extra = [k for k in missing if not k.startswith(("bert.pooler.", "cls.seq_relationship."))]
    if extra or unexpected:
        raise RuntimeError(f"state dicts differ: missing {extra}, unexpected {unexpected}")
    return target


def check_conversion(dense: BertForMaskedLM, sparse: BertForMaskedPretraining, collator) -> float:
    """Largest difference between the dense head's logits at masked positions and the sparse model's."""
    dense.eval()
    sparse.eval()
    with torch.inference_mode():
        batch = collator(list(range(8)), step=0)
        pos = batch.pop("mlm_positions")
        batch.pop("mlm_labels")
        logits = dense(**batch).logits[pos[:, 0], pos[:, 1]]
        other = sparse(**batch, mlm_positions=pos).mlm_logits
    return float((logits - other).abs().max())


def evaluate(model: BertForMaskedPretraining, data: dict, cfg: PretrainConfig) -> dict:
    """Held-out MLM loss/accuracy with fixed masks, packed and one-paragraph-per-example layouts."""
    out = {}
    for name, examples in data["heldout"].items():
        collator = make_collator(examples, data["tokenizer"], cfg, HELDOUT_MASK_SEED)
        metrics = score_heldout(model, collator, len(examples), 64)
        out[name] = {"mlm_loss": metrics["mlm_loss"], "mlm_accuracy": metrics["mlm_accuracy"]}
    return out


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main() -> None:
    global THREADS
    settings, settings_sha = load_settings("pretrain")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="optimizer steps of ours (sets the token budget); smoke runs only")
    parser.add_argument("--seeds", help="comma-separated training seeds; smoke runs only")
    parser.add_argument("--patience", type=float, help="seconds during which loaded runs are timed again; smoke runs only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    overrides = {k: v for k, v in (("steps", args.steps), ("seeds", args.seeds), ("patience_s", args.patience))
                 if v is not None}
    if args.patience is not None:
        settings["patience_s"] = args.patience
    if args.steps is not None:
        settings["steps"] = args.steps
    if args.seeds is not None:
        settings["seeds"] = [int(x) for x in args.seeds.split(",")]
    THREADS = settings["threads"]
    started = time.perf_counter()
    env_before = environment()
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()

    base_cfg = PretrainConfig(
        mode="scratch", corpus=CorpusConfig(sources=["wikitext2"]), nsp=False,
        max_seq_length=settings["max_seq_length"], batch_size=settings["batch_size"], max_steps=settings["steps"],
        checkpoint_every_steps=10**9, seed=settings["seeds"][0],
    )
    t = time.perf_counter()
    data = prepare(base_cfg)
    prep_seconds = time.perf_counter() - t
    print(f"prepared in {prep_seconds:.1f}s: {json.dumps(data['stats'])}", flush=True)

    contenders = ("ours", "packed", "line_by_line")
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    discarded: list[dict] = []
    deadline = started + settings["patience_s"]
    max_load = settings["max_load_cpus"]

    def measured(name: str, run, seed: int):
        """Run one contender on a quiet machine. A run during which other processes kept the CPUs
        busy is stopped (Watchdog) or, when that shows only at the end (mean outside load above
        max_load_cpus), discarded, and timed again; after patience_s seconds of the whole script runs
        are no longer stopped and a loaded run is kept, flagged "contended"."""
        attempt = 0
        while True:
            gc.collect()
            waited, _ = wait_for_quiet(settings["max_wait_s"], max_load)
            patient = time.perf_counter() < deadline
            try:
                model, stats = run(2 * max_load if patient else None)
            except Contended as err:
                print(f"[seed {seed}] {name:12s} stopped early, {err}: timing again", flush=True)
                discarded.append({"contender": name, "seed": seed, "attempt": attempt, "stopped_early": str(err)})
                attempt += 1
                continue
            stats.update(seed=seed, waited_for_quiet_s=waited, attempt=attempt,
                         contended=stats["other_load_cpus"] > max_load)
            if not stats["contended"] or not patient:
                return model, stats
            print(f"[seed {seed}] {name:12s} {stats['tokens_per_s']:7.0f} tok/s under outside load "
                  f"{stats['other_load_cpus']:.2f} CPU: discarded, timing again", flush=True)
            stats.pop("train_loss_curve", None)
            discarded.append({"contender": name, **stats})
            attempt += 1
            del model

    def report(name: str, stats: dict) -> None:
        print(f"[seed {stats['seed']}] {name:12s} {stats['steps']:4d} steps {stats['tokens']:8d} tok "
              f"{stats['seconds']:6.1f}s {stats['tokens_per_s']:7.0f} tok/s "
              f"(outside load {stats['other_load_cpus']:.2f} CPU) held-out MLM loss "
              f"packed {stats['heldout']['packed']['mlm_loss']:.3f} lines {stats['heldout']['lines']['mlm_loss']:.3f}",
              flush=True)

    for index, seed in enumerate(settings["seeds"]):
        cfg = base_cfg.model_copy(update={"seed": seed})
        model, stats = measured("ours", lambda abort, cfg=cfg: run_ours(data, cfg, abort), seed)
        stats["heldout"] = evaluate(model, data, cfg)
        runs["ours"].append(stats)
        report("ours", stats)
        target = stats["tokens"]
        del model
        for layout in ("packed", "line_by_line"):
            if layout == "line_by_line" and index >= settings["line_by_line_seeds"]:
                continue
            model, stats = measured(layout, lambda abort, cfg=cfg, target=target, layout=layout: run_baseline(
                data, cfg, target, abort, layout), seed)
            sparse = as_masked_pretraining(model, cfg, data["tokenizer"])
            stats["conversion_max_abs_diff"] = check_conversion(
                model, sparse, make_collator(data["heldout"]["lines"], data["tokenizer"], cfg, HELDOUT_MASK_SEED)
            )
            if stats["conversion_max_abs_diff"] > 1e-4:
                raise RuntimeError(f"converted baseline differs from BertForMaskedLM: {stats['conversion_max_abs_diff']}")
            stats["heldout"] = evaluate(sparse, data, cfg)
            stats["target_tokens"] = target
            runs[layout].append(stats)
            report(layout, stats)
            del model, sparse

    summary: dict = {}
    for name, all_runs in runs.items():
        clean = [x for x in all_runs if not x["contended"]]
        rs = clean or all_runs
        if not rs:
            continue
        summary[name] = {
            "runs_in_median": len(rs),
            "tokens_per_s": median([x["tokens_per_s"] for x in rs]),
            "steps": median([x["steps"] for x in rs]),
            "tokens": median([x["tokens"] for x in rs]),
            "seconds": median([x["seconds"] for x in rs]),
            **{f"heldout_{layout}_{m}": median([x["heldout"][layout][f"mlm_{m}"] for x in rs])
               for layout in ("packed", "lines") for m in ("loss", "accuracy")},
        }
    comparisons = {}
    for other in ("packed", "line_by_line"):
        pairs = [(o, b) for o, b in zip(runs["ours"], runs[other])]  # line_by_line: the first seeds only
        if not pairs:
            continue
        loss_diff = {layout: [o["heldout"][layout]["mlm_loss"] - b["heldout"][layout]["mlm_loss"] for o, b in pairs]
                     for layout in ("packed", "lines")}
        comparisons[other] = {
            "seeds": [o["seed"] for o, _ in pairs],
            "pair_ratios_tokens_per_s": [o["tokens_per_s"] / b["tokens_per_s"] for o, b in pairs],
            "ratio_tokens_per_s": ratio_interval([o["tokens_per_s"] / b["tokens_per_s"] for o, b in pairs]),
            "contended_pairs": sum(o["contended"] or b["contended"] for o, b in pairs),
            "heldout_loss_diff_per_seed": loss_diff,  # ours minus baseline, nats (negative: ours lower)
            "heldout_loss_diff_mean": {k: float(np.mean(v)) for k, v in loss_diff.items()},
        }
    headline = comparisons["packed"]
    goal_met = (headline["ratio_tokens_per_s"]["geomean"] >= 1.8 and len(headline["seeds"]) >= 3
                and headline["heldout_loss_diff_mean"]["packed"] <= 0.0)
    total_seconds = time.perf_counter() - started
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/pretrain_throughput.py", *map(shlex.quote, sys.argv[1:])]),
        "environment_before": env_before,
        "environment_after": environment(),
        "machine": env_before["machine"],
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "accelerate": __import__("accelerate").__version__,
        },
        "threads": THREADS,
        "dtype": "float32",
        "settings_file": "bench/settings/pretrain.json",
        "settings_sha256": settings_sha,
        "settings_git": git_file_state(ROOT / "bench" / "settings" / "pretrain.json"),
        "allocator": allocator_loaded(),
        "settings_overridden": overrides,
        "settings": {**settings, "learning_rate": base_cfg.learning_rate, "weight_decay": base_cfg.weight_decay,
                     "warmup_ratio": base_cfg.warmup_ratio, "mlm_probability": base_cfg.mlm_probability,
                     "model": {"layers": base_cfg.num_layers, "hidden": base_cfg.hidden_size,
                               "heads": base_cfg.num_heads, "intermediate": base_cfg.intermediate_size,
                               "vocab": len(data["tokenizer"])}},
        "data": data["stats"],
        "prepare_seconds": prep_seconds,
        "runs": runs,
        "discarded_contended_runs": discarded,
        "kept_runs_measured_under_outside_load": sum(x["contended"] for rs in runs.values() for x in rs),
        "median": summary,
        "comparisons": comparisons,
        "goal": "ours >= 1.8x the packed run_mlm default's non-pad tokens/s (geometric mean over >= 3 seeds) at "
                "equal or lower mean held-out MLM loss after the same tokens",
        "goal_met": goal_met,
        "total_seconds": total_seconds,
    }
    jobs = append_job(args.output, result)

    print()
    print(f"{'contender':12s} {'runs':>4s} {'steps':>6s} {'tokens':>9s} {'seconds':>8s} {'tok/s':>8s} "
          f"{'loss packed':>12s} {'loss lines':>11s}")
    for name, s in summary.items():
        print(f"{name:12s} {s['runs_in_median']:4d} {s['steps']:6.0f} {s['tokens']:9.0f} {s['seconds']:8.1f} "
              f"{s['tokens_per_s']:8.0f} {s['heldout_packed_loss']:12.3f} {s['heldout_lines_loss']:11.3f}")
    for other, c in comparisons.items():
        r = c["ratio_tokens_per_s"]
        print(f"ours vs {other}: {r['geomean']:.2f}x [{r.get('low', float('nan')):.2f}, {r.get('high', float('nan')):.2f}] "
              f"over seeds {c['seeds']}; held-out loss diff (packed layout) {c['heldout_loss_diff_mean']['packed']:+.3f}")
    print(f"goal 1.8x vs packed {'met' if goal_met else 'NOT met'}")
    contended = result["kept_runs_measured_under_outside_load"]
    if contended:
        print(f"WARNING: {contended} kept run(s) were measured while other processes loaded the CPUs")
    print(f"total {total_seconds:.0f}s; appended job {jobs} to {args.output}")


if __name__ == "__main__":
    main()
