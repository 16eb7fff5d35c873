"""Text generation: a causal language model learns to continue a prompt with its target.

Canonical rows hold `prompt` and `target`. A table gives them through `data.columns`, or the
prompt is `task.prompt_template` filled with several raw columns (`{field}` placeholders) when the
file is read; `prompt_fields` keeps those raw values (JSON) so the logged model's input example
carries them. A training example is `prompt + target + eos` with the loss on the target tokens
only; with `task.use_chat_template` and a tokenizer that has a chat template, the prompt is a user
message followed by the generation prompt. Evaluation generates with the KV cache in left-padded,
length-sorted batches and scores ROUGE, BLEU, exact match, generated length and the perplexity of
the targets (`metrics`); its `samples` are the worst generations by ROUGE-L and a seeded random
few. A request may override the generation settings (`GENERATION_KEYS`, MLflow `params`).
"""

from __future__ import annotations

import json
import string
from functools import cached_property
from typing import Any

import datasets
import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from tlflow.config import PipelineConfig
from tlflow.data.pii.fields import TextFields
from tlflow.data.spec import SOURCE_FEATURES, STRING, RawTable
from tlflow.data.validation.checks import ProblemCheck, TaskChecks
from tlflow.errors import TlflowError
from tlflow.modeling.batching import IGNORE_INDEX, collate, sorted_batches
from tlflow.task_types.base import Evaluation, RequestError, TaskSettings, TaskType
from tlflow.task_types.text_generation import metrics as gm

CHECK_TARGET_NOT_BLANK = "target not blank"
CHECK_TARGET_NOT_COPY = "target not a copy of the prompt"
CHECK_TRUNCATION = "prompt and target within max_length"
#: Generation settings a request may override (MLflow `params`).
GENERATION_KEYS = ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_p", "seed")


def template_fields(template: str | None) -> tuple[str, ...]:
    """The `{field}` names of a prompt template, in order of first use."""
    if not template:
        return ()
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    return tuple(dict.fromkeys(names))


def _value(value: Any) -> str | None:
    """A raw value as template text: a list (e.g. several reference answers) gives its first item."""
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) else None
    return None if value is None else str(value)


def fill_template(template: str, values: dict[str, Any]) -> str | None:
    """The template with its fields filled; None when a field is missing."""
    text = {k: _value(v) for k, v in values.items()}
    if any(v is None for v in text.values()):
        return None
    return template.format(**text)


class GenerationParams(BaseModel):
    """Generation settings (config `task.<name>`, or per request as MLflow params)."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(32, ge=1, le=2048, description="Most tokens generated per prompt.")
    num_beams: int = Field(1, ge=1, le=32, description="Beams of beam search (1: greedy, or sampling).")
    do_sample: bool = Field(False, description="Sample the next token (seeded) instead of greedy/beam search.")
    temperature: float = Field(1.0, gt=0, le=10, description="Softmax temperature when sampling.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: smallest token set with this probability.")
    seed: int = Field(42, ge=0, description="Seed of sampling (the same prompts and seed give the same texts).")


class GenerationOptions(GenerationParams):
    """Options of text generation (config `task.<option>`)."""

    prompt_template: str | None = Field(
        None,
        description="Prompt built from raw columns with {field} placeholders, e.g. 'Context: {context}\\nAnswer: "
        "{answer}\\nQuestion:' (filled when the data is read; requests then carry those fields). Empty: the "
        "`prompt` column as it is.",
    )
    use_chat_template: bool = Field(
        True, description="Wrap the prompt as a user message with the tokenizer's chat template, when it has one."
    )
    max_truncated_fraction: float = Field(
        0.05, ge=0, le=1,
        description="Data validation fails when more examples than this share exceed model.max_length tokens "
        "(prompt + target + eos) and would be truncated.",
    )

    @field_validator("prompt_template")
    @classmethod
    def _template_has_fields(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            names = [n for _, n, _, _ in string.Formatter().parse(value) if n is not None]
        except ValueError as err:
            raise ValueError(f"bad prompt_template: {err}") from None
        if not names or any(not n.isidentifier() for n in names):
            raise ValueError("prompt_template needs {field} placeholders naming raw columns (no '{}' or '{0}')")
        return value


class _NoRandomInit:
    """Stands in for the random-init class of `model_head`: a causal LM is never built from scratch here."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise TlflowError("text-generation fine-tunes a pretrained causal LM: set model.base and model.init: pretrained")


class TextGeneration(TaskType):
    name = "text-generation"
    headline_metrics = ("rougeL", "bleu", "exact_match", "perplexity")
    request_columns = {
        "prompt": "the prompt to continue (with task.prompt_template: one column per template field instead)",
    }
    response_fields = {"generated_text": "the generated continuation (special tokens removed)"}
    features = datasets.Features(
        {"prompt": STRING, "target": STRING, "prompt_fields": STRING, **SOURCE_FEATURES}
    )
    table_fields = ("prompt", "target")
    overlap_columns = ("prompt",)
    text_fields = TextFields(texts=("prompt", "target"), json_objects=("prompt_fields",))
    has_label_names = False
    primary_metrics = ("rougeL", "rouge1", "rouge2", "bleu", "exact_match")
    model_head = (AutoModelForCausalLM, _NoRandomInit)
    output_names = ("logits",)
    target_column = "target"
    Options = GenerationOptions
    zero_shot_baseline = True

    def __init__(self, options: GenerationOptions | None = None, tokenizer_base: str | None = None,
                 max_length: int | None = None):
        """The registry's instance has the default options; `configured` binds a config's."""
        self.bound = options or GenerationOptions()
        self.tokenizer_base, self.max_length = tokenizer_base, max_length
        fields = template_fields(self.bound.prompt_template)
        self.table_fields = (*fields, "target") if fields else ("prompt", "target")

    def configured(self, cfg: PipelineConfig) -> TextGeneration:
        return TextGeneration(self.options(cfg.task), cfg.model.base, cfg.model.max_length)

    # ----------------------------------------------------------------------------- data

    def from_table(self, table: RawTable) -> dict[str, list]:
        template = self.bound.prompt_template
        fields = template_fields(template)
        if fields:
            raw = {f: table.field(f) for f in fields}
            rows = [{f: raw[f][i] for f in fields} for i in range(len(table.rows))]
            prompts = [fill_template(template, r) for r in rows]
            kept = [json.dumps({k: _value(v) for k, v in r.items()}, ensure_ascii=False) for r in rows]
        else:
            prompts = [_value(v) for v in table.field("prompt")]
            kept = [""] * len(prompts)
        return {"prompt": prompts, "target": [_value(v) for v in table.field("target")], "prompt_fields": kept}

    @cached_property
    def _tokenizer(self) -> PreTrainedTokenizerBase:
        from tlflow.modeling.models import load_tokenizer

        return load_tokenizer(self.tokenizer_base)

    def _truncated(self, df: pd.DataFrame, label_names: list[str]) -> list[str | None]:
        """Rows whose training example (prompt + target + eos) exceeds max_length tokens; only
        reported when they are more than `max_truncated_fraction` of the split (the suite's
        `mostly`)."""
        tokenizer, limit = self._tokenizer, self.max_length
        out: list[str | None] = []
        for prompt, target in zip(df["prompt"].tolist(), df["target"].tolist()):
            if not isinstance(prompt, str) or not isinstance(target, str):
                out.append(None)
                continue
            p = len(prompt_ids(tokenizer, prompt, self.bound.use_chat_template))
            t = len(tokenizer(target, add_special_tokens=False)["input_ids"]) + 1
            out.append(f"prompt {p} + target {t} tokens > max_length {limit}" if p + t > limit else None)
        return out

    def data_checks(self) -> TaskChecks:
        problems = [ProblemCheck(CHECK_TARGET_NOT_COPY, "target_copy", "target", ("prompt", "target"), _copies)]
        if self.tokenizer_base and self.max_length:
            problems.append(ProblemCheck(CHECK_TRUNCATION, "truncation", "target", ("prompt", "target"),
                                         self._truncated, mostly=1.0 - self.bound.max_truncated_fraction))
        return TaskChecks(
            text_column="prompt",
            overlap_columns=self.overlap_columns,
            not_blank=(("target", CHECK_TARGET_NOT_BLANK),),
            problems=tuple(problems),
        )

    def corpus_texts(self, split) -> list[str]:
        return [f"{p} {t}" for p, t in zip(split["prompt"], split["target"]) if p and t]

    def requests(self, split) -> pd.DataFrame:
        """The prompts, or the raw template fields the prompts were filled from."""
        kept = [json.loads(f) for f in split["prompt_fields"] if f]
        if kept and len(kept) == len(split):
            return pd.DataFrame(kept)
        return split.select_columns(["prompt"]).to_pandas()

    # ----------------------------------------------------------------------------- model

    def settings_options(self, settings: TaskSettings) -> GenerationOptions:
        return GenerationOptions.model_validate({k: v for k, v in settings.options.items()
                                                 if k in GenerationOptions.model_fields})

    def train_features(self, split, label_names, tokenizer, settings) -> dict[str, list]:
        use_chat = self.settings_options(settings).use_chat_template
        ids, labels = [], []
        for prompt, target in zip(split["prompt"], split["target"]):
            x, y = training_example(tokenizer, prompt, target, settings.max_length, use_chat)
            ids.append(x)
            labels.append(y)
        return {"input_ids": ids, "labels": labels}

    def request_params(self, settings: TaskSettings) -> dict[str, Any]:
        opts = self.settings_options(settings)
        return {k: getattr(opts, k) for k in GENERATION_KEYS}

    def generation(self, settings: TaskSettings, params: dict[str, Any] | None = None) -> GenerationParams:
        """The settings' generation parameters with a request's `params` over them (RequestError: bad value)."""
        merged = {**self.request_params(settings), **(params or {})}
        try:
            return GenerationParams.model_validate(merged)
        except ValidationError as err:
            first = err.errors()[0]
            raise RequestError(f"parameter '{first['loc'][0]}': {first['msg']}") from None

    def predict(self, model, tokenizer, requests, settings, params=None) -> list[dict[str, Any]]:
        opts = self.settings_options(settings)
        fields = template_fields(opts.prompt_template)
        columns = {f: f"the template field {f}" for f in fields} or self.request_columns
        requests = self.check_requests(requests, columns)
        gen = self.generation(settings, params)
        if fields:
            prompts = [fill_template(opts.prompt_template, row) for row in requests.to_dict("records")]
        else:
            prompts = list(requests["prompt"])
        encoded = [prompt_ids(tokenizer, p, opts.use_chat_template) for p in prompts]
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        for row, ids in enumerate(encoded):
            if len(ids) > settings.max_length:
                raise RequestError(f"row {row}: the prompt has {len(ids)} tokens (at most {settings.max_length})")
            if positions and len(ids) + gen.max_new_tokens > positions:
                raise RequestError(f"row {row}: the prompt's {len(ids)} tokens plus max_new_tokens "
                                   f"{gen.max_new_tokens} exceed the model's {positions} positions")
        texts, _ = generate(model, tokenizer, encoded, gen, settings.batch_size)
        return [{"generated_text": t} for t in texts]

    def evaluate(self, model, tokenizer, split, label_names, settings, n_mistakes=0) -> Evaluation:
        opts = self.settings_options(settings)
        prompts, targets = list(split["prompt"]), list(split["target"])
        encoded = [prompt_ids(tokenizer, p, opts.use_chat_template)[-settings.max_length:] for p in prompts]
        texts, lengths = generate(model, tokenizer, encoded, self.generation(settings), settings.batch_size)
        nll, tokens = target_nll(model, tokenizer, self.train_features(split, label_names, tokenizer, settings),
                                 settings.batch_size)
        stats = gm.example_stats(texts, targets, nll, tokens, lengths)
        return Evaluation(self.metrics_from_sums(stats.sum(axis=0), label_names), self.headline_metrics, stats,
                          samples=generation_samples(prompts, targets, texts, stats, n_mistakes, opts.seed))

    def metrics_from_sums(self, sums, label_names) -> dict[str, float]:
        """Columns of the statistics: `metrics.COLUMNS` (BLEU from summed n-gram statistics, exact)."""
        return gm.metrics_from_sums(np.asarray(sums, dtype=np.float64))


# --------------------------------------------------------------------------------- helpers


def _copies(df: pd.DataFrame, label_names: list[str]) -> list[str | None]:
    return ["the target repeats the prompt" if isinstance(p, str) and isinstance(t, str) and t.strip()
            and gm.normalize_answer(p) == gm.normalize_answer(t) else None
            for p, t in zip(df["prompt"].tolist(), df["target"].tolist())]


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, use_chat_template: bool) -> list[int]:
    """Token ids of a prompt as the model sees it before its answer: a user message plus the
    generation prompt when the tokenizer has a chat template (and it is wanted), else the text
    with the tokenizer's own special tokens."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt)["input_ids"])


def training_example(tokenizer: PreTrainedTokenizerBase, prompt: str, target: str, max_length: int,
                     use_chat_template: bool) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of `prompt + target + eos`, labels IGNORE_INDEX on the prompt. Longer
    than `max_length`: the target keeps at least half of it, the prompt keeps its end."""
    p = prompt_ids(tokenizer, prompt, use_chat_template)
    t = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        t.append(tokenizer.eos_token_id)
    if len(p) + len(t) > max_length:
        t = t[: max_length - min(len(p), max_length // 2)]
        p = p[len(p) - (max_length - len(t)):] if max_length > len(t) else []
    return p + t, [IGNORE_INDEX] * len(p) + t


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TlflowError("the tokenizer has neither a pad nor an eos token: generation cannot pad batches")
    return pad


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
             gen: GenerationParams, batch_size: int) -> tuple[list[str], list[int]]:
    """Generated texts and their lengths in tokens (up to eos), in prompt order: left-padded
    batches sorted by length, KV cache on, greedy/beam search or seeded sampling."""
    if not prompts:
        return [], []
    pad = _pad_id(tokenizer)
    eos = tokenizer.eos_token_id
    config = GenerationConfig(
        max_new_tokens=gen.max_new_tokens, num_beams=gen.num_beams, do_sample=gen.do_sample,
        pad_token_id=pad, eos_token_id=eos, use_cache=True,
        **({"temperature": gen.temperature, "top_p": gen.top_p} if gen.do_sample else {}),
    )
    texts: list[str] = [""] * len(prompts)
    lengths: list[int] = [0] * len(prompts)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(gen.seed)
            for batch in sorted_batches([len(p) for p in prompts], batch_size):
                padded = tokenizer.pad({"input_ids": [prompts[i] for i in batch]}, padding=True, return_tensors="pt")
                out = model.generate(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                                     generation_config=config)
                new = out[:, padded["input_ids"].shape[1]:].tolist()
                for row, i in enumerate(batch):
                    ids = new[row]
                    if eos is not None and eos in ids:
                        ids = ids[: ids.index(eos)]
                    while ids and ids[-1] == pad:
                        ids = ids[:-1]
                    lengths[i] = len(ids)
                    texts[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return texts, lengths


def target_nll(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, features: dict[str, list],
               batch_size: int) -> tuple[list[float], list[int]]:
    """Per example: the summed NLL of its target tokens under teacher forcing, and their count."""
    n = len(features["input_ids"])
    nll, count = [0.0] * n, [0] * n
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in sorted_batches([len(x) for x in features["input_ids"]], batch_size):
                inputs = collate(features, batch, _pad_id(tokenizer))
                labels = inputs.pop("labels")
                logits = model(**inputs).logits[:, :-1].float()
                gold = labels[:, 1:]
                loss = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), gold.clamp(min=0), reduction="none"
                ) * (gold != IGNORE_INDEX)
                for row, i in enumerate(batch):
                    nll[i] = float(loss[row].sum())
                    count[i] = int((gold[row] != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    return nll, count


def generation_samples(prompts: list[str], targets: list[str], texts: list[str], stats: np.ndarray, limit: int,
                       seed: int) -> list[dict]:
    """What a reader checks generations on: the `limit` examples with the lowest ROUGE-L (kind
    `worst`, lowest first, ties in split order), then `limit` of the others drawn at random with
    `seed` (kind `random`, in split order). Each row: kind, rougeL, prompt, reference, generated."""
    if not limit:
        return []
    rouge_l = stats[:, gm.COL["rougeL"]]
    worst = np.argsort(rouge_l, kind="stable")[:limit].tolist()
    rest = sorted(set(range(len(prompts))) - set(worst))
    drawn = np.random.default_rng(seed).choice(rest, size=min(limit, len(rest)), replace=False) if rest else []
    return [{"kind": kind, "rougeL": round(float(rouge_l[i]), 4), "prompt": prompts[i], "reference": targets[i],
             "generated": texts[i]}
            for kind, rows in (("worst", worst), ("random", sorted(int(i) for i in drawn))) for i in rows]
