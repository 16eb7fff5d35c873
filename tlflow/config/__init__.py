"""The typed configuration tree of one experiment (schema) and its YAML loading with overrides."""

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
    load_config,
    parse_config,
)

__all__ = [
    "ConfigError", "CorpusConfig", "DataConfig", "EvaluateConfig", "FinetuneConfig", "ModelConfig", "PipelineConfig",
    "PretrainConfig", "PromoteConfig", "SplitFractions", "TaskConfig", "ValidateConfig", "flatten", "load_config",
    "parse_config",
]
