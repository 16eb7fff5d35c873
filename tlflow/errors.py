"""The one base of every user-facing error, and the exit status it ends the command line with.

Library code raises a subclass where the message alone tells a user what is wrong (a config field,
a file and row, a model name); the command line (`flows/cli.py`) catches `TlflowError` in one place
and turns it into that message and `exit_code`, without a traceback. Subclasses keep the builtin
base they had (`ValueError`, `RuntimeError`, ...), so callers that catch those still do.
"""

from __future__ import annotations


class TlflowError(Exception):
    """An error whose message is meant for the user; `exit_code` is the command line's exit status."""

    exit_code: int = 1
