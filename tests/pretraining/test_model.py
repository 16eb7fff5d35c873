"""The sparse-MLM pretraining model matches HF's dense head, ties its decoder, learns, and saves
an encoder that fine-tuning code loads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForPreTraining,
)

from tlflow.config import PretrainConfig
from tlflow.modeling.models import load_tokenizer, resolve_base
from tlflow.pretraining.model import (
    BertForMaskedPretraining,
    build_continue_model,
    build_scratch_model,
    save_encoder,
    scratch_config,
)
from tlflow.pretraining.vocab import train_wordpiece

pytestmark = [pytest.mark.unit]

VOCAB = 120
MASK_ID = 4


def tiny_config(use_nsp: bool = True, dropout: float = 0.1) -> BertConfig:
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        use_nsp=use_nsp,
    )


def tiny_batch(seed: int = 0, batch: int = 4, seq: int = 16) -> dict[str, torch.Tensor]:
    """Padded sentence pairs with ~15% of the real tokens masked; positions as (row, column)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 12:] = 0
    mask[3, 9:] = 0
    ids[mask == 0] = 0
    ids[:, 0] = 2
    types = torch.zeros(batch, seq, dtype=torch.long)
    types[:, seq // 2 :] = 1
    types[mask == 0] = 0
    chosen = (torch.rand(batch, seq, generator=gen) < 0.15) & (mask == 1)
    chosen[:, 0] = False
    chosen[:, 3] = True
    positions = chosen.nonzero()
    labels = ids[chosen]
    masked = ids.clone()
    masked[chosen] = MASK_ID
    return {
        "input_ids": masked,
        "attention_mask": mask,
        "token_type_ids": types,
        "mlm_positions": positions,
        "mlm_labels": labels,
        "next_sentence_label": torch.tensor([0, 1, 0, 1]),
        "original_ids": ids,
        "chosen": chosen,
    }


def model_inputs(batch: dict[str, torch.Tensor], nsp: bool = True) -> dict[str, torch.Tensor]:
    keys = ["input_ids", "attention_mask", "token_type_ids", "mlm_positions", "mlm_labels"]
    return {k: batch[k] for k in keys + (["next_sentence_label"] if nsp else [])}


def assert_tied(model: BertForMaskedPretraining) -> None:
    embeddings = model.bert.embeddings.word_embeddings.weight
    decoder = model.get_output_embeddings()
    assert decoder.weight is embeddings
    assert decoder.weight.data_ptr() == embeddings.data_ptr()
    assert decoder.bias is model.cls.predictions.bias


def test_sparse_mlm_loss_equals_hf_dense_loss():
    torch.manual_seed(0)
    model = BertForMaskedPretraining(tiny_config()).eval()
    dense = BertForPreTraining(tiny_config()).eval()
    dense.load_state_dict(model.state_dict())
    batch = tiny_batch()
    out = model(**model_inputs(batch))
    labels = torch.full_like(batch["input_ids"], -100)
    labels[batch["chosen"]] = batch["original_ids"][batch["chosen"]]
    ref = dense(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        token_type_ids=batch["token_type_ids"],
        labels=labels,
        next_sentence_label=batch["next_sentence_label"],
    )
    dense_mlm = F.cross_entropy(ref.prediction_logits.view(-1, VOCAB), labels.view(-1), ignore_index=-100)
    dense_nsp = F.cross_entropy(ref.seq_relationship_logits, batch["next_sentence_label"])
    assert torch.allclose(out.mlm_loss, dense_mlm, atol=1e-5)
    assert torch.allclose(out.nsp_loss, dense_nsp, atol=1e-5)
    assert torch.allclose(out.loss, ref.loss, atol=1e-5)
    assert torch.allclose(out.mlm_logits, ref.prediction_logits[batch["chosen"]], atol=1e-5)


def test_logits_shapes_and_counts():
    torch.manual_seed(0)
    model = BertForMaskedPretraining(tiny_config()).eval()
    batch = tiny_batch()
    out = model(**model_inputs(batch))
    n_masked = int(batch["chosen"].sum())
    assert out.mlm_logits.shape == (n_masked, VOCAB)
    assert out.nsp_logits.shape == (4, 2)
    assert int(out.mlm_total) == n_masked and 0 <= int(out.mlm_correct) <= n_masked
    assert int(out.nsp_total) == 4 and 0 <= int(out.nsp_correct) <= 4
    assert torch.allclose(out.loss, out.mlm_loss + out.nsp_loss)
    ignored = batch["mlm_labels"].clone()
    ignored[0] = -100
    partial = model(**{**model_inputs(batch, nsp=False), "mlm_labels": ignored})
    assert int(partial.mlm_total) == n_masked - 1


def test_no_masked_positions_gives_zero_mlm_loss():
    model = BertForMaskedPretraining(tiny_config(use_nsp=False)).eval()
    batch = tiny_batch()
    out = model(**{
        **model_inputs(batch, nsp=False),
        "mlm_positions": torch.zeros(0, 2, dtype=torch.long),
        "mlm_labels": torch.zeros(0, dtype=torch.long),
    })
    assert out.mlm_logits.shape == (0, VOCAB) and float(out.loss.detach()) == 0.0 and int(out.mlm_total) == 0


def test_nsp_off_uses_mlm_only_and_rejects_nsp_labels():
    torch.manual_seed(0)
    model = BertForMaskedPretraining(tiny_config(use_nsp=False)).eval()
    batch = tiny_batch()
    out = model(**model_inputs(batch, nsp=False))
    assert out.nsp_logits is None and out.nsp_loss is None and out.nsp_total == 0
    assert torch.equal(out.loss, out.mlm_loss)
    with pytest.raises(ValueError, match="use_nsp"):
        model(**model_inputs(batch, nsp=True))
    with pytest.raises(ValueError, match="n_masked, 2"):
        model(**{**model_inputs(batch, nsp=False), "mlm_positions": batch["mlm_positions"][:, 0]})


def test_tied_after_init_and_after_from_pretrained(tmp_path):
    model = BertForMaskedPretraining(tiny_config(use_nsp=False))
    assert_tied(model)
    model.save_pretrained(tmp_path)
    loaded = BertForMaskedPretraining.from_pretrained(tmp_path)
    assert_tied(loaded)
    assert loaded.config.use_nsp is False
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # the saved keys are exactly BertForPreTraining's
    reference = BertForPreTraining.from_pretrained(tmp_path)
    assert set(reference.state_dict()) == set(model.state_dict())


def test_tied_gradient_updates_embedding_and_decoder_together():
    model = BertForMaskedPretraining(tiny_config(use_nsp=False))
    batch = tiny_batch()
    model(**model_inputs(batch, nsp=False)).loss.backward()
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[7].add_(1.0)
    assert torch.equal(model.cls.predictions.decoder.weight[7], model.bert.embeddings.word_embeddings.weight[7])


def test_training_steps_drive_the_mlm_loss_down():
    torch.manual_seed(0)
    model = BertForMaskedPretraining(tiny_config(use_nsp=True, dropout=0.0)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = model_inputs(tiny_batch())
    losses = []
    for _ in range(40):
        out = model(**inputs)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(out.mlm_loss.detach()))
    # starts near ln(120) = 4.8 (uniform guess); 40 steps on one batch take it below 3
    assert losses[0] > 4.0 and losses[-1] < 0.65 * losses[0], losses
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert_tied(model)


def test_scratch_model_from_config_and_tokenizer():
    tokenizer = train_wordpiece(
        ["the quick brown fox jumps over the lazy dog"] * 20 + ["a lobster is a crustacean"] * 20, vocab_size=300
    )
    cfg = PretrainConfig(
        mode="scratch", num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, nsp=False, seed=3
    )
    config = scratch_config(cfg, vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id)
    assert (config.vocab_size, config.num_hidden_layers, config.hidden_size) == (len(tokenizer), 2, 32)
    assert config.pad_token_id == 0 and config.use_nsp is False and config.max_position_embeddings == 512
    first, second = build_scratch_model(cfg, tokenizer), build_scratch_model(cfg, tokenizer)
    assert_tied(first)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert torch.all(first.bert.embeddings.word_embeddings.weight[0] == 0)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        scratch_config(cfg.model_copy(update={"max_position_embeddings": 64, "max_seq_length": 128}), 300, 0)


def test_continue_model_loads_the_checkpoint_encoder_with_fresh_tied_heads(capfd):
    model = build_continue_model("minilm-l6", use_nsp=True, seed=5)
    captured = capfd.readouterr()
    assert "LOAD REPORT" not in captured.err + captured.out
    assert_tied(model)
    assert model.config.use_nsp is True and model.dtype == torch.float32 and model.training
    assert model.config.vocab_size == 30522 and model.config.num_hidden_layers == 6
    base = AutoModel.from_pretrained(resolve_base("minilm-l6"))
    query = base.encoder.layer[2].attention.self.query.weight
    assert torch.equal(model.bert.encoder.layer[2].attention.self.query.weight, query)
    assert torch.equal(model.cls.predictions.decoder.weight, base.embeddings.word_embeddings.weight)
    again = build_continue_model("minilm-l6", use_nsp=False, seed=5)
    assert torch.equal(model.cls.predictions.transform.dense.weight, again.cls.predictions.transform.dense.weight)
    assert again.config.use_nsp is False
    tokenizer = load_tokenizer("minilm-l6")
    enc = tokenizer(["a lobster is a crustacean"], ["it lives in the sea"], return_tensors="pt")
    positions = torch.tensor([[0, 2]])
    labels = enc["input_ids"][0, 2:3]
    out = model(**enc, mlm_positions=positions, mlm_labels=labels, next_sentence_label=torch.tensor([0]))
    assert out.mlm_logits.shape == (1, 30522) and torch.isfinite(out.loss)


def test_save_encoder_loads_for_sequence_classification(tmp_path):
    tokenizer = train_wordpiece(["the quick brown fox jumps over the lazy dog"] * 30, vocab_size=200)
    cfg = PretrainConfig(mode="scratch", num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64)
    model = build_scratch_model(cfg, tokenizer)
    out_dir = save_encoder(model, tokenizer, tmp_path / "encoder")
    assert (out_dir / "model.safetensors").is_file() and (out_dir / "tokenizer.json").is_file()
    classifier = AutoModelForSequenceClassification.from_pretrained(out_dir, num_labels=3).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(out_dir)
    dense = model.bert.encoder.layer[1].output.dense.weight
    assert torch.equal(classifier.bert.encoder.layer[1].output.dense.weight, dense)
    assert torch.equal(classifier.bert.pooler.dense.weight, model.bert.pooler.dense.weight)
    batch = loaded_tokenizer(["the quick fox", "a lazy dog jumps"], padding=True, return_tensors="pt")
    logits = classifier(**batch).logits
    assert logits.shape == (2, 3)
    encoder = AutoModel.from_pretrained(out_dir)
    assert torch.equal(encoder.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)
    reloaded = BertForMaskedPretraining.from_pretrained(out_dir)
    assert_tied(reloaded)
