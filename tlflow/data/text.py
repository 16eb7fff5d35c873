"""Text helpers shared by readers and validation."""

import re

_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Key under which two texts count as the same example (case- and whitespace-insensitive)."""
    return _SPACE.sub(" ", text).strip().lower()
