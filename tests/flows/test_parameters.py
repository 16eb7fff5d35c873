"""The flow's parameter is the config model, so the Prefect UI renders it as a documented form."""

import pytest
from prefect.utilities.callables import parameter_schema

from flows.training import training_pipeline

pytestmark = [pytest.mark.unit]


def test_config_is_the_flow_parameter_with_descriptions():
    schema = parameter_schema(training_pipeline.fn).model_dump()
    assert list(schema["properties"]) == ["config", "force", "lineage"]  # lineage: set by model_selection
    assert schema["properties"]["force"]["default"] is False and schema["properties"]["force"]["description"]
    pipeline = schema["definitions"]["PipelineConfig"]["properties"]
    assert {"name", "data", "validate", "task", "model", "pretrain", "finetune", "evaluate", "promote"} <= set(pipeline)
    finetune = schema["definitions"]["FinetuneConfig"]["properties"]
    assert all(field.get("description") for field in finetune.values())
    assert finetune["learning_rate"]["default"] == 5e-5
