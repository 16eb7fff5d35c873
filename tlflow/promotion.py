"""The champion/challenger rule, as a pure function."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Decision:
    """Outcome of comparing a new model with the current champion on the same test split."""

    alias: str  # "champion" or "challenger"
    metric: str
    new_score: float
    champion_score: float | None
    champion_version: str | None
    reason: str

    @property
    def promoted(self) -> bool:
        return self.alias == "champion"

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    metric: str,
    new_score: float,
    champion_score: float | None,
    champion_version: str | None,
    min_delta: float = 0.0,
) -> Decision:
    """Champion when there is none yet, or when the new score beats the champion's by more than
    `min_delta` (both scored on the same split in the same run); challenger otherwise. Ties keep
    the champion: a new model has to earn the alias."""
    if champion_score is None or champion_version is None:
        return Decision("champion", metric, new_score, None, None, "no champion yet")
    gain = new_score - champion_score
    if gain > min_delta:
        reason = f"{metric} {new_score:.4f} beats champion v{champion_version} {champion_score:.4f} by {gain:+.4f}"
        return Decision("champion", metric, new_score, champion_score, champion_version, reason)
    reason = (
        f"{metric} {new_score:.4f} does not beat champion v{champion_version} {champion_score:.4f} "
        f"by more than {min_delta:g} ({gain:+.4f})"
    )
    return Decision("challenger", metric, new_score, champion_score, champion_version, reason)
