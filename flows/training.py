"""`training_pipeline`: validate -> pretrain (optional) -> tokenize -> fine-tune -> evaluate
-> fairness audit (optional) -> register/promote."""

from __future__ import annotations

from prefect import flow

from flows.pretraining import pretraining_stage
from flows.run_labels import run_name, tag_run
from tasks.evaluate import evaluate_model
from tasks.fairness import audit_fairness
from tasks.finetune import finetune_model
from tasks.register import RegistrationOutcome, find_unchanged, register_and_promote
from tasks.tokenize import tokenize_data
from tasks.tracking import lineage_tags, pipeline_run, record_tags
from tasks.validate import train_on_validation, validate_data
from tlflow.config import PipelineConfig
from tlflow.runtime import apply_defaults
from tlflow.task_types.registry import check_config, check_inputs, task_type_for


@flow(name="training_pipeline", flow_run_name=run_name)
def training_pipeline(config: PipelineConfig = PipelineConfig(), force: bool = False,
                      lineage: dict[str, str] | None = None) -> RegistrationOutcome:
    """Take a labelled dataset from `data/` to a fine-tuned model that is evaluated, registered
    and promoted in MLflow. One MLflow run per flow run; one task per stage.

    When a registered version was trained on the same data, config and code, the flow reports it
    and trains nothing (the run would repeat the same model and decision). With
    `data.train_on_validation` the validation rows join the training split once validated
    (`train_on_validation`; a model selection's final run under `select.retrain_on`).

    Args:
        config: the whole pipeline configuration (a YAML file of configs/ loads into it).
        force: train even when data, config and code match a registered version.
        lineage: more tags for the run and the registered version saying where the config came
            from (`model_selection`: the study, trial and candidate that chose it).
    """
    apply_defaults()
    check_inputs(check_config(config))
    tag_run(config)
    tags = {**lineage_tags(config), **(lineage or {})}
    if not force and (unchanged := find_unchanged(config, tags)) is not None:
        return unchanged
    with pipeline_run(config, tags):
        loaded = validate_data(config, tags["data_md5"])
        if config.data.train_on_validation:
            loaded = train_on_validation(loaded)
        encoder = config.model.base
        if config.pretrain.mode != "none":
            task_texts = None
            if "task" in config.pretrain.corpus.sources:
                task_texts = task_type_for(config).corpus_texts(loaded.splits["train"])
            with pipeline_run(config, tags, stage="pretrain"):
                pretrained = pretraining_stage(config, tags, task_texts)
            encoder, tags = pretrained.path, {**tags, "encoder_version": pretrained.version}
            record_tags({"encoder_version": pretrained.version, "encoder_path": pretrained.path})
        tokenized = tokenize_data(config, loaded, encoder, tags["data_md5"])
        model, tokenizer = finetune_model(config, tokenized, loaded, encoder)
        evaluation = evaluate_model(config, model, tokenizer, loaded)
        if config.fairness.eec is not None:
            evaluation = audit_fairness(config, model, tokenizer, evaluation)
        return register_and_promote(config, model, tokenizer, evaluation, loaded, tags)


if __name__ == "__main__":
    training_pipeline()
