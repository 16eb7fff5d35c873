"""A new BERT WordPiece vocabulary trained on the pretraining corpus (scratch mode)."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece
from transformers import PreTrainedTokenizerFast

#: Special tokens in id order: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SUBWORD_PREFIX = "##"


def _backend(lowercase: bool) -> Tokenizer:
    """An untrained BERT-style WordPiece pipeline: normalizer, pre-tokenizer and decoder."""
    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]", continuing_subword_prefix=SUBWORD_PREFIX))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix=SUBWORD_PREFIX)
    return tokenizer


def _add_post_processor(tokenizer: Tokenizer) -> None:
    """Add [CLS]/[SEP] around single texts and pairs; the second text of a pair gets token type 1."""
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )


def train_wordpiece(
    texts: Iterable[str],
    vocab_size: int,
    lowercase: bool = True,
    min_frequency: int = 2,
    max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Train a BERT WordPiece tokenizer on `texts` and wrap it as a transformers fast tokenizer.

    Args:
        texts: training texts (any iterable; consumed once).
        vocab_size: requested vocabulary size including the five special tokens; a small corpus
            may yield fewer entries.
        lowercase: lowercase and strip accents (uncased BERT); False keeps case and accents.
        min_frequency: a merge must occur at least this often to enter the vocabulary.
        max_length: the tokenizer's `model_max_length`.
    Returns:
        A `PreTrainedTokenizerFast` with [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4 that adds
        [CLS]/[SEP], returns token_type_ids for pairs and round-trips through `save_pretrained` /
        `AutoTokenizer.from_pretrained`.
    """
    backend = _backend(lowercase)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix=SUBWORD_PREFIX,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if backend.token_to_id(token) != expected_id:  # pragma: no cover - guaranteed by the trainer
            raise RuntimeError(f"special token {token} got id {backend.token_to_id(token)}, expected {expected_id}")
    _add_post_processor(backend)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
        do_lower_case=lowercase,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
