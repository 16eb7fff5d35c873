"""`transfer_report`: fine-tune one task from four starting points and compare them."""

from __future__ import annotations

from prefect import flow

from flows.run_labels import run_name, tag_run
from flows.training import training_pipeline
from tasks.report import collect_variant, encoder_path, publish_report
from tasks.tracking import lineage_tags, pipeline_run
from tlflow.config import PipelineConfig
from tlflow.evaluation.transfer import VARIANTS, VariantResult, variant_config
from tlflow.runtime import apply_defaults
from tlflow.task_types.registry import check_config, check_inputs


@flow(name="transfer_report", flow_run_name=run_name)
def transfer_report(config: PipelineConfig = PipelineConfig()) -> list[VariantResult]:
    """Random init, scratch-pretrained encoder, base checkpoint, and base checkpoint after
    continued in-domain pretraining: each a `training_pipeline` child run with the same
    fine-tuning budget; the table and bar chart go to MLflow and the Prefect UI."""
    apply_defaults()
    check_inputs(check_config(config))
    tag_run(config)
    with pipeline_run(config, lineage_tags(config), stage="transfer-report"):
        outcomes = {"scratch": training_pipeline(variant_config(config, "scratch"))}
        random = variant_config(config, "random", scratch_encoder=encoder_path(outcomes["scratch"]))
        outcomes["random"] = training_pipeline(random)
        outcomes["base"] = training_pipeline(variant_config(config, "base"))
        outcomes["continued"] = training_pipeline(variant_config(config, "continued"))
        results = [collect_variant(config, variant, outcomes[variant]) for variant in VARIANTS]
        publish_report(config, results)
        return results


if __name__ == "__main__":
    transfer_report()
