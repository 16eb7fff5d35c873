"""The task types, one line each, and the config check that names them (config `task.type`)."""

from __future__ import annotations

from tlflow.config import ConfigError, PipelineConfig
from tlflow.config.confinement import check_paths
from tlflow.modeling.bases import check_base
from tlflow.task_types.base import TaskType
from tlflow.task_types.question_answering import QuestionAnswering
from tlflow.task_types.sentence_pair import SentencePair
from tlflow.task_types.text_classification import TextClassification
from tlflow.task_types.text_generation import TextGeneration
from tlflow.task_types.token_classification import TokenClassification

#: Every task type; the first is the default of an empty `task.type`.
TASK_TYPES: tuple[TaskType, ...] = (
    TextClassification(),
    SentencePair(),
    TokenClassification(),
    QuestionAnswering(),
    TextGeneration(),
)
_BY_NAME = {t.name: t for t in TASK_TYPES}


def task_type_names() -> list[str]:
    return list(_BY_NAME)


def get_task_type(name: str) -> TaskType:
    """The task type called `name`; ValueError listing the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown task type '{name}' (known: {', '.join(_BY_NAME)})") from None


def task_type_for(cfg: PipelineConfig) -> TaskType:
    """The task type of `cfg`, bound to its options and model where its data depend on them (a
    prompt template, the tokenizer): what every stage that reads, checks or trains on the data of
    `cfg` uses."""
    return get_task_type(cfg.task.type).configured(cfg)


def check_config(cfg: PipelineConfig) -> PipelineConfig:
    """Check the `task` section of `cfg` against its task type, filling in what was left empty.

    An empty `task.type` becomes the first task type and an empty `primary_metric` its default;
    the task type's options are validated and written back with their defaults (so they are
    logged as run parameters). Raises ConfigError (one line) for an unknown type, option or
    metric, or a `fairness.eec` audit the task type cannot run or whose labels the data lack.
    Returns `cfg`, changed in place.
    """
    task = cfg.task
    if task.type is None:
        task.type = TASK_TYPES[0].name
    if task.type not in _BY_NAME:
        raise ConfigError(f"task.type: unknown task type '{task.type}' (known: {', '.join(_BY_NAME)})")
    task_type = _BY_NAME[task.type]
    options = task_type.options(task)
    for key, value in options.model_dump().items():
        setattr(task, key, value)
    allowed = task_type.primary_metrics
    if task.primary_metric is None:
        task.primary_metric = allowed[0]
    elif task.primary_metric not in allowed:
        raise ConfigError(
            f"task: primary_metric '{task.primary_metric}' is not a metric of {task.type} "
            f"(one of: {', '.join(allowed)})"
        )
    eec = cfg.fairness.eec
    if eec is not None and not task_type.text_probabilities:
        raise ConfigError(f"fairness.eec: the EEC audit classifies single sentences; {task.type} models do not")
    if eec is not None and cfg.data.label_names and set(eec.label_map.values()) - set(cfg.data.label_names):
        unknown = ", ".join(sorted(set(eec.label_map.values()) - set(cfg.data.label_names)))
        raise ConfigError(f"fairness.eec.label_map: {unknown} is not a label of the model "
                          f"(data.label_names: {', '.join(cfg.data.label_names)})")
    if cfg.finetune.privacy is not None and not task_type.private_training:
        supported = ", ".join(t.name for t in TASK_TYPES if t.private_training)
        raise ConfigError(
            f"finetune.privacy: differentially private fine-tuning does not support task.type {task.type} "
            f"(supported: {supported})"
        )
    return cfg


def check_inputs(cfg: PipelineConfig) -> PipelineConfig:
    """Check what `cfg` reads before any of it is opened: every data file, corpus folder, EEC file
    and local `model.base` folder under its allowed roots (`tlflow.config.confinement`), and a
    `model.base` that resolves offline (`tlflow.modeling.bases.check_base`). ConfigError (one line,
    exit 2) otherwise. The flows and the command line call it right after `check_config`; a
    registered version's stored config (re-scoring) is checked by `check_config` alone."""
    check_paths(cfg)
    check_base(cfg.model.base)
    return cfg
