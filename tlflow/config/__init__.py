"""The typed configuration tree of one experiment (schema) and its YAML loading with overrides."""

from tlflow.config.loading import load_config, parse_config
from tlflow.config.schema import (
    ConfigError,
    CorpusConfig,
    DataConfig,
    EvaluateConfig,
    FinetuneConfig,
    ModelConfig,
    PipelineConfig,
    PretrainConfig,
    PromoteConfig,
    SplitFractions,
    TaskConfig,
    ValidateConfig,
    flatten,
)

__all__ = [
    "ConfigError", "CorpusConfig", "DataConfig", "EvaluateConfig", "FinetuneConfig", "ModelConfig", "PipelineConfig",
    "PretrainConfig", "PromoteConfig", "SplitFractions", "TaskConfig", "ValidateConfig", "flatten", "load_config",
    "parse_config",
]
