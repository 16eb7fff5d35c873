"""Speed-ups are opt-in and confined: only `tlflow/training/speedups/` reaches into private
(underscore) names of other libraries (Hugging Face above all), and modeling returns plain models."""

import ast
import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification
from transformers.models.bert.modeling_bert import BertLayer

from tlflow.config import ModelConfig
from tlflow.modeling.models import build_task_model, load_task_head
from tlflow.serving.optimized import load_variant
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type
from tlflow.training.speedups import apply_inference_speedups, inference_speedups, training_speedups
from tlflow.training.speedups.cls_only import ClsOnlyBertLayer

pytestmark = [pytest.mark.unit]

TLFLOW = Path(__file__).resolve().parents[2] / "tlflow"
SPEEDUPS = TLFLOW / "training" / "speedups"
#: Private names of the standard library that are fine to call.
STDLIB = {"os", "sys"}


def _private_uses(path: Path) -> list[str]:
    """`x._name` where x is not self/cls/a tlflow import, and `from lib._mod import _name`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
           and (n.module or "").startswith("tlflow") for a in n.names}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls", *own, *STDLIB}):
                found.append(f"{path.relative_to(TLFLOW)}:{node.lineno} {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("tlflow"):
            names = [*(node.module or "").split("."), *(a.name for a in node.names)]
            if any(n.startswith("_") and not n.startswith("__") for n in names):
                found.append(f"{path.relative_to(TLFLOW)}:{node.lineno} from {node.module} import ...")
    return found


def test_only_speedups_touch_private_internals():
    found = [use for path in sorted(TLFLOW.rglob("*.py")) if SPEEDUPS not in path.parents
             for use in _private_uses(path)]
    assert found == []


def _tiny_cfg() -> ModelConfig:
    return ModelConfig(init="random", num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, max_length=32)


def test_modeling_returns_plain_models_and_serving_opts_in(tmp_path):
    head = get_task_type("text-classification").model_head
    model = build_task_model(_tiny_cfg(), head, ["neg", "pos"], 100, 0)
    assert type(model.bert.encoder.layer[-1]) is BertLayer
    with training_speedups(model, ["cls_only"]):
        assert isinstance(model.bert.encoder.layer[-1], ClsOnlyBertLayer)
        model.save_pretrained(tmp_path)  # saved while patched: still a plain model on disk
    assert type(model.bert.encoder.layer[-1]) is BertLayer
    assert type(load_task_head(head[0], tmp_path).bert.encoder.layer[-1]) is BertLayer
    assert type(load_variant("fp32", "text-classification", tmp_path).bert.encoder.layer[-1]) is BertLayer
    served = load_variant("fp32", "text-classification", tmp_path, speedups=("cls_only",))
    assert isinstance(served.bert.encoder.layer[-1], ClsOnlyBertLayer)
    ids = torch.tensor([[2, 17, 40, 9, 3]])
    torch.testing.assert_close(served(input_ids=ids).logits, model.eval()(input_ids=ids).logits, atol=1e-6, rtol=1e-5)


def test_inference_speedups_in_task_settings(tmp_path):
    assert inference_speedups(["cls_only", "kept_embedding_grad", "fast_dropout"]) == ("cls_only",)
    assert inference_speedups([]) == () and inference_speedups(["fast_dropout"]) == ()
    old = tmp_path / "old.json"  # written before the field existed
    old.write_text(json.dumps({"task": "text-classification", "max_length": 16}), encoding="utf-8")
    assert TaskSettings.load(old).inference_speedups == ()
    saved = TaskSettings("text-classification", 16, inference_speedups=("cls_only",)).save(tmp_path / "new.json")
    assert tuple(TaskSettings.load(saved).inference_speedups) == ("cls_only",)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    assert type(apply_inference_speedups(model, ()).bert.encoder.layer[-1]) is BertLayer
    assert isinstance(apply_inference_speedups(model, ["cls_only"]).bert.encoder.layer[-1], ClsOnlyBertLayer)
