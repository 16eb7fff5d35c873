"""What the data report says besides its checks: the rows of each split (read, and used after
``max_train_rows``/``max_eval_rows``), the rows the overlap and invalid-row policies dropped (with
the first file:line of each), and the version of the data."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field

from tlflow.config import DataConfig
from tlflow.data.invalid import InvalidRow, reason_counts
from tlflow.data.readers import LoadedData
from tlflow.data.version import DataVersion

#: Invalid rows listed by file:line in a report (the count covers them all).
INVALID_EXAMPLES = 5


@dataclass
class DataAccount:
    """Rows per split and what was dropped, for `ValidationReport.data`."""

    rows_read: dict[str, int]  # per split, before sampling (after the drops below)
    rows_used: dict[str, int]  # per split, what the pipeline trains and evaluates on
    dropped_overlap: int = 0
    invalid_policy: str = "fail"
    dropped_invalid: int = 0
    invalid_reasons: dict[str, int] = field(default_factory=dict)
    invalid_examples: list[str] = field(default_factory=list)  # 'file:line (reason)'
    version: str = ""  # `DataVersion.line()`
    data_md5: str = ""
    data_tracked: bool = True

    @classmethod
    def of(cls, loaded: LoadedData, cfg: DataConfig, version: DataVersion | None = None) -> DataAccount:
        used = {split: len(ds) for split, ds in loaded.splits.items()}
        read = {split: len(ds) for split, ds in loaded.validated.items()}
        return cls(
            rows_read=read, rows_used=used, dropped_overlap=loaded.dropped_overlap, invalid_policy=cfg.invalid_rows,
            dropped_invalid=len(loaded.invalid), invalid_reasons=reason_counts(loaded.invalid),
            invalid_examples=_examples(loaded.invalid), version=version.line() if version else "",
            data_md5=version.md5 if version else "", data_tracked=version.tracked if version else True,
        )

    def lines(self) -> list[str]:
        """Terminal lines: rows per split, drops, data version."""
        parts = []
        for split, read in self.rows_read.items():
            used = self.rows_used.get(split, read)
            cap = "max_train_rows" if split == "train" else "max_eval_rows"
            parts.append(f"{split} {used:,}" + (f" of {read:,} ({cap})" if used != read else ""))
        out = [f"rows: {', '.join(parts)}"]
        drops = []
        if self.dropped_overlap:
            drops.append(f"{_rows(self.dropped_overlap, 'train row')} also in validation/test (data.drop_train_overlap)")
        if self.dropped_invalid:
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in self.invalid_reasons.items())
            drops.append(f"{_rows(self.dropped_invalid, 'invalid row')} (data.invalid_rows: drop; {reasons}), first: "
                         + "; ".join(self.invalid_examples))
        if drops:
            out.append("dropped: " + "; ".join(drops))
        if self.version:
            out.append(self.version)
        return out

    def to_html(self) -> str:
        e = html.escape
        items = "".join(f"<li>{e(line)}</li>" for line in self.lines())
        return f"<h2>Rows</h2><ul>{items}</ul>"

    def to_dict(self) -> dict:
        return asdict(self)


def _examples(rows: list[InvalidRow]) -> list[str]:
    """The first invalid row of each reason, then the next ones in reading order, up to `INVALID_EXAMPLES`."""
    firsts: dict[str, InvalidRow] = {}
    for row in rows:
        firsts.setdefault(row.reason, row)
    chosen = list(firsts.values()) + [r for r in rows if r not in firsts.values()]
    return [r.describe() for r in chosen[:INVALID_EXAMPLES]]


def _rows(n: int, noun: str) -> str:
    """`1 invalid row`, `1,200 invalid rows`."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
