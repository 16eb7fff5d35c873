"""Publish a model selection: the trial table, fine-tuning vs linear probe per candidate, Optuna's
history and importance plots and the candidate chart (MLflow `selection/`), a Prefect summary."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.tracking import artifact_key
from tlflow.config import PipelineConfig
from tlflow.selection import study as studies
from tlflow.selection.report import (
    CandidateRow,
    candidate_chart,
    candidates_markdown,
    study_plots,
    trials_markdown,
)
from tlflow.selection.space import CANDIDATE


@dataclass
class SelectionSummary:
    """The winning trial of a study and the tables that led to it."""

    study: str
    metric: str
    trial: int
    params: dict[str, Any]
    score: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[CandidateRow] = field(default_factory=list)
    retrain_on: str = "train"

    def lineage(self, selection_run_id: str) -> dict[str, str]:
        """The tags the winner's run and version carry (`tlflow.selection.lineage`)."""
        return {"selection_study": self.study, "selection_trial": str(self.trial),
                "selection_candidate": str(self.params[CANDIDATE]), "selection_run_id": selection_run_id,
                "selection_retrain_on": self.retrain_on}


@task(name="publish-selection", cache_policy=NO_CACHE, persist_result=False)
def publish_selection(cfg: PipelineConfig, ref: studies.StudyRef, probes: list[CandidateRow]) -> SelectionSummary:
    """Pick the winner (best validation score, the cheaper among equals) and publish the evidence."""
    study = studies.load(ref)
    best = studies.winner(study)
    if best is None:
        raise studies.no_winner(study)
    rows = studies.trial_rows(study)
    per_candidate = studies.best_per_candidate(study)
    probe_of = {p.candidate: p for p in probes}
    candidates = [CandidateRow(c, sum(1 for r in rows if r.get(f"param_{CANDIDATE}") == c and r["state"] in
                                      ("complete", "pruned")),
                               per_candidate[c].value if c in per_candidate else None,
                               per_candidate[c].number if c in per_candidate else None,
                               probe_of[c].probe_score if c in probe_of else None,
                               probe_of[c].probe_run_id if c in probe_of else None)
                  for c in ref.select.candidates]
    summary = SelectionSummary(ref.name, ref.metric, best.number, dict(best.params), best.value, rows, candidates,
                               ref.select.retrain_on)
    trials_md, candidates_md = trials_markdown(rows, ref.metric), candidates_markdown(candidates, ref.metric)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "trials.md").write_text(trials_md + "\n", encoding="utf-8")
        (Path(tmp) / "candidates.md").write_text(candidates_md + "\n", encoding="utf-8")
        study_plots(study, Path(tmp))
        candidate_chart(candidates, ref.metric, Path(tmp) / "candidates.png")
        mlflow.log_artifacts(tmp, "selection")
    mlflow.log_table({k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)},
                     artifact_file="selection/trials.json")
    states = [r["state"] for r in rows]
    mlflow.log_metrics({f"best_val_{ref.metric}": best.value, "trials/complete": states.count("complete"),
                        "trials/pruned": states.count("pruned"), "trials/failed": states.count("fail")})
    mlflow.set_tags({"selection_winner_trial": str(best.number), "selection_winner_candidate": best.params[CANDIDATE]})
    create_markdown_artifact(
        f"## Model selection: {cfg.name}\n\nStudy `{ref.name}`: winner trial {best.number} "
        f"({best.params[CANDIDATE]}), val_{ref.metric} {best.value:.4f}\n\n### Candidates: fine-tuning vs linear probe"
        f"\n\n{candidates_md}\n\n### Trials\n\n{trials_md}\n",
        key=artifact_key(cfg.name, "selection"), description="Model selection: trials and winner",
    )
    get_run_logger().info("winner: trial %d (%s), val_%s %.4f", best.number, best.params[CANDIDATE], ref.metric,
                          best.value)
    return summary
