"""`transfer_report` end to end with tiny models: scratch pretraining inside `training_pipeline`,
continued pretraining of a (tiny) base checkpoint, four fine-tuned variants, the report published."""

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from transformers import BertConfig, BertModel

from flows.transfer import transfer_report
from tlflow.evaluation.transfer import VARIANTS
from tlflow.modeling.models import load_tokenizer
from tlflow.registry import tracking

pytestmark = [pytest.mark.needs_data, pytest.mark.flow]


@pytest.fixture
def tiny_base(project):
    """A tiny BERT checkpoint with MiniLM's tokenizer, standing in for the base model."""
    tokenizer = load_tokenizer("minilm-l6")
    path = project / "tiny-base"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_transfer_report_compares_four_starting_points(project, prefect_server, tiny_config, tiny_base):
    cfg = tiny_config(**{
        "name": "tl", "model.init": "pretrained", "model.base": tiny_base, "paths.model_roots": f"[{tiny_base}]", "model.max_length": "48",
        "data.max_train_rows": "200", "data.max_eval_rows": "100", "finetune.batch_size": "16",
        "pretrain.max_steps": "10", "pretrain.batch_size": "8", "pretrain.num_layers": "2",
        "pretrain.hidden_size": "32", "pretrain.num_heads": "2", "pretrain.intermediate_size": "64",
        "pretrain.vocab_size": "1000", "pretrain.max_seq_length": "32",
        "pretrain.checkpoint_every_steps": "1000",
    })
    results = transfer_report(cfg)

    assert [r.variant for r in results] == list(VARIANTS)
    by_variant = {r.variant: r for r in results}
    assert by_variant["scratch"].pretrain_seconds > 0 and by_variant["continued"].pretrain_seconds > 0
    assert by_variant["base"].pretrain_seconds == 0 == by_variant["random"].pretrain_seconds

    tracking.configure()
    client = MlflowClient()
    # Each reported score is the test metric its fine-tuning run logged (the report re-reads nothing else).
    for r in results:
        assert r.score == pytest.approx(client.get_run(r.run_id).data.metrics[f"test_{cfg.task.primary_metric}"],
                                        abs=1e-6), r.variant
    # Variants are compared, not promoted: only the two pretrained encoders are registered.
    assert [m.name for m in client.search_registered_models()] == ["tl-encoder"]
    encoders = client.search_model_versions("name = 'tl-encoder'")
    assert sorted(v.tags["pretrain_mode"] for v in encoders) == ["continue", "scratch"]
    scratch_run = client.get_run(by_variant["scratch"].run_id)
    scratch_encoder = next(v for v in encoders if v.tags["pretrain_mode"] == "scratch")
    assert scratch_run.data.tags["encoder_version"] == str(scratch_encoder.version)
    pretrain_child = client.search_runs([scratch_run.info.experiment_id],
                                        f"tags.mlflow.parentRunId = '{scratch_run.info.run_id}'")[0]
    for metric in ("heldout_perplexity", "heldout_mlm_accuracy", "heldout_nsp_accuracy", "train/mlm_loss", "pretrain/tokens_per_s"):
        assert metric in pretrain_child.data.metrics, metric

    report_run = client.get_run(scratch_run.data.tags["mlflow.parentRunId"])
    assert {a.path for a in client.list_artifacts(report_run.info.run_id, "transfer")} >= {
        "transfer/transfer.png", "transfer/transfer.md", "transfer/transfer.json"}
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["tl-transfer"])))
    assert artifacts and "| continued |" in artifacts[0].data
