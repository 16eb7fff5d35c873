"""Pretraining stage tasks: corpus checks, tokenizer, examples (cached), encoder training and registration."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import mlflow
from datasets import DatasetDict
from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from transformers import BertForMaskedLM, PreTrainedTokenizerBase

from tasks.progress import training_progress
from tlflow import paths
from tlflow.config import PipelineConfig
from tlflow.data.atomic import atomic_dir
from tlflow.data.cache import cache_key, load_tokenized, save_atomically
from tlflow.data.validation.stage import REPORT_DIR, DataValidationError
from tlflow.modeling.models import load_tokenizer, resolve_base
from tlflow.pretraining.corpus import Document, load_corpus, split_heldout
from tlflow.pretraining.corpus_validation import corpus_frame, validate_corpus
from tlflow.pretraining.model import build_continue_model, build_scratch_model, save_encoder
from tlflow.pretraining.stage import build_examples, pretrain
from tlflow.pretraining.vocab import train_wordpiece
from tlflow.registry import tracking

CACHE_DIR = paths.PRETRAINING_DIR


@dataclass
class Corpus:
    train: list[Document]
    heldout: list[Document]


@dataclass
class Encoder:
    """What the fine-tune stage starts from: a folder with weights + tokenizer, and its registry version."""

    path: str
    version: str | None


def corpus_key(cfg: PipelineConfig, data_md5: str, task_texts: list[str] | None) -> dict:
    """What the corpus (and so the vocabulary and the examples) depends on."""
    return {
        "data_md5": data_md5,
        "corpus": cfg.pretrain.corpus.model_dump(mode="json"),
        "task_texts": cache_key(texts=task_texts) if task_texts else None,
        "seed": cfg.pretrain.seed,
    }


@task(name="load-corpus", cache_policy=NO_CACHE, persist_result=False)
def load_pretraining_corpus(cfg: PipelineConfig, task_texts: list[str] | None) -> Corpus:
    """Read the configured corpora (documents kept whole) and hold out documents for perplexity."""
    docs = load_corpus(cfg.pretrain.corpus, task_texts, seed=cfg.pretrain.seed)
    minimum = 2 if cfg.pretrain.nsp else 1  # NotNext partners come from another document
    train, heldout = split_heldout(docs, cfg.pretrain.corpus.heldout_fraction, cfg.pretrain.seed, minimum)
    mlflow.log_metrics({"data/corpus_documents": len(docs), "data/corpus_heldout_documents": len(heldout)})
    get_run_logger().info("corpus: %d documents (%d held out)", len(docs), len(heldout))
    return Corpus(train, heldout)


@task(name="pretraining-tokenizer", cache_policy=NO_CACHE, persist_result=False)
def pretraining_tokenizer(cfg: PipelineConfig, corpus: Corpus, key: dict) -> str:
    """Folder or name of the tokenizer: a WordPiece vocabulary trained on the corpus (scratch,
    cached by corpus and vocabulary settings), or the base model's (continue)."""
    if cfg.pretrain.mode == "continue":
        return cfg.model.base
    target = CACHE_DIR / "tokenizers" / cache_key(**key, vocab_size=cfg.pretrain.vocab_size, lowercase=cfg.pretrain.lowercase)
    if not (target / "tokenizer.json").is_file():
        texts = (s for doc in corpus.train for s in doc.sentences)
        tokenizer = train_wordpiece(texts, cfg.pretrain.vocab_size, cfg.pretrain.lowercase,
                                    max_length=cfg.pretrain.max_position_embeddings)
        with atomic_dir(target) as tmp:
            tokenizer.save_pretrained(tmp)
    return str(target)


@task(name="validate-corpus", cache_policy=NO_CACHE, persist_result=False)
def validate_pretraining_corpus(cfg: PipelineConfig, corpus: Corpus, tokenizer_source: str) -> None:
    """Great Expectations suite on the corpus; raises (after logging the report) when it fails."""
    tokenizer = load_tokenizer(tokenizer_source)
    docs = [(d.source, d.doc_id, d.sentences) for d in corpus.train + corpus.heldout]
    p = cfg.pretrain
    min_tokens = math.ceil(p.max_steps * p.batch_size * p.max_seq_length / p.corpus.max_passes)
    report = validate_corpus(corpus_frame(docs, tokenizer), cfg.pretrain.corpus, min_tokens)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"{cfg.name}-corpus-validation.html"
    path.write_text(report.to_html(), encoding="utf-8")
    mlflow.log_artifact(str(path), "validation")
    mlflow.set_tag("corpus_validation", "passed" if report.success else "failed")
    if not report.success:
        raise DataValidationError(report, path)


@task(name="pretraining-examples", cache_policy=NO_CACHE, persist_result=False)
def pretraining_examples(cfg: PipelineConfig, corpus: Corpus, tokenizer_source: str, key: dict) -> Path:
    """NSP pairs or packed sequences for train and held-out documents, cached on disk by
    (data md5, corpus config, tokenizer, seed, example settings)."""
    tokenizer = load_tokenizer(tokenizer_source)
    p = cfg.pretrain
    target = CACHE_DIR / "examples" / cache_key(
        **key, tokenizer=resolve_base(tokenizer_source), vocab=len(tokenizer),
        nsp=p.nsp, max_seq_length=p.max_seq_length, short_seq_prob=p.short_seq_prob,
    )
    if not (target / "dataset_dict.json").is_file():
        examples = DatasetDict({
            "train": build_examples(corpus.train, tokenizer, p, p.seed),
            "heldout": build_examples(corpus.heldout, tokenizer, p, p.seed + 1),
        })
        save_atomically(examples, target)
    return target


@task(name="pretrain-encoder", cache_policy=NO_CACHE, persist_result=False)
def pretrain_encoder(cfg: PipelineConfig, tokenizer_source: str, examples_path: Path, tags: dict[str, str]) -> Encoder:
    """Build the scratch BERT or load the base checkpoint, pretrain with MLM (+ NSP), score the
    held-out documents, save the encoder and register it as `<name>-encoder` (fill-mask model)."""
    logger = get_run_logger()
    p = cfg.pretrain
    tokenizer: PreTrainedTokenizerBase = load_tokenizer(tokenizer_source)
    examples = load_tokenized(examples_path)
    if p.mode == "scratch":
        model = build_scratch_model(p, tokenizer)
    else:
        model = build_continue_model(cfg.model.base, p.nsp, p.seed)
    key = cache_key(examples=examples_path.name, pretrain=p.model_dump(mode="json"), base=cfg.model.base)
    checkpoints = CACHE_DIR / "checkpoints" / cfg.name / key
    with training_progress(cfg, "pretrain"):  # log lines and a progress artifact in the Prefect UI
        result, heldout = pretrain(
            model, tokenizer, examples["train"], examples["heldout"], p, checkpoints,
            log_metrics=lambda m, step: mlflow.log_metrics(m, step=step, synchronous=False),
        )
    tokens_per_s = result.tokens / result.seconds if result.seconds else 0.0
    mlflow.log_metrics({
        **{f"heldout_{k}": v for k, v in heldout.items()},
        "pretrain/tokens_per_s": tokens_per_s, "pretrain/seconds": result.seconds,
        "pretrain/checkpoint_seconds": result.checkpoint_seconds,
        "pretrain/steps": result.steps, "pretrain/resumed_from_step": result.resumed_from,
        "pretrain/examples": len(examples["train"]),
    })
    encoder_dir = CACHE_DIR / "encoders" / cfg.name / key
    save_encoder(model, tokenizer, encoder_dir)
    version = _register_encoder(cfg, encoder_dir, tokenizer, heldout, tags)
    logger.info("pretrained %s encoder: held-out perplexity %.2f, %.0f tokens/s, registered v%s",
                p.mode, heldout["perplexity"], tokens_per_s, version)
    return Encoder(str(encoder_dir), version)


def _register_encoder(cfg: PipelineConfig, encoder_dir: Path, tokenizer, heldout: dict, tags: dict[str, str]) -> str:
    """Log the encoder with MLflow's transformers flavor as a fill-mask model and register it."""
    masked_lm = BertForMaskedLM.from_pretrained(encoder_dir)
    example = [f"the film was {tokenizer.mask_token} ."]
    model_uri = tracking.log_transformers_model(masked_lm, tokenizer, "fill-mask", example, name="encoder")
    version_tags = {**tags, "pretrain_mode": cfg.pretrain.mode,
                    "heldout_perplexity": f"{heldout['perplexity']:.4f}",
                    "corpus": json.dumps(cfg.pretrain.corpus.sources)}
    mv = tracking.register_version(model_uri, f"{cfg.name}-encoder", version_tags)
    MlflowClient().set_registered_model_alias(f"{cfg.name}-encoder", "latest-pretrained", mv.version)
    return str(mv.version)
