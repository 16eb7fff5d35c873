"""What a selection reports: the trial table, fine-tuning vs linear probe per candidate, and charts
(Optuna's optimisation history and parameter importances, candidate vs validation score)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna


@dataclass
class CandidateRow:
    """One candidate's best fine-tuning trial beside its linear probe at the same budget."""

    candidate: str
    trials: int  # finished or pruned trials of this candidate
    finetune_score: float | None  # best finished trial's validation score
    finetune_trial: int | None
    probe_score: float | None = None  # frozen encoder, task head trained (finetune.method head)
    probe_run_id: str | None = None


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_markdown(rows: list[dict[str, Any]], metric: str) -> str:
    """The trial table as markdown (settings as columns; pruned and failed trials marked)."""
    if not rows:
        return "no trials"
    params = sorted({k for r in rows for k in r if k.startswith("param_")})
    head = ["trial", "state", f"val_{metric}", "pruned at eval", "seconds", *[p.removeprefix("param_") for p in params]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        state = r["state"] if r["state"] == "complete" else f"**{r['state']}**"
        cells = [r["trial"], state, r["value"], r["pruned_at_eval"], r["seconds"], *[r.get(p) for p in params]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines)


def candidates_markdown(rows: list[CandidateRow], metric: str) -> str:
    """Is fine-tuning needed? Best fine-tuning trial vs linear probe (same budget) per candidate."""
    lines = [f"| candidate | trials | fine-tuned val_{metric} (trial) | linear probe val_{metric} | gain of fine-tuning |",
             "|---|---|---|---|---|"]
    for r in rows:
        gain = (r.finetune_score - r.probe_score) if r.finetune_score is not None and r.probe_score is not None else None
        trial = f" (#{r.finetune_trial})" if r.finetune_trial is not None else ""
        lines.append(f"| {r.candidate} | {r.trials} | {_fmt(r.finetune_score)}{trial} | {_fmt(r.probe_score)} | "
                     f"{_fmt(gain)} |")
    return "\n".join(lines)


def _save(ax_or_axes, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    fig = getattr(ax_or_axes, "figure", None) or plt.gcf()
    fig.set_size_inches(8, 4.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def study_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optimisation history and parameter importances (when at least two trials finished and a
    setting varied) as PNG files in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    written = []
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        if done:
            written.append(_save(plots.plot_optimization_history(study), folder / "history.png"))
        if len(done) >= 2 and any(len({str(t.params.get(k)) for t in done}) > 1 for k in done[0].params):
            try:
                written.append(_save(plots.plot_param_importances(study), folder / "importance.png"))
            except (ValueError, RuntimeError):  # importances undefined (e.g. every score equal)
                pass
    return [p for p in written if p is not None]


def candidate_chart(rows: list[CandidateRow], metric: str, path: Path) -> Path:
    """Bar chart: best fine-tuned and linear-probe validation score per candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(rows))
    tuned = [r.finetune_score or 0.0 for r in rows]
    probe = [r.probe_score or 0.0 for r in rows]
    ax.bar([x - 0.2 for x in xs], tuned, width=0.4, label="fine-tuned (best trial)", color="#4c72b0")
    ax.bar([x + 0.2 for x in xs], probe, width=0.4, label="linear probe (frozen encoder)", color="#999999")
    ax.set_xticks(list(xs), [r.candidate for r in rows], rotation=15)
    ax.set_ylabel(f"validation {metric}")
    ax.set_ylim(0, min(1.0, max(tuned + probe + [0.1]) * 1.15))
    ax.legend(loc="lower right")
    ax.set_title("candidates: validation score")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
