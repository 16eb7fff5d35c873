"""BERT with pretraining heads that run the MLM decoder only at masked positions.

`BertForMaskedPretraining` has the submodules of Hugging Face's `BertForPreTraining` (`bert`,
`cls.predictions`, `cls.seq_relationship`), so its saved weights have the same keys and its encoder
loads into `AutoModel` / `AutoModelForSequenceClassification`. Its forward takes the masked
positions explicitly and gathers their hidden states before the vocabulary projection: with 15%
masking that is ~7x less decoder work (and logits memory) than the dense head, and the loss is the
same number (mean cross-entropy over the masked tokens).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, PreTrainedTokenizerBase
from transformers import logging as hf_logging
from transformers.models.bert.modeling_bert import BertPreTrainedModel, BertPreTrainingHeads

from tlflow.config import PretrainConfig
from tlflow.modeling.models import ModelError, resolve_base

#: Label value that excludes an entry of `mlm_labels` from loss and accuracy (as in Hugging Face).
IGNORE_INDEX = -100


@dataclass
class PretrainingOutput:
    """What one forward pass of `BertForMaskedPretraining` returns.

    Losses are None when their labels were not given. The counts are detached 0-d long tensors
    (no device sync in the training loop; call `int()` when logging): `mlm_correct` of
    `mlm_total` masked tokens were predicted exactly, `nsp_correct` of `nsp_total` pairs.
    """

    loss: torch.Tensor | None = None
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    mlm_logits: torch.Tensor | None = None
    nsp_logits: torch.Tensor | None = None
    mlm_correct: torch.Tensor | int = 0
    mlm_total: torch.Tensor | int = 0
    nsp_correct: torch.Tensor | int = 0
    nsp_total: torch.Tensor | int = 0


class BertForMaskedPretraining(BertPreTrainedModel):
    """BERT encoder + MLM head (+ optional NSP head), MLM logits computed at masked positions only.

    `config.use_nsp` (default True, saved in config.json) switches next-sentence prediction. When
    it is False the pooler and `cls.seq_relationship` stay in the model, unused and untrained, so
    the state dict keeps exactly the keys of `BertForPreTraining` and a later
    `BertForSequenceClassification` (which classifies from the pooled output) still finds a
    pooler in the checkpoint rather than reporting it newly initialised.

    The MLM decoder weight is the input word-embedding matrix and the decoder bias is
    `cls.predictions.bias`, declared as in `BertForPreTraining` (`_tied_weights_keys`, a
    target -> source mapping in transformers 5, applied by `post_init` and `from_pretrained`
    while `config.tie_word_embeddings` is True).
    """

    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        config.use_nsp = bool(getattr(config, "use_nsp", True))
        self.bert = BertModel(config, add_pooling_layer=True)
        self.cls = BertPreTrainingHeads(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        """The MLM decoder (vocabulary projection)."""
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        """Replace the MLM decoder, keeping `cls.predictions.bias` as its bias."""
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        mlm_positions: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
    ) -> PretrainingOutput:
        """Encode a batch; score the masked positions (and the sentence pair); sum the losses.

        Args:
            input_ids: [batch, seq] token ids, masked positions already replaced ([MASK]/random/kept).
            attention_mask: [batch, seq], 1 for real tokens, 0 for padding.
            token_type_ids: [batch, seq] segment ids (0 for sentence A, 1 for sentence B).
            mlm_positions: LongTensor [n_masked, 2] of (row, column) pairs into input_ids, one per
                predicted token, in any order; n_masked may be 0.
            mlm_labels: LongTensor [n_masked], the original token id at each position of
                `mlm_positions` (IGNORE_INDEX=-100 entries count neither in loss nor accuracy).
            next_sentence_label: LongTensor [batch], 0 = B follows A, 1 = B is random (as in HF).
                Only allowed when `config.use_nsp`.
        Returns:
            PretrainingOutput: mlm_logits [n_masked, vocab]; nsp_logits [batch, 2] when use_nsp;
            loss = mlm_loss (mean over masked tokens) + nsp_loss (mean over pairs), each present
            when its labels were given.
        """
        use_nsp = bool(getattr(self.config, "use_nsp", True))
        if next_sentence_label is not None and not use_nsp:
            raise ValueError("next_sentence_label given but config.use_nsp is False")
        if mlm_labels is not None and mlm_positions is None:
            raise ValueError("mlm_labels need mlm_positions")
        encoded = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
        )
        out = PretrainingOutput()
        if mlm_positions is not None:
            out.mlm_logits = self._mlm_logits(encoded.last_hidden_state, mlm_positions)
            if mlm_labels is not None:
                out.mlm_loss, out.mlm_correct, out.mlm_total = _scored(out.mlm_logits, mlm_labels.reshape(-1))
        if use_nsp:
            out.nsp_logits = self.cls.seq_relationship(encoded.pooler_output)
            if next_sentence_label is not None:
                out.nsp_loss, out.nsp_correct, out.nsp_total = _scored(out.nsp_logits, next_sentence_label.reshape(-1))
        out.loss = out.mlm_loss
        if out.nsp_loss is not None:
            out.loss = out.nsp_loss if out.loss is None else out.loss + out.nsp_loss
        return out

    def _mlm_logits(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits [n_masked, vocab] of the hidden states at (row, column) `positions`."""
        if positions.ndim != 2 or positions.shape[1] != 2:
            raise ValueError(f"mlm_positions must have shape [n_masked, 2] (row, column), got {tuple(positions.shape)}")
        positions = positions.to(device=hidden.device, dtype=torch.long)
        selected = hidden[positions[:, 0], positions[:, 1]]
        return self.cls.predictions(selected)


def _scored(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over labels != IGNORE_INDEX (0 when there are none), correct and total counts."""
    labels = labels.to(logits.device)
    valid = labels != IGNORE_INDEX
    total = valid.sum()
    summed = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    loss = summed / total.clamp(min=1)
    with torch.no_grad():
        correct = ((logits.argmax(dim=-1) == labels) & valid).sum()
    return loss, correct, total.detach()


def scratch_config(cfg: PretrainConfig, vocab_size: int, pad_id: int) -> BertConfig:
    """BertConfig of a new BERT of the configured size for a vocabulary of `vocab_size` tokens.

    Raises:
        ValueError: when pretraining examples (`max_seq_length`) would not fit the position table.
    """
    if cfg.max_seq_length > cfg.max_position_embeddings:
        raise ValueError(
            f"pretrain.max_seq_length {cfg.max_seq_length} exceeds max_position_embeddings "
            f"{cfg.max_position_embeddings}"
        )
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=2,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
        use_nsp=cfg.nsp,
    )


def build_scratch_model(cfg: PretrainConfig, tokenizer: PreTrainedTokenizerBase) -> BertForMaskedPretraining:
    """A randomly initialised (seeded by `cfg.seed`) BERT for the new tokenizer's vocabulary."""
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no [PAD] token")
    config = scratch_config(cfg, vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id)
    torch.manual_seed(cfg.seed)
    return BertForMaskedPretraining(config)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings and progress bars for a block, then restore them.

    Loading a checkpoint without pretraining heads logs a LOAD REPORT of "newly initialized"
    keys (and a tied-bias notice): expected in continue mode, so not shown.
    """
    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def build_continue_model(base: str, use_nsp: bool, seed: int) -> BertForMaskedPretraining:
    """The base checkpoint's encoder with fresh (seeded) pretraining heads, for domain-adaptive MLM.

    Encoder weights (embeddings, layers, pooler) come from `resolve_base(base)`; the MLM transform,
    its bias and the NSP classifier are newly initialised under `torch.manual_seed(seed)`; the MLM
    decoder is the checkpoint's word-embedding matrix (tied). Loaded in fp32 and returned in
    training mode, like `build_scratch_model`.
    """
    path = resolve_base(base)
    try:
        config = BertConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load base model '{base}' offline: {str(err).splitlines()[0]}") from None
    if config.model_type != "bert":
        raise ModelError(f"base model '{base}' is a '{config.model_type}' model, continued pretraining needs BERT")
    config.use_nsp = use_nsp
    config.tie_word_embeddings = True
    torch.manual_seed(seed)
    try:
        with quiet_transformers():
            model = BertForMaskedPretraining.from_pretrained(path, config=config, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load base model '{base}' offline: {str(err).splitlines()[0]}") from None
    model.train()
    return model


def save_encoder(model: BertForMaskedPretraining, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> Path:
    """Save the pretrained model (safetensors, BertForPreTraining key names) and its tokenizer.

    The folder loads with `AutoModelForSequenceClassification.from_pretrained(out_dir, num_labels=k)`
    (encoder and pooler from here, new classifier), `AutoModel` and `AutoTokenizer`, and with
    `BertForMaskedPretraining.from_pretrained` to continue pretraining.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
