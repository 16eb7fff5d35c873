"""Text generation with a causal language model: a prompt in, a target text out."""

from tlflow.task_types.text_generation.task import TextGeneration

__all__ = ["TextGeneration"]
