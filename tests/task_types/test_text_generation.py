"""Text generation: loss masking, additive ROUGE/BLEU statistics, the template reader, its data
checks, generation settings and per-request params, on a tiny causal LM built in the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sacrebleu.metrics import BLEU

from tests.task_types import tiny_causal_lm as tiny
from tlflow.config import DataConfig, PipelineConfig, ValidateConfig
from tlflow.data.readers import load_labelled_data
from tlflow.data.validation.suite import validate_splits
from tlflow.modeling.batching import IGNORE_INDEX
from tlflow.task_types.base import RequestError, TaskSettings
from tlflow.task_types.registry import check_config, get_task_type
from tlflow.task_types.text_generation import metrics as gm
from tlflow.task_types.text_generation.task import (
    CHECK_TARGET_NOT_BLANK,
    CHECK_TARGET_NOT_COPY,
    CHECK_TRUNCATION,
    generation_samples,
    training_example,
)

pytestmark = [pytest.mark.unit]


TASK = get_task_type("text-generation")
LEGACY_TASK_JSON = Path(__file__).resolve().parents[1] / "assets" / "legacy_task_model" / "artifacts" / "task.json"


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return tiny.save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def lm(lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(lm_dir).eval(), AutoTokenizer.from_pretrained(lm_dir)


def _cfg(tmp_path: Path, csv: str, base: str = "unused", max_length: int = 128, **task) -> PipelineConfig:
    (tmp_path / "data.csv").write_text(csv, encoding="utf-8")
    cfg = PipelineConfig(
        data=DataConfig(format="csv", file=str(tmp_path / "data.csv"), split={"train": 0.6, "validation": 0.2,
                                                                             "test": 0.2, "seed": 1}),
        task={"type": "text-generation", **task},
        model={"base": base, "max_length": max_length},
    )
    return check_config(cfg)


def _settings(max_length: int = 64, **options) -> TaskSettings:
    return TaskSettings(task=TASK.name, max_length=max_length, batch_size=4, options=options)


# ----------------------------------------------------------------------------- loss masking


def test_loss_is_on_target_tokens_only(lm):
    _, tokenizer = lm
    prompt_ids = tokenizer("Stocks end up")["input_ids"]
    target_ids = tokenizer(" on oil worries", add_special_tokens=False)["input_ids"]
    ids, labels = training_example(tokenizer, "Stocks end up", " on oil worries", 64, use_chat_template=True)
    assert ids == prompt_ids + target_ids + [tokenizer.eos_token_id]
    assert labels == [IGNORE_INDEX] * len(prompt_ids) + target_ids + [tokenizer.eos_token_id]


def test_a_long_example_keeps_the_prompt_end_and_the_target_start(lm):
    _, tokenizer = lm
    ids, labels = training_example(tokenizer, "Wall St. Bears Claw Back Into the Black " * 5, "Oil prices soar " * 5,
                                   16, use_chat_template=False)
    assert len(ids) == len(labels) == 16
    assert labels[:8] == [IGNORE_INDEX] * 8 and IGNORE_INDEX not in labels[8:]


def test_the_chat_template_wraps_the_prompt_as_a_user_message(lm):
    _, tokenizer = lm
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}" \
                              "{% if add_generation_prompt %}<assistant>{% endif %}"
    ids, labels = training_example(tokenizer, "hi", "the cat", 64, use_chat_template=True)
    prompt = tokenizer("<user>hi<assistant>", add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt)] == prompt and labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    plain, _ = training_example(tokenizer, "hi", "the cat", 64, use_chat_template=False)
    assert plain[: len(tokenizer("hi")["input_ids"])] == tokenizer("hi")["input_ids"]


# ----------------------------------------------------------------------------- metrics


PREDICTIONS = ["the cat sat on the mat", "stocks fell sharply today", "oil prices soar", "", "a new record"]
REFERENCES = ["the cat is on the mat", "stocks rose today", "oil prices soar", "nothing here", "record oil prices"]


def _stats(preds=PREDICTIONS, refs=REFERENCES):
    n = len(preds)
    return gm.example_stats(preds, refs, [1.0] * n, [2] * n, [len(p.split()) for p in preds])


def test_rouge_statistics_sum_to_rouge_score_means_on_the_set_and_a_subset():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    stats = _stats()
    for rows in (list(range(len(PREDICTIONS))), [0, 2, 4]):
        metrics = TASK.metrics_from_sums(stats[rows].sum(axis=0), [])
        for key in ("rouge1", "rouge2", "rougeL"):
            direct = np.mean([scorer.score(REFERENCES[i], PREDICTIONS[i])[key].fmeasure for i in rows])
            assert metrics[key] == pytest.approx(direct, abs=1e-12), key
        assert metrics["exact_match"] == pytest.approx(sum(i == 2 for i in rows) / len(rows))


def test_bleu_from_summed_statistics_is_sacrebleus_corpus_bleu():
    stats = _stats()
    for rows in (list(range(len(PREDICTIONS))), [0, 1, 2]):
        direct = BLEU().corpus_score([PREDICTIONS[i] for i in rows], [[REFERENCES[i] for i in rows]]).score
        assert TASK.metrics_from_sums(stats[rows].sum(axis=0), [])["bleu"] == pytest.approx(direct, abs=1e-9)


def test_perplexity_and_gen_length_from_sums():
    metrics = TASK.metrics_from_sums(_stats().sum(axis=0), [])
    assert metrics["perplexity"] == pytest.approx(np.exp(0.5))
    assert metrics["gen_length"] == pytest.approx(np.mean([len(p.split()) for p in PREDICTIONS]))


# ----------------------------------------------------------------------------- reading and checks


def test_a_template_over_several_columns_fills_the_prompt(tmp_path):
    csv = "context,answer_text,question\n" + "\n".join(
        f'"The tower {i} is in Paris.",Paris,Where is tower {i}?' for i in range(10)
    ) + "\n"
    cfg = _cfg(tmp_path, csv, prompt_template="Context: {context}\nAnswer: {answer_text}\nQuestion:",
               **{})
    cfg.data.columns = {"target": "question"}
    task = TASK.configured(cfg)
    assert task.table_fields == ("context", "answer_text", "target")
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    row = loaded.splits["train"][0]
    number = row["target"].split()[-1].rstrip("?")
    assert row["prompt"] == f"Context: The tower {number} is in Paris.\nAnswer: Paris\nQuestion:"
    assert json.loads(row["prompt_fields"]) == {"context": f"The tower {number} is in Paris.", "answer_text": "Paris"}
    assert list(task.requests(loaded.splits["test"]).columns) == ["context", "answer_text"]


def test_a_plain_table_reads_prompt_and_target_through_columns(tmp_path):
    csv = "cls,title,description\n" + "\n".join(f"1,Title {i},Description number {i}" for i in range(10)) + "\n"
    cfg = _cfg(tmp_path, csv)
    cfg.data.columns = {"prompt": "description", "target": "title"}
    loaded = load_labelled_data(cfg.data, TASK.configured(cfg).dataset_spec())
    row = loaded.splits["train"][0]
    assert row["prompt"].startswith("Description number") and row["target"].startswith("Title")
    assert list(TASK.requests(loaded.splits["test"]).columns) == ["prompt"]


def _validate(task, frame: pd.DataFrame):
    frame = frame.assign(prompt_fields="")
    report = validate_splits({"train": frame}, [], ValidateConfig(), task.data_checks())
    return {c.check: c for c in report.checks}


def test_checks_fail_on_blank_and_copied_targets():
    frame = pd.DataFrame({"prompt": ["a story about oil", "stocks end up", "the cat"],
                          "target": ["oil soars", "  ", "The  cat"]})
    checks = _validate(TASK, frame)
    assert not checks[CHECK_TARGET_NOT_BLANK].success
    assert not checks[CHECK_TARGET_NOT_COPY].success
    assert checks[CHECK_TARGET_NOT_COPY].observed.startswith("1 of 3")
    assert checks["text not blank"].success  # the shared text checks apply to the prompt


def test_truncation_check_fails_above_the_allowed_share(tmp_path, lm_dir):
    long = "Wall St. Bears Claw Back Into the Black " * 10
    frame = pd.DataFrame({"prompt": [long] * 2 + [f"short {i}" for i in range(8)], "target": ["Oil"] * 10})
    cfg = _cfg(tmp_path, "prompt,target\na,b\n", base=str(lm_dir), max_length=32)
    checks = _validate(TASK.configured(cfg), frame)
    assert not checks[CHECK_TRUNCATION].success and checks[CHECK_TRUNCATION].observed.startswith("2 of 10")
    lenient = _cfg(tmp_path, "prompt,target\na,b\n", base=str(lm_dir), max_length=32, max_truncated_fraction=0.25)
    checks = _validate(TASK.configured(lenient), frame)
    assert checks[CHECK_TRUNCATION].success and checks[CHECK_TRUNCATION].observed.startswith("2 of 10")


# ----------------------------------------------------------------------------- settings and serving


def test_options_are_stored_in_task_json_and_old_files_still_load(tmp_path):
    cfg = _cfg(tmp_path, "prompt,target\na,b\n", max_new_tokens=7, num_beams=2)
    settings = TaskSettings.from_config(cfg)
    assert settings.options["max_new_tokens"] == 7 and settings.options["num_beams"] == 2
    assert settings.options["prompt_template"] is None
    assert TaskSettings.load(settings.save(tmp_path / "task.json")).options == settings.options
    legacy = TaskSettings.load(LEGACY_TASK_JSON)
    assert legacy.options == {}


def test_bad_options_are_config_errors(tmp_path):
    from tlflow.config import ConfigError

    with pytest.raises(ConfigError, match="prompt_template"):
        _cfg(tmp_path, "prompt,target\na,b\n", prompt_template="no fields here")
    with pytest.raises(ConfigError, match="num_beams"):
        _cfg(tmp_path, "prompt,target\na,b\n", num_beams=0)


def test_predict_generates_and_honours_params(lm):
    model, tokenizer = lm
    settings = _settings(max_new_tokens=5)
    requests = pd.DataFrame({"prompt": ["Stocks end up", "Oil prices soar to all-time record"]})
    out = TASK.predict(model, tokenizer, requests, settings)
    assert [list(r) for r in out] == [["generated_text"]] * 2
    assert len(tokenizer(out[0]["generated_text"], add_special_tokens=False)["input_ids"]) <= 6
    short = TASK.predict(model, tokenizer, requests, settings, params={"max_new_tokens": 1})
    assert all(len(r["generated_text"].split()) <= 1 for r in short)
    sampled = [TASK.predict(model, tokenizer, requests, settings, params={"do_sample": True, "seed": 3})
               for _ in range(2)]
    assert sampled[0] == sampled[1]  # seeded


def test_requests_are_refused_with_one_line(lm):
    model, tokenizer = lm
    settings = _settings(max_length=8)
    with pytest.raises(RequestError, match="unknown parameter 'beams'"):
        TASK.check_params({"beams": 2}, settings)
    with pytest.raises(RequestError, match="num_beams"):
        TASK.predict(model, tokenizer, pd.DataFrame({"prompt": ["hi"]}), settings, params={"num_beams": 0})
    with pytest.raises(RequestError, match="non-empty"):
        TASK.predict(model, tokenizer, pd.DataFrame({"prompt": ["  "]}), settings)
    with pytest.raises(RequestError, match="tokens"):
        TASK.predict(model, tokenizer, pd.DataFrame({"prompt": ["Wall St. Bears Claw Back " * 5]}), settings)
    with pytest.raises(RequestError, match="plus max_new_tokens 600 exceed the model's 512 positions"):
        TASK.predict(model, tokenizer, pd.DataFrame({"prompt": ["hi"]}), settings, params={"max_new_tokens": 600})
    with pytest.raises(RequestError, match="takes none"):
        get_task_type("text-classification").check_params({"max_new_tokens": 3}, settings)


def test_template_requests_carry_the_fields(lm):
    model, tokenizer = lm
    settings = _settings(prompt_template="Context: {context}\nAnswer: {answer}\nQuestion:", max_new_tokens=3)
    out = TASK.predict(model, tokenizer, pd.DataFrame({"context": ["The tower is in Paris."], "answer": ["Paris"]}),
                       settings)
    assert len(out) == 1
    with pytest.raises(RequestError, match="missing field 'context'"):
        TASK.predict(model, tokenizer, pd.DataFrame({"prompt": ["x"]}), settings)


def test_evaluate_scores_generations_with_additive_stats(lm):
    import datasets

    model, tokenizer = lm
    split = datasets.Dataset.from_dict({"prompt": ["Stocks end up", "Oil prices soar", "Wall St. Bears"],
                                        "target": ["near year lows", "to record", "Claw Back"],
                                        "prompt_fields": ["", "", ""]})
    evaluation = TASK.evaluate(model, tokenizer, split, [], _settings(max_new_tokens=4), n_mistakes=2)
    assert set(gm.ROUGE_TYPES) | {"bleu", "exact_match", "gen_length", "perplexity"} <= set(evaluation.metrics)
    assert evaluation.stats.shape == (3, len(gm.COLUMNS))
    assert TASK.metrics_from_sums(evaluation.stats.sum(0), []) == evaluation.metrics
    assert 1 < evaluation.metrics["perplexity"] < 10 * len(tokenizer)
    assert evaluation.mistakes == []
    assert [s["kind"] for s in evaluation.samples] == ["worst", "worst", "random"]  # 2 worst, the 1 left drawn
    assert [set(s) for s in evaluation.samples] == [{"kind", "rougeL", "prompt", "reference", "generated"}] * 3
    rouge_l = evaluation.stats[:, gm.COL["rougeL"]]
    worst = [s["rougeL"] for s in evaluation.samples[:2]]
    assert worst == sorted(worst) and worst[-1] <= round(float(rouge_l.max()), 4)
    assert {s["prompt"] for s in evaluation.samples} == set(split["prompt"])
    assert TASK.evaluate(model, tokenizer, split, [], _settings(max_new_tokens=4)).samples == []


def test_samples_are_the_worst_by_rouge_l_then_a_seeded_random_draw():
    stats = np.zeros((8, len(gm.COLUMNS)))
    stats[:, gm.COL["rougeL"]] = [0.9, 0.1, 0.5, 0.0, 0.7, 0.1, 0.8, 0.6]
    prompts = [f"p{i}" for i in range(8)]
    samples = generation_samples(prompts, prompts, prompts, stats, 2, seed=3)
    assert [(s["kind"], s["prompt"], s["rougeL"]) for s in samples[:2]] == [("worst", "p3", 0.0), ("worst", "p1", 0.1)]
    drawn = [s["prompt"] for s in samples[2:]]
    assert len(drawn) == 2 and not {"p1", "p3"} & set(drawn) and drawn == sorted(drawn)
    assert generation_samples(prompts, prompts, prompts, stats, 2, seed=3) == samples  # seeded
    others = {tuple(s["prompt"] for s in generation_samples(prompts, prompts, prompts, stats, 2, seed=k)[2:])
              for k in range(10)}
    assert len(others) > 1  # the seed decides the draw
    assert generation_samples(prompts, prompts, prompts, stats, 0, seed=3) == []
