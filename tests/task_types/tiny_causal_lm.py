"""A tiny causal LM built on the spot (2-layer Llama, hidden 32, a BPE tokenizer trained on a few
sentences) and saved as a model folder, so text-generation tests never need a real checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "Wall St. Bears Claw Back Into the Black",
    "Reuters - Short-sellers, Wall Street's dwindling band of ultra-cynics, are seeing green again.",
    "Oil prices soar to all-time record, posing new menace to US economy",
    "Stocks end up, but near year lows on oil worries",
    "Context: The tower is in Paris. Answer: Paris Question: Where is the tower?",
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the mat.",
    "Title: headline Description: news story about markets, sports, science and the world.",
]


def build_tokenizer(texts: list[str] = CORPUS, vocab_size: int = 300) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def save_tiny_causal_lm(folder: Path, seed: int = 0) -> Path:
    """Tokenizer and random 2-layer Llama saved in `folder` (usable as `model.base`)."""
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
