"""What the scan found, as numbers only (never a value): the validation report's PII section, the
MLflow metrics and tags, the GE check's per-row notes and the error of ``privacy.pii: fail``."""

from __future__ import annotations

import hashlib
import html
import json
from collections import Counter
from dataclasses import asdict, dataclass

from tlflow.data.pii.scan import PiiScan
from tlflow.errors import TlflowError

#: Check name of the GE expectation on the share of rows with PII (one per split).
CHECK_PII = "PII share within privacy.max_pii_fraction"
#: Derived column the check expects to be null: the row's finding types, e.g. "EMAIL_ADDRESS in text".
PII_COLUMN = "pii_found"
#: Rows named in the fail error.
MAX_ROWS_NAMED = 20


@dataclass
class PiiSummary:
    """Counts per split: rows, rows with any finding, and findings per column and entity type."""

    policy: str
    entities: list[str]
    min_score: float
    max_pii_fraction: float
    scanner: str
    # split -> {"rows": n, "rows_with_pii": m, "columns": {column: {TYPE: count}}}
    splits: dict[str, dict]

    @classmethod
    def of(cls, scan: PiiScan, policy: str, max_pii_fraction: float, scanner: str) -> PiiSummary:
        splits = {}
        for split, s in scan.splits.items():
            columns: dict[str, Counter] = {}
            for f in s.findings:
                columns.setdefault(f.column, Counter())[f.span.entity_type] += 1
            splits[split] = {"rows": s.rows, "rows_with_pii": len(s.by_row()),
                             "columns": {c: dict(sorted(n.items())) for c, n in columns.items()}}
        return cls(policy, list(scan.entities), scan.min_score, max_pii_fraction, scanner, splits)

    def share(self, split: str) -> float:
        s = self.splits[split]
        return s["rows_with_pii"] / s["rows"] if s["rows"] else 0.0

    def type_counts(self, split: str) -> dict[str, int]:
        total: Counter = Counter()
        for counts in self.splits[split]["columns"].values():
            total.update(counts)
        return dict(sorted(total.items()))

    def metrics(self) -> dict[str, float]:
        """``pii_rows_<split>``: the share (0..1) of the split's rows with any finding;
        ``pii_<split>_<type>``: findings of each entity type asked for (0 when none)."""
        out: dict[str, float] = {}
        for split in self.splits:
            out[f"pii_rows_{split}"] = round(self.share(split), 6)
            counts = self.type_counts(split)
            out.update({f"pii_{split}_{t.lower()}": counts.get(t, 0) for t in self.entities})
        return out

    def digest(self) -> str:
        """16 hex digits over policy, settings and counts (the `pii_counts` lineage tag)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def line(self) -> str:
        """One line for tags and logs, e.g. 'train 3/40 rows (EMAIL_ADDRESS=2, PERSON=3); test 0/10'."""
        parts = []
        for split, s in self.splits.items():
            counts = ", ".join(f"{t}={n}" for t, n in self.type_counts(split).items())
            parts.append(f"{split} {s['rows_with_pii']}/{s['rows']} rows" + (f" ({counts})" if counts else ""))
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        """A table per split and column (the Prefect artifact)."""
        out = [f"policy `{self.policy}`, min score {self.min_score}, max share {self.max_pii_fraction}, "
               f"scanner `{self.scanner}`", "", "| split | rows with PII | column | findings |", "|---|---|---|---|"]
        for split, s in self.splits.items():
            head = f"{s['rows_with_pii']} of {s['rows']} ({100 * self.share(split):.1f}%)"
            columns = s["columns"] or {"-": {}}
            for column, counts in columns.items():
                shown = ", ".join(f"{t}={n}" for t, n in counts.items()) or "none"
                out.append(f"| {split} | {head} | {column} | {shown} |")
                head = ""
        return "\n".join(out)

    def to_html(self) -> str:
        e = html.escape
        out = ["<h2>Personal data (PII)</h2>",
               f"<p>Policy <code>{e(self.policy)}</code>; entity types {e(', '.join(self.entities))}; "
               f"min score {self.min_score}; max share of rows {self.max_pii_fraction}; scanner "
               f"<code>{e(self.scanner)}</code>. Counts only: no value is shown.</p>",
               "<table><tr><th>Split</th><th>Rows with PII</th><th>Column</th><th>Entity type</th>"
               "<th>Findings</th></tr>"]
        for split, s in self.splits.items():
            head = f"{s['rows_with_pii']} of {s['rows']} ({100 * self.share(split):.1f}%)"
            rows = [(c, t, n) for c, counts in s["columns"].items() for t, n in counts.items()] or [("-", "-", 0)]
            for column, entity, n in rows:
                out.append(f"<tr><td>{e(split)}</td><td>{e(head)}</td><td>{e(column)}</td>"
                           f"<td>{e(entity)}</td><td>{n}</td></tr>")
        out.append("</table>")
        return "\n".join(out)


def row_notes(scan: PiiScan, split: str) -> list[str | None]:
    """Per row of the split: 'EMAIL_ADDRESS, PERSON in text' (types and columns, no values), None
    when the row has no finding (the GE check's derived column)."""
    s = scan.splits[split]
    notes: list[str | None] = [None] * s.rows
    for row, findings in s.by_row().items():
        by_column: dict[str, set[str]] = {}
        for f in findings:
            by_column.setdefault(f.column, set()).add(f.span.entity_type)
        notes[row] = "; ".join(f"{', '.join(sorted(t))} in {c}" for c, t in by_column.items())
    return notes


class PiiFoundError(TlflowError, RuntimeError):
    """``privacy.pii: fail`` and the scan found personal data: names file:row, column and entity
    type of each row (never the value)."""

    def __init__(self, scan: PiiScan):
        lines, total = [], 0
        for split, s in scan.splits.items():
            notes = row_notes(scan, split)
            for row in sorted(s.by_row()):
                total += 1
                if len(lines) < MAX_ROWS_NAMED:
                    lines.append(f"  {s.locations[row]}: {notes[row]}")
        more = f"\n  ... and {total - len(lines)} more rows" if total > len(lines) else ""
        super().__init__(f"personal data found in {total} rows (privacy.pii: fail; values not shown):\n"
                         + "\n".join(lines) + more)
        self.rows = total
