"""Typed configuration of one pipeline experiment.

One tree of pydantic models, one model per concern. YAML files in ``configs/`` instantiate it,
``--set a.b=c`` overrides single fields, and the same model is the Prefect flow's parameter so the
Prefect UI renders it as a form. Every field has a default and a description.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tlflow import paths
from tlflow.config.selection import SelectConfig
from tlflow.errors import TlflowError


class ConfigError(TlflowError, ValueError):
    """A configuration that cannot be used; the message is one line naming the problem."""

    exit_code = 2


#: Largest batch a config may ask for: beyond it no accelerator's memory holds a batch of even the
#: shortest sequences, and the number is a typo (an absurd value would otherwise fail deep in training).
MAX_BATCH_SIZE = 65_536


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SplitFractions(_Section):
    """Seeded stratified split of a single labelled file into train/validation/test."""

    train: float = Field(0.8, gt=0, lt=1, description="Fraction of rows for training.")
    validation: float = Field(0.1, ge=0, lt=1, description="Fraction of rows for validation.")
    test: float = Field(0.1, gt=0, lt=1, description="Fraction of rows for the held-out test split.")
    seed: int = Field(42, description="Seed of the stratified split.")

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitFractions:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:g}")
        return self


def _named_groups(field: str, pattern: str) -> list[str]:
    """The named groups of a regular expression; ValueError naming `field` when it does not compile."""
    import re

    try:
        return list(re.compile(pattern).groupindex)
    except re.error as err:
        raise ValueError(f"`{field}` is not a valid regular expression: {err}") from None


class DerivedColumn(_Section):
    """A column computed from another when a file is read (e.g. the coarse label of 'LOC:city')."""

    source: str | int = Field(description="Raw column (name, or 0-based index without header) the value comes from.")
    pattern: str = Field(
        description="Regular expression searched in the source value: the derived value is its first group, or the "
        "whole match without groups; no match gives a missing value."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        _named_groups("pattern", pattern)
        return pattern


class DataConfig(_Section):
    """Where a labelled dataset lives and how its raw files are read."""

    format: Literal["csv", "tsv", "jsonl", "parquet", "text", "regex", "conll", "squad"] = Field(
        "csv",
        description="File format. 'text' means delimited text with `separator`; 'regex' is one row per line, its "
        "columns the named groups of `pattern`; 'conll' is one token per line with a blank line between sentences "
        "(token-classification); 'squad' is SQuAD-style JSON (question-answering).",
    )
    separator: str | None = Field(
        None, description="Field separator for 'text' (and to override csv/tsv defaults)."
    )
    maxsplit: int | None = Field(
        None, ge=1,
        description="Split each line at most this many times on `separator` (format text or tsv, no quoting): the "
        "last column keeps any further separators, e.g. `LABEL:the text: with colons` with maxsplit 1.",
    )
    pattern: str | None = Field(
        None,
        description="Regular expression with named groups for format 'regex', matched against each whole line; "
        "the groups are the columns, e.g. '(?P<label>[A-Z]+):(?P<fine>\\S+) (?P<text>.*)'.",
    )
    header: bool = Field(
        True, description="Whether the first row of a csv/tsv/text file names the columns (not used by 'regex')."
    )
    encoding: str = Field("utf-8", description="Text encoding of the files ('utf-8-sig' strips a BOM).")
    compression: Literal["auto", "none", "gz", "bz2", "xz", "zip"] = Field(
        "auto",
        description="Compression of the files: 'auto' by extension (.gz, .bz2, .xz, .zip with one member), "
        "decompressed as they are read; 'none' reads them as they are.",
    )
    files: dict[Literal["train", "validation", "test"], str] = Field(
        default_factory=dict,
        description="Split name -> file path. Give train and test (validation optional), or give `file`.",
    )
    file: str | None = Field(None, description="One labelled file split by `split` (instead of `files`).")
    class_files: dict[str, str] = Field(
        default_factory=dict,
        description="Label -> file holding one example per line (e.g. {positive: reviews.pos, negative: "
        "reviews.neg}), split by `split` per label (instead of `file`/`files`).",
    )
    split: SplitFractions = Field(
        default_factory=SplitFractions, description="Fractions for `file` and `class_files` (seeded, per label)."
    )
    split_column: str | int | None = Field(
        None,
        description="Column of `file` that names each row's split (instead of `split` fractions); its values are "
        "mapped by `split_map`.",
    )
    split_map: dict[str, Literal["train", "validation", "test"]] = Field(
        default_factory=dict,
        description="Value of `split_column` -> split, e.g. {TRAIN: train, TRIAL: validation, TEST: test}. Values "
        "that are split names already need no entry; any other value is an error naming its line.",
    )
    text_columns: list[str | int] = Field(
        default_factory=lambda: ["text"],
        description="Column names (or 0-based indices without header) holding the text; several are joined.",
    )
    text_join: str = Field(". ", description="String placed between several text columns.")
    columns: dict[str, str | int] = Field(
        default_factory=dict,
        description="Raw column (name, or 0-based index) of each task-specific field. sentence-pair: text_pair; "
        "token-classification: tokens, tags (conll: field indices, default 0 and -1; tables: lists or "
        "space-separated strings); question-answering from tables: id, title, question, context, answer_text, "
        "answer_start. A field not given is read from the column of the same name.",
    )
    group_column: str | None = Field(
        None,
        description="Split `file` so that rows sharing this canonical field (e.g. 'title' or 'context') stay in "
        "one split. question-answering defaults to 'title' (SQuAD: split by article).",
    )
    label_column: str | int = Field(
        "label", description="Column name (or 0-based index) holding the label (classification task types)."
    )
    label_names: list[str] = Field(
        default_factory=list,
        description="Label names in id order. Empty: the sorted distinct labels of the training split.",
    )
    label_map: dict[str, str] = Field(
        default_factory=dict,
        description="Raw label value -> label name (e.g. '1': World). Unmapped values are kept and fail validation.",
    )
    derived_columns: dict[str, DerivedColumn] = Field(
        default_factory=dict,
        description="New column -> where its value comes from: {source: raw column, pattern: regex}; usable as "
        "label_column, in text_columns and columns, e.g. a coarse label from 'LOC:city': "
        "{coarse: {source: fine, pattern: '^([^:]+)'}}.",
    )
    invalid_rows: Literal["fail", "drop"] = Field(
        "fail",
        description="Rows with a blank text, a missing label or a line that cannot be parsed: 'fail' stops (reading "
        "or validation names file:line); 'drop' leaves them out, counted with their first file:line in the report.",
    )
    max_train_rows: int | None = Field(
        None, gt=0, description="Use a seeded stratified subset of this many training rows (None: all)."
    )
    max_eval_rows: int | None = Field(
        None, gt=0, description="Cap validation and test splits at this many rows (seeded, stratified)."
    )
    seed: int = Field(42, description="Seed for row subsets.")
    drop_train_overlap: bool = Field(
        False,
        description="Drop training rows whose text also appears in validation/test (reported); "
        "otherwise such leakage fails validation.",
    )
    train_on_validation: bool = Field(
        False,
        description="Fine-tune on the training and validation splits together (after validation and sampling; "
        "e.g. the final run of settings chosen on validation): no validation curve, no train/validation gap, "
        "and no finetune.early_stopping; the test split is held out as always.",
    )

    @field_validator("label_names")
    @classmethod
    def _distinct_labels(cls, names: list[str]) -> list[str]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"label names must be distinct: {', '.join(repr(n) for n in repeated)} appears more than once")
        if any(not n.strip() for n in names):
            raise ValueError(f"label names must not be blank: {names!r}")
        if len(names) == 1:
            raise ValueError(f"one label name ({names[0]!r}): a classifier needs at least 2 (or none: taken from the "
                             "training split)")
        return names

    @model_validator(mode="after")
    def _files_or_file(self) -> DataConfig:
        given = [name for name in ("files", "file", "class_files") if getattr(self, name)]
        if len(given) > 1:
            raise ValueError("give either `files` (one per split), `file` (split by fractions) or `class_files` "
                             f"(one file per label), not {' and '.join(given)}")
        if not given:
            raise ValueError("no data: give `files` (train/test[/validation]), `file` or `class_files`")
        if self.files and ("train" not in self.files or "test" not in self.files):
            raise ValueError("`files` needs at least 'train' and 'test'")
        if self.format == "text" and not self.separator:
            raise ValueError("format 'text' needs a `separator`")
        if self.format == "regex" and not self.pattern:
            raise ValueError("format 'regex' needs a `pattern` with named groups, e.g. '(?P<label>\\S+) (?P<text>.*)'")
        if self.pattern is not None and not _named_groups("pattern", self.pattern) and self.format == "regex":
            raise ValueError("`pattern` has no named groups: name each column, e.g. (?P<text>.*)")
        if self.maxsplit is not None and self.format not in ("text", "tsv"):
            raise ValueError(f"`maxsplit` splits lines without quoting: use format text or tsv, not {self.format}")
        if self.split_column is not None and not self.file:
            raise ValueError("`split_column` names the split of each row of one `file`; `files` and `class_files` "
                             "are split already")
        if not self.text_columns:
            raise ValueError("`text_columns` must name at least one column")
        return self

    def paths(self) -> list[str]:
        """All raw files this dataset reads, in a stable order."""
        if self.class_files:
            return [self.class_files[k] for k in sorted(self.class_files)]
        return [self.file] if self.file else [self.files[k] for k in sorted(self.files)]


class ValidateConfig(_Section):
    """Thresholds of the data-quality suite run on every split before training."""

    min_chars: int = Field(1, ge=1, description="Shortest allowed text, in characters (after stripping).")
    max_chars: int = Field(5000, ge=1, description="Longest allowed text, in characters.")
    check_leakage: bool = Field(True, description="Fail when a text of train also appears in validation/test.")
    min_class_fraction: float = Field(
        0.0, ge=0, lt=1, description="Fail when a class has less than this share of train (0: report only)."
    )
    examples_per_failure: int = Field(5, ge=1, description="Offending rows shown per failed check.")


#: Presidio entity types the PII scan looks for by default.
PII_ENTITIES = ["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN"]


class PrivacyConfig(_Section):
    """Personal data in the raw texts: found by the scan of validate-data (Presidio with spaCy's
    small English pipeline, offline) and handled by policy before anything is tokenized or logged."""

    pii: Literal["off", "report", "redact", "fail"] = Field(
        "report",
        description="off: no scan; report: counts per split, column and entity type (report and metrics), texts "
        "kept; redact: each span found is replaced by <TYPE> before validation reports, tokenization and "
        "logging; fail: stop the flow naming file:row and entity type (never the value).",
    )
    entities: list[str] = Field(
        default_factory=lambda: list(PII_ENTITIES),
        description="Presidio entity types to look for (PERSON, EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, "
        "IBAN_CODE, IP_ADDRESS, URL, US_SSN, ...).",
    )
    min_score: float = Field(0.5, ge=0, le=1, description="Lowest Presidio confidence that counts as a finding.")
    max_pii_fraction: float = Field(
        1.0, ge=0, le=1,
        description="Validation fails when a larger share of a split's rows carries PII (report and redact; 1: never).",
    )

    @field_validator("pii", mode="before")
    @classmethod
    def _bare_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads a bare `off` (e.g. --set privacy.pii=off) as false


class TaskConfig(_Section):
    """What is learned and how it is judged.

    Besides `type` and `primary_metric`, the section holds the task type's own options (e.g.
    ``doc_stride`` for question answering): extra keys, validated by the task type
    (`tlflow.task_types.registry.check_config`), so a new task type adds options without a
    change here.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    type: str | None = Field(
        None,
        description="Task type: single-text classification (text-classification), sentence-pair classification "
        "(sentence-pair), named-entity recognition (token-classification) or extractive question answering "
        "(question-answering). Empty: the first registered task type, single-text classification.",
    )
    primary_metric: str | None = Field(
        None,
        description="Metric that decides promotion (logged as test_<metric>). Empty: the task type's default "
        "(accuracy; f1 for pairs (of the second label), entities (micro) and answers).",
    )


class ModelConfig(_Section):
    """The encoder to start from and its tokenizer."""

    base: str = Field(
        "minilm-l6",
        description="Base checkpoint: 'minilm-l6' (packaged all-MiniLM-L6-v2), 'mpnet-base' (all-mpnet-base-v2, "
        "installed by `make bases`), 'smollm2-135m' (packaged SmolLM2-135M-Instruct, converted once from GGUF), a "
        "local path or a Hub id.",
    )
    init: Literal["pretrained", "random"] = Field(
        "pretrained", description="'random' builds the architecture below from scratch (tests, baselines)."
    )
    num_layers: int = Field(2, ge=1, description="Layers of a randomly initialised BERT (init=random).")
    hidden_size: int = Field(64, ge=8, description="Hidden size of a randomly initialised BERT.")
    num_heads: int = Field(2, ge=1, description="Attention heads of a randomly initialised BERT.")
    intermediate_size: int = Field(256, ge=8, description="Feed-forward size of a randomly initialised BERT.")
    max_length: int = Field(128, ge=8, le=512, description="Longest tokenized sequence; longer texts are cut.")
    dropout: float | None = Field(
        None, ge=0, lt=1,
        description="Dropout probability of the encoder's hidden layers, attention and classification head (the "
        "base's own dropout settings overridden); None: the base's own.",
    )

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelConfig:
        if self.init == "random" and self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        return self


class CorpusConfig(_Section):
    """Unlabelled text for pretraining, with document boundaries kept."""

    sources: list[Literal["wikitext2", "gutenberg", "task"]] = Field(
        default_factory=lambda: ["wikitext2"],
        description="Corpora to use: 'wikitext2', 'gutenberg', and/or 'task' (the fine-tuning train texts, no labels).",
    )
    wikitext_dir: str = Field("data/corpus/wikitext2", description="Folder of WikiText-2 (valid.txt, test.txt).")
    gutenberg_dir: str = Field("data/corpus/gutenberg", description="Folder of Project Gutenberg .txt books.")
    max_documents: int | None = Field(None, gt=0, description="Use at most this many documents (seeded choice).")
    heldout_fraction: float = Field(
        0.05, ge=0, lt=0.5, description="Share of documents held out for perplexity (never trained on)."
    )
    min_documents: int = Field(2, ge=1, description="Validation fails with fewer documents.")
    max_passes: float = Field(
        10.0, gt=0,
        description="Validation fails when the step budget (steps x batch x max_seq_length tokens) would "
        "pass over the corpus more often than this.",
    )
    max_unknown_fraction: float = Field(
        0.1, gt=0, le=1,
        description="Validation fails when more tokens than this map to [UNK] (WikiText-2 itself is ~6 % <unk>).",
    )


class PretrainConfig(_Section):
    """Pretraining stage between validation and fine-tuning."""

    mode: Literal["none", "scratch", "continue"] = Field(
        "none",
        description="'none': fine-tune the base checkpoint as it is; 'scratch': new WordPiece vocabulary and "
        "a new BERT; 'continue': domain-adaptive MLM from the base checkpoint.",
    )
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="Pretraining text.")
    vocab_size: int = Field(8000, ge=200, description="WordPiece vocabulary size (scratch).")
    lowercase: bool = Field(True, description="Lowercase and strip accents in the new tokenizer (scratch).")
    num_layers: int = Field(4, ge=1, description="Layers of the scratch BERT.")
    hidden_size: int = Field(256, ge=8, description="Hidden size of the scratch BERT.")
    num_heads: int = Field(4, ge=1, description="Attention heads of the scratch BERT.")
    intermediate_size: int = Field(1024, ge=8, description="Feed-forward size of the scratch BERT.")
    max_position_embeddings: int = Field(512, ge=16, description="Longest position of the scratch BERT.")
    max_seq_length: int = Field(128, ge=16, le=512, description="Length of a pretraining example in tokens.")
    nsp: bool = Field(True, description="Next-sentence prediction on sentence pairs (off: packed MLM only).")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens selected for masking.")
    whole_word_masking: bool = Field(False, description="Mask all sub-words of a selected word together.")
    short_seq_prob: float = Field(0.1, ge=0, le=1, description="Share of NSP examples with a shorter target length.")
    max_steps: int = Field(1000, ge=1, description="Optimizer steps of pretraining.")
    batch_size: int = Field(32, ge=1, le=MAX_BATCH_SIZE, description="Examples per step.")
    learning_rate: float = Field(5e-4, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="Share of steps with linear warm-up.")
    checkpoint_every_steps: int = Field(200, ge=1, description="Save a resumable checkpoint every N steps.")
    seed: int = Field(42, description="Seed of document hold-out, example creation, masking and initialisation (WordPiece training itself is not seeded).")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> PretrainConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError("pretrain.hidden_size must be divisible by pretrain.num_heads")
        return self


class LoraConfig(_Section):
    """Low-rank adapters (LoRA, through `peft`) for `finetune.method: lora`."""

    r: int = Field(8, ge=1, description="Rank of each adapter's low-rank update.")
    alpha: float = Field(16.0, gt=0, description="Scale of the update (applied as alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' input while training.")
    target_modules: list[str] = Field(
        default_factory=list,
        description="Names of the linear layers that get adapters; []: the attention query and value projections of "
        "the base (query/value in BERT encoders, q_proj/v_proj in Llama-style causal LMs, c_attn in GPT-2).",
    )
    merge: bool = Field(
        True,
        description="Merge the adapters into the base weights before the model is logged (a plain Hugging Face model). "
        "false (log base + adapter separately) is not supported yet.",
    )

    @model_validator(mode="after")
    def _merge_only(self) -> LoraConfig:
        if not self.merge:
            raise ValueError("lora.merge: false (base + adapter in the logged model) is not supported yet; use true")
        return self


class DifferentialPrivacyConfig(_Section):
    """DP-SGD through Opacus: per-example gradient clipping and Gaussian noise calibrated so the
    whole fine-tuning spends at most (epsilon, delta)."""

    epsilon: float = Field(8.0, gt=0, description="Privacy budget of the whole fine-tuning (smaller: more private).")
    delta: float | None = Field(
        None, gt=0, lt=1, description="Probability of exceeding epsilon; None: 1 / (10 x training rows)."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Per-example gradient clipping norm (DP-SGD's C).")
    accountant: Literal["rdp", "prv"] = Field(
        "rdp", description="Opacus accountant that calibrates the noise and reports the epsilon spent (rdp: Renyi DP; "
        "prv: privacy random variables, tighter)."
    )
    physical_batch_size: int = Field(
        32, ge=1, le=MAX_BATCH_SIZE,
        description="Most examples per forward/backward pass inside one sampled batch (memory only: per-example "
        "gradients are clipped and summed over the whole batch before the noise, whatever this is).",
    )


class EarlyStoppingConfig(_Section):
    """Stop fine-tuning when the validation metric stops improving, and keep the best weights."""

    patience: int = Field(
        2, ge=1, description="Evaluations in a row without an improvement of more than `min_delta` before stopping."
    )
    min_delta: float = Field(0.0, ge=0, description="Smallest rise of the metric that counts as an improvement.")
    metric: str | None = Field(
        None, description="Validation metric watched (higher is better); None: the task's primary metric."
    )


class FinetuneConfig(_Section):
    """Supervised fine-tuning of the encoder with a task head."""

    method: Literal["full", "lora", "head"] = Field(
        "full",
        description="full: every weight trains; lora: the base is frozen and only low-rank adapters (and the task "
        "head of a classifier) train; head: the base is frozen and only the task head trains (a linear probe of "
        "the pretrained encoder); with lora and head the checkpoints hold only the trained weights.",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA settings (method: lora).")
    privacy: DifferentialPrivacyConfig | None = Field(
        None, description="Differentially private fine-tuning (DP-SGD with Opacus); None: ordinary training."
    )

    epochs: float = Field(1.0, gt=0, description="Passes over the training split (fractions allowed).")
    min_steps: int = Field(
        150, ge=0,
        description="Fewest optimizer steps: when `epochs` over a small training split give fewer, the epochs are "
        "raised to the smallest whole number that reaches this (said in the log, metric `train/epochs`). "
        "0: exactly `epochs`.",
    )
    batch_size: int = Field(32, ge=1, le=MAX_BATCH_SIZE, description="Examples per optimizer step.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases and LayerNorm).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps with linear warm-up.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    group_by_length: bool = Field(True, description="Batch texts of similar length (less padding).")
    eval_every_steps: int = Field(
        0, ge=0,
        description="Validate every N steps (0: 4 times a run and at least once per epoch; with early_stopping "
        "once per epoch).",
    )
    log_every_steps: int = Field(20, ge=1, description="Log train/loss every N steps.")
    checkpoint_every_steps: int = Field(100, ge=1, description="Save a resumable checkpoint every N steps.")
    seed: int = Field(42, description="Seed of initialisation, shuffling and dropout.")
    threads: int = Field(0, ge=0, description="Torch intra-op threads (0: one per physical core).")
    processes: int = Field(
        1, ge=1, le=64,
        description="Data-parallel processes (PyTorch DDP, gloo, on this machine); the batch is split between them "
        "and they share the cores. 1: train in the flow's process.",
    )
    speedups: list[Literal["cls_only", "kept_embedding_grad", "fast_dropout"]] = Field(
        default_factory=lambda: ["cls_only", "kept_embedding_grad", "fast_dropout"],
        description="Opt-in speed tricks of the fine-tuning loop (tlflow/training/speedups/), none changing the "
        "result beyond float rounding or dropout's random draws: cls_only computes a sequence classifier's last "
        "encoder layer for [CLS] only (same logits; also applied when the logged model is served); "
        "kept_embedding_grad keeps one word-embedding gradient buffer that only the batch's rows reach (bitwise "
        "the same weights; single process only); fast_dropout draws dropout masks as rand >= p (same p and "
        "scaling, other random numbers). []: plain Hugging Face training.",
    )

    early_stopping: EarlyStoppingConfig | None = Field(
        None,
        description="Stop when the validation metric has not improved for `patience` evaluations and restore the "
        "weights of the best evaluation (kept across a resume); None: train the whole budget.",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="Label smoothing of the training loss (cross-entropy); 0: none."
    )
    gap_rows: int = Field(
        256, ge=0,
        description="Training rows (a seeded subset, at most as many as validation has) scored at every evaluation: "
        "logged as gap/train_<metric> and gap/<metric> (train minus validation, the overfitting gap); 0: not measured.",
    )

    @model_validator(mode="after")
    def _one_process_controls(self) -> FinetuneConfig:
        if self.early_stopping is not None and self.processes > 1:
            raise ValueError("early_stopping stops a single-process run: set processes: 1 or drop early_stopping")
        if self.label_smoothing and self.privacy is not None:
            raise ValueError("label_smoothing is not supported with privacy (DP-SGD): set it to 0")
        return self

    @model_validator(mode="after")
    def _private_single_process(self) -> FinetuneConfig:
        if self.privacy is not None and self.processes > 1:
            raise ValueError("privacy (DP-SGD) trains in one process: set processes: 1 or drop privacy")
        return self


class EvaluateConfig(_Section):
    """Held-out evaluation."""

    batch_size: int = Field(64, ge=1, le=MAX_BATCH_SIZE, description="Examples per inference batch.")
    misclassified_examples: int = Field(20, ge=0, description="Rows in the table of misclassified examples.")
    slices: list[str] = Field(
        default_factory=list,
        description="Raw columns carried through the readers as metadata (never trained on) whose values define "
        "evaluation slices, besides the built-in ones (text length quartiles; entity type; answer length).",
    )


#: The emotions of the Equity Evaluation Corpus (its neutral sentences have none).
EEC_EMOTIONS = ("anger", "fear", "joy", "sadness")


class EecAuditConfig(_Section):
    """Counterfactual audit on the Equity Evaluation Corpus: sentences that differ only in the
    person named (gender, race) should get the same prediction."""

    label_map: dict[str, str] = Field(
        default_factory=dict,
        description="EEC emotion (anger, fear, joy, sadness) -> the model's label, e.g. {joy: positive, anger: "
        "negative, fear: negative, sadness: negative}.",
    )
    file: str = Field("data/eec/Equity-Evaluation-Corpus.csv", description="The EEC csv.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the bootstrap interval of each gap.")
    bootstrap_samples: int = Field(1000, ge=100, description="Resamples of the (template, emotion word) pairs.")

    @model_validator(mode="after")
    def _emotions(self) -> EecAuditConfig:
        if not self.label_map:
            raise ValueError("label_map is empty: map the EEC emotions (anger, fear, joy, sadness) to the model's labels")
        unknown = sorted(set(self.label_map) - set(EEC_EMOTIONS))
        if unknown:
            raise ValueError(f"label_map: {', '.join(unknown)} is not an EEC emotion (one of: {', '.join(EEC_EMOTIONS)})")
        return self


class FairnessConfig(_Section):
    """Fairness audits run after evaluation (text classification)."""

    eec: EecAuditConfig | None = Field(None, description="Counterfactual EEC audit; None: not run.")


class PromoteConfig(_Section):
    """Registration and the promotion gate (every check must pass for a new champion)."""

    register_model: bool = Field(True, description="Register the fine-tuned model in the MLflow registry.")
    min_delta: float = Field(
        0.0, ge=0, description="The primary metric must beat the champion's by at least this (and by more than 0)."
    )
    confidence: float = Field(
        0.95, gt=0, lt=1,
        description="Paired bootstrap over the test examples: the lower end of this interval of the gain must be > 0.",
    )
    bootstrap_samples: int = Field(1000, ge=100, description="Resamples of the paired bootstrap.")
    max_class_drop: float = Field(
        0.05, ge=0, le=1, description="No class (or entity type) may lose more F1 than this against the champion."
    )
    floors: dict[str, float] = Field(
        default_factory=dict,
        description="Absolute minimum test metrics, e.g. {accuracy: 0.85}; also required of a first champion.",
    )
    max_slice_drop: float = Field(
        0.05, ge=0, le=1,
        description="No evaluation slice with at least `min_slice_size` examples may lose more than this on the "
        "primary metric against the champion (re-scored on the same split).",
    )
    min_slice_size: int = Field(100, ge=1, description="Slices with fewer test examples are reported, not gated.")
    max_counterfactual_gap: float | None = Field(
        None, ge=0, le=1,
        description="Largest allowed counterfactual gap of the new model (upper end of its interval, EEC audit); "
        "None: reported, not gated.",
    )
    trivial_baseline: bool = Field(
        True,
        description="With no floors, the new model must also beat the task's trivial baseline on the primary metric "
        "(paired bootstrap at `confidence`): the majority class, all-O tags, the empty answer, or the zero-shot base "
        "for text generation; a model that learned nothing never becomes champion.",
    )
    max_champion_train_overlap: float = Field(
        0.0, ge=0, le=1,
        description="Largest share of the test split the champion may have been trained on (its training-row "
        "fingerprint) for a plain comparison; above it `on_champion_train_overlap` applies.",
    )
    on_champion_train_overlap: Literal["rescore", "fail"] = Field(
        "rescore",
        description="rescore: compare both models on the test rows the champion was not trained on (the decision "
        "says so); fail: refuse the comparison (the new model becomes challenger, the reason says why).",
    )
    lock_wait_s: float = Field(1800, gt=0, description="Longest wait for another pipeline's promotion to finish.")
    lock_stale_s: float = Field(
        1800, gt=0, description="A promotion lock older than this is left by a killed process and is broken."
    )


class MonitoringConfig(_Section):
    """Drift monitoring of the champion's predictions (the `monitoring` flow, `tlflow monitor`)."""

    threshold: float = Field(
        0.5, gt=0, le=1,
        description="Retraining is triggered when the drift score (share of drifted descriptors: text length, UNK "
        "share, non-ASCII share, predicted label, [CLS] embedding) exceeds it.",
    )
    window: int = Field(1000, ge=2, description="The latest predictions of the champion compared with its training rows.")
    min_rows: int = Field(100, ge=2, description="With fewer predictions in the window nothing is judged.")
    reference_rows: int = Field(1000, ge=2, description="Training rows (a seeded sample) described as the reference.")
    windows_dir: str = Field(str(paths.WINDOWS_DIR), description="Folder of the prediction windows (one per model).")
    cooldown_hours: float = Field(
        24, ge=0, description="After drift triggered a retraining, drift of the same champion does not trigger again "
        "for this long."
    )
    seed: int = Field(42, description="Seed of the reference sample.")


class PathsConfig(_Section):
    """What the config may read (`tlflow.config.confinement`): every data file and folder lies under a
    data root; a local `model.base` folder under a data root, a model root, the pipeline's cache or the
    Hugging Face cache. Relative roots are taken from the working directory; symlinks are followed."""

    data_roots: list[str] = Field(
        default_factory=lambda: [str(paths.DATA_DIR)],
        description="Folders data.file(s), the pretraining corpus folders and fairness.eec.file must lie under.",
    )
    model_roots: list[str] = Field(
        default_factory=list,
        description="Extra folders a local model.base may lie under (besides the data roots, .cache/tlflow and "
        "the Hugging Face cache).",
    )


def _non_finite(tree: Any, prefix: str = "") -> str | None:
    """Dotted key of the first non-finite float (inf, nan, 1e400) in a raw config tree."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return prefix or "<root>"
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        found = _non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found:
            return found
    return None


class PipelineConfig(_Section):
    """One experiment: dataset + task + model + budget. `name` is the MLflow experiment and model name."""

    name: str = Field("sst2", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Experiment/model name.")
    data: DataConfig = Field(
        default_factory=lambda: DataConfig(
            format="tsv",
            files={"train": "data/sst2/train.tsv", "test": "data/sst2/test.tsv", "validation": "data/sst2/dev.tsv"},
            text_columns=["sentence"],
            label_column="label",
            label_names=["negative", "positive"],
            label_map={"0": "negative", "1": "positive"},
        ),
        description="The labelled dataset.",
    )
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate", description="Data checks.")
    task: TaskConfig = Field(default_factory=TaskConfig, description="Task type and primary metric.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model and tokenizer.")
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="Pretraining stage.")
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Fine-tuning budget.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Evaluation.")
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig, description="Personal data in the raw texts.")
    fairness: FairnessConfig = Field(default_factory=FairnessConfig, description="Fairness audits.")
    promote: PromoteConfig = Field(default_factory=PromoteConfig, description="Registration and promotion.")
    paths: PathsConfig = Field(default_factory=PathsConfig, description="Folders the config may read from.")
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig, description="Drift monitoring.")
    select: SelectConfig | None = Field(
        None, description="Model selection (`tlflow select`): candidates, search space, trials; None: not set up."
    )

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _finite_numbers(cls, data: Any) -> Any:
        # YAML reads `.inf`, `.nan` and `1e400` as floats; no setting means them (an infinite epoch
        # count would only fail deep in training), task options included.
        found = _non_finite(data) if isinstance(data, dict) else None
        if found:
            raise ValueError(f"{found}: not a finite number")
        return data

    @model_validator(mode="after")
    def _private_texts_not_pretrained_on(self) -> PipelineConfig:
        if self.finetune.privacy is not None and self.pretrain.mode != "none" and "task" in self.pretrain.corpus.sources:
            raise ValueError("finetune.privacy: pretrain.corpus.sources has 'task', so the training texts would be "
                             "pretrained on without privacy; drop 'task' or set pretrain.mode: none")
        return self

    @model_validator(mode="after")
    def _early_stopping_needs_validation(self) -> PipelineConfig:
        if self.data.train_on_validation and self.finetune.early_stopping is not None:
            raise ValueError("finetune.early_stopping watches the validation split, which data.train_on_validation "
                             "trains on: drop one of them")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the YAML spelling of every key."""
        return self.model_dump(mode="json", by_alias=True)

    def flat(self) -> dict[str, str]:
        """Flattened ``a.b.c -> value`` view, the MLflow params of a run."""
        return flatten(self.to_dict())

    def hash(self) -> str:
        """Short stable digest of the whole config (the `config_hash` tag), `paths` left out: the
        allowed roots change what may be read, not what is trained."""
        tree = self.to_dict()
        tree.pop("paths", None)
        tree.pop("select", None)  # how a search looks for settings, not what a run trains
        tree.pop("monitoring", None)  # when to retrain, not what is trained
        blob = json.dumps(tree, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested dicts into dotted keys; lists and scalars become JSON strings."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value if isinstance(value, str) else json.dumps(value)
    return out
