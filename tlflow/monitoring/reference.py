"""The reference of a model's prediction window: its descriptors on the rows it was trained on.

The rows are the training split of the version's own config (`tlflow.registry.registration.
version_config`: the config logged with its training run), read by the pipeline's readers from the
data as it is now; `Reference.data_md5` says which data version that is, so a report can say when
it differs from the version's `data_md5` tag (the data moved on since the champion was trained).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from tlflow.config import PipelineConfig
from tlflow.data.readers import load_labelled_data
from tlflow.data.version import data_version
from tlflow.monitoring.descriptors import describe, prediction_labels, request_texts
from tlflow.task_types.registry import task_type_for


class Predictor(Protocol):
    """What the reference needs of a loaded model (`tlflow.serving.TaskModel`)."""

    model: object
    tokenizer: object
    settings: object

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame: ...


@dataclass
class Reference:
    frame: pd.DataFrame  # `describe` of the sampled training rows
    data_md5: str  # the data version the rows were read from


def reference_window(cfg: PipelineConfig, predictor: Predictor, rows: int, seed: int) -> Reference:
    """Up to `rows` training rows of `cfg` (a seeded sample), described with `predictor`'s
    tokenizer and encoder, with `predictor`'s own predictions (predictions are compared with
    predictions, not with labels)."""
    task_type = task_type_for(cfg)
    train = load_labelled_data(cfg.data, task_type.dataset_spec()).splits["train"]
    if len(train) > rows:
        train = train.shuffle(seed=seed).select(range(rows))
    requests = task_type.requests(train)
    predictions = predictor.predict(None, requests)
    texts = request_texts(requests, tuple(task_type.request_columns))
    frame = describe(texts, prediction_labels(predictions), predictor.model, predictor.tokenizer,
                     predictor.settings.max_length)
    return Reference(frame=frame, data_md5=data_version(cfg.data).md5)
