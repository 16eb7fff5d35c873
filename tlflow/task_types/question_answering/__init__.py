"""Extractive question answering over sliding context windows."""

from tlflow.task_types.question_answering.task import QuestionAnswering

__all__ = ["QuestionAnswering"]
