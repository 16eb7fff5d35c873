"""`pretraining_pipeline`: corpus -> tokenizer -> corpus checks -> examples -> pretrain -> register encoder."""

from __future__ import annotations

from prefect import flow

from flows.run_labels import run_name, tag_run
from tasks.pretrain import (
    Encoder,
    corpus_key,
    load_pretraining_corpus,
    pretrain_encoder,
    pretraining_examples,
    pretraining_tokenizer,
    validate_pretraining_corpus,
)
from tasks.tracking import lineage_tags, pipeline_run
from tasks.validate import validate_data
from tlflow.config import PipelineConfig
from tlflow.runtime import apply_defaults
from tlflow.task_types.registry import check_config, check_inputs, task_type_for


def pretraining_stage(config: PipelineConfig, tags: dict[str, str], task_texts: list[str] | None) -> Encoder:
    """The pretraining tasks in order, logging to the active MLflow run. `task_texts` is the
    fine-tuning dataset's training text, for the 'task' corpus source."""
    corpus = load_pretraining_corpus(config, task_texts)
    key = corpus_key(config, tags["data_md5"], task_texts)
    tokenizer = pretraining_tokenizer(config, corpus, key)
    validate_pretraining_corpus(config, corpus, tokenizer)
    examples = pretraining_examples(config, corpus, tokenizer, key)
    return pretrain_encoder(config, tokenizer, examples, tags)


@flow(name="pretraining_pipeline", flow_run_name=run_name)
def pretraining_pipeline(config: PipelineConfig = PipelineConfig()) -> Encoder:
    """Pretrain an encoder (`pretrain.mode` scratch or continue) and register it as `<name>-encoder`."""
    apply_defaults()
    check_inputs(check_config(config))
    tag_run(config)
    if config.pretrain.mode == "none":
        raise ValueError("pretraining_pipeline needs pretrain.mode 'scratch' or 'continue'")
    tags = lineage_tags(config)
    with pipeline_run(config, tags):
        task_texts = None
        if "task" in config.pretrain.corpus.sources:
            train = validate_data(config, tags["data_md5"]).splits["train"]
            task_texts = task_type_for(config).corpus_texts(train)
        return pretraining_stage(config, tags, task_texts)


if __name__ == "__main__":
    pretraining_pipeline()
