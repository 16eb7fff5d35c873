"""Text helpers shared by readers and validation."""

import re

_SPACE = re.compile(r"\s+")
#: Characters that show nothing: a text of only these (and whitespace) is blank.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\x00"
#: What `strip_text` removes from both ends: whitespace and the invisible characters.
STRIP_CHARS = "".join(chr(c) for c in range(0x3001) if chr(c).isspace()) + INVISIBLE


def normalize_text(text: str) -> str:
    """Key under which two texts count as the same example (case- and whitespace-insensitive)."""
    return _SPACE.sub(" ", text).strip().lower()


def strip_text(text: str) -> str:
    """`text` without leading and trailing whitespace and invisible characters."""
    return text.strip(STRIP_CHARS)
