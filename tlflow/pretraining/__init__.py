"""Pretraining stage: corpus, vocabulary, examples and the BERT pretraining model."""
