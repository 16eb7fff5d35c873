"""Sentence-pair classification."""

from tlflow.task_types.sentence_pair.task import CHECK_PAIR_NOT_BLANK, SentencePair

__all__ = ["CHECK_PAIR_NOT_BLANK", "SentencePair"]
