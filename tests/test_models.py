"""The packaged base model loads offline and learns SST-2 from a handful of real rows."""

import os

import numpy as np
import pytest

from tlflow.config import load_config
from tlflow.data.readers import load_labelled_data
from tlflow.modeling.models import ModelError, load_tokenizer, resolve_base
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import get_task_type
from tlflow.training.finetuning import train_task_model

pytestmark = [pytest.mark.unit]


def test_minilm_resolves_to_the_packaged_weights():
    path = resolve_base("minilm-l6")
    assert os.path.isfile(os.path.join(path, "model.safetensors"))
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_unknown_model_is_a_clear_error_offline():
    with pytest.raises(ModelError, match="offline"):
        load_tokenizer("no-such-org/no-such-model")


@pytest.mark.needs_data
@pytest.mark.slow  # fine-tunes MiniLM
def test_minilm_finetunes_on_256_sst2_rows_above_chance(project):
    cfg = load_config("configs/sst2.yaml", [
        "data.max_train_rows=256", "data.max_eval_rows=200", "finetune.epochs=2", "finetune.batch_size=16",
        "finetune.learning_rate=2e-4", "finetune.checkpoint_every_steps=1000", "model.max_length=64",
    ])
    loaded = load_labelled_data(cfg.data, get_task_type(cfg.task.type).dataset_spec())
    tokenizer = load_tokenizer("minilm-l6")
    task, settings = get_task_type(cfg.task.type), TaskSettings.from_config(cfg)
    features = task.train_features(loaded.splits["train"], loaded.label_names, tokenizer, settings)
    model, result = train_task_model(cfg, features, loaded.splits["validation"], loaded.label_names, tokenizer,
                                     "minilm-l6", project / "ckpt", progress=False)
    test = loaded.splits["test"]
    evaluation = task.evaluate(model, tokenizer, test, loaded.label_names, settings)
    majority = np.unique(test["label"], return_counts=True)[1].max() / len(test)
    assert result.steps == 32
    assert evaluation.metrics["accuracy"] > max(0.65, majority + 0.1), evaluation.metrics
