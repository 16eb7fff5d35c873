"""The slice chart (`evaluation/slices.png`): the primary metric of every shown slice beside the
overall value, gated slices solid, slices too small to gate hatched."""

from __future__ import annotations

from pathlib import Path

from tlflow.evaluation.slices import SliceReport


def plot_slices(report: SliceReport, path: Path, title: str = "") -> Path:
    """One horizontal bar per slice, grouped by column, labelled `column=value (n)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slices = report.slices
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * max(len(slices), 1)))
    positions = list(range(len(slices)))[::-1]
    columns = sorted({s.column for s in slices})
    colors = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(columns)}
    for y, s in zip(positions, slices):
        gated = len(s.rows) >= report.min_size
        ax.barh(y, s.metrics[report.metric], color=colors[s.column], alpha=1.0 if gated else 0.45,
                hatch=None if gated else "//", edgecolor="black", linewidth=0.3)
        ax.text(s.metrics[report.metric], y, f" {s.metrics[report.metric]:.3f}", va="center", fontsize=7)
    overall = report.overall[report.metric]
    ax.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.3f}")
    ax.set_yticks(positions, [f"{s.name} (n={len(s.rows)})" for s in slices], fontsize=7)
    ax.set_xlabel(report.metric)
    ax.set_xlim(0, max([1.0, *(s.metrics[report.metric] * 1.1 for s in slices)]))
    ax.set_title(title or f"{report.metric} per slice (hatched: fewer than {report.min_size} examples, not gated)",
                 fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
