"""The transfer-learning comparison: the same fine-tuning budget from four starting points."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tlflow.config import PipelineConfig

#: Variants in report order: what fine-tuning starts from.
VARIANTS = {
    "random": "random initialisation (scratch architecture and vocabulary, no pretraining)",
    "scratch": "encoder pretrained from scratch (MLM + NSP) on the corpus",
    "base": "base checkpoint as it is",
    "continued": "base checkpoint after continued MLM on the task's own text",
}


def variant_config(cfg: PipelineConfig, variant: str, scratch_encoder: str | None = None) -> PipelineConfig:
    """The pipeline config of one variant. Fine-tuning settings stay identical; none is registered
    as a serving candidate (promote.register_model false). 'random' needs the scratch encoder's
    folder for its tokenizer, so the two share architecture and vocabulary."""
    update = {"promote": cfg.promote.model_copy(update={"register_model": False})}
    p = cfg.pretrain
    if variant == "random":
        if scratch_encoder is None:
            raise ValueError("the 'random' variant needs the scratch encoder's folder (for its tokenizer)")
        update["model"] = cfg.model.model_copy(update={
            "base": scratch_encoder, "init": "random", "num_layers": p.num_layers, "hidden_size": p.hidden_size,
            "num_heads": p.num_heads, "intermediate_size": p.intermediate_size,
        })
        update["pretrain"] = p.model_copy(update={"mode": "none"})
    elif variant == "scratch":
        update["pretrain"] = p.model_copy(update={"mode": "scratch"})
    elif variant == "base":
        update["pretrain"] = p.model_copy(update={"mode": "none"})
    elif variant == "continued":
        corpus = p.corpus.model_copy(update={"sources": ["task"]})
        # Task texts are single sentences or short documents: sentence pairs would be almost all
        # NotNext, so in-domain continuation is MLM on packed sequences.
        update["pretrain"] = p.model_copy(update={"mode": "continue", "corpus": corpus, "nsp": False})
    else:
        raise ValueError(f"unknown variant '{variant}' (expected one of {', '.join(VARIANTS)})")
    return cfg.model_copy(update=update)


@dataclass
class VariantResult:
    variant: str
    score: float
    finetune_seconds: float
    pretrain_seconds: float
    run_id: str


def report_markdown(metric: str, results: list[VariantResult]) -> str:
    """The comparison as a markdown table (Prefect artifact, README)."""
    lines = [
        f"| variant | starts from | test_{metric} | fine-tune s | pretrain s |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.variant} | {VARIANTS[r.variant]} | {r.score:.4f} | {r.finetune_seconds:.1f} | {r.pretrain_seconds:.1f} |"
        )
    return "\n".join(lines)


def plot_report(metric: str, results: list[VariantResult], path: Path) -> Path:
    """Bar chart of the primary metric per variant, annotated with training times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    names = [r.variant for r in results]
    scores = [r.score for r in results]
    bars = ax.bar(names, scores, color=["#999999", "#4c72b0", "#55a868", "#c44e52"][: len(results)])
    for bar, r in zip(bars, results):
        ax.annotate(f"{r.score:.3f}\nft {r.finetune_seconds:.0f}s / pt {r.pretrain_seconds:.0f}s",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(f"test {metric}")
    ax.set_ylim(0, min(1.0, max(scores) * 1.2 + 0.05))
    ax.set_title("transfer learning: same fine-tuning budget, four starting points")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
