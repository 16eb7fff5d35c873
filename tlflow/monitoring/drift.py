"""Drift between the reference (the champion's training rows) and the current prediction window.

Every descriptor column is tested by Evidently (`ValueDrift`, its method chosen by Evidently from
the column type and sample size: Kolmogorov-Smirnov or Wasserstein distance for numbers, chi-square,
Z-test or Jensen-Shannon for the predicted label) and the drift score is Evidently's share of
drifted columns (`DriftedColumnsCount`). The [CLS] vectors enter as one more column,
`embedding_distance`: each vector's distance from the reference centroid, per dimension in units of
the reference's spread (a reference row's distance is taken from the centroid of the other rows),
so a window whose vectors lie elsewhere than the training rows' has larger distances. The vectors
are made sentiment-free first: each is centred on the reference mean of its predicted label, so a
window that is only more positive than the training data does not count as embedding drift. The
ratio of the mean distances (current / reference; about 1 without drift) is reported beside it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tlflow.monitoring.descriptors import CLS, PREDICTION, TEXT_DESCRIPTORS

EMBEDDING = "embedding_distance"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    value: float  # the method's statistic (a p-value, or a distance)
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    score: float  # share of drifted columns (Evidently's DriftedColumnsCount share)
    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    embedding_ratio: float | None = None  # mean [CLS] distance, current / reference (about 1: no drift)
    html: str = field(default="", repr=False)

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def table(self) -> str:
        """The per-column results as a markdown table."""
        lines = ["| descriptor | method | statistic | threshold | drift |", "|---|---|---:|---:|---|"]
        for c in self.columns:
            lines.append(f"| {c.column} | {c.method} | {c.value:.4g} | {c.threshold:.4g} | "
                         f"{'**yes**' if c.drifted else 'no'} |")
        return "\n".join(lines)

    def metrics(self) -> dict[str, float]:
        """Numbers for MLflow: the score, and each column's statistic and 0/1 drift flag (the check's
        result, unprefixed); the window sizes in section `data/`."""
        out = {"drift_score": self.score, "drifted_columns": float(len(self.drifted)),
               "data/reference_rows": float(self.reference_rows), "data/current_rows": float(self.current_rows)}
        for c in self.columns:
            out[f"drift_{c.column}_statistic"] = c.value
            out[f"drift_{c.column}_detected"] = float(c.drifted)
        if self.embedding_ratio is not None:
            out["drift_embedding_distance_ratio"] = self.embedding_ratio
        return out

    def write_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        return path


def _vectors(frame: pd.DataFrame) -> np.ndarray | None:
    if CLS not in frame.columns or frame[CLS].isna().any() or frame.empty:
        return None
    return np.asarray(frame[CLS].tolist(), dtype=np.float32)


def sentiment_free(vectors: np.ndarray, labels: pd.Series, reference_vectors: np.ndarray,
                   reference_labels: pd.Series) -> np.ndarray:
    """Each vector minus the reference mean of its predicted label (the overall reference mean for
    a label the reference never got, or without labels)."""
    overall = reference_vectors.mean(axis=0)
    if labels.isna().all():
        return vectors - overall
    means = {label: reference_vectors[(reference_labels == label).to_numpy()].mean(axis=0)
             for label in reference_labels.dropna().unique()}
    return vectors - np.stack([means.get(label, overall) for label in labels])


def centroid_distances(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of each vector from the reference centroid, in reference standard deviations per
    dimension (root mean square over dimensions); reference rows leave themselves out of the centroid."""
    n = len(reference)
    mean, spread = reference.mean(axis=0), reference.std(axis=0) + 1e-6
    ref = np.sqrt((((reference - mean) / spread) ** 2).mean(axis=1)) * n / (n - 1)
    cur = np.sqrt((((current - mean) / spread) ** 2).mean(axis=1))
    return ref, cur


def drift_frames(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float | None]:
    """The columns Evidently compares (`TEXT_DESCRIPTORS`, `prediction` when the task has labels,
    `embedding_distance` when both sides have vectors) and the ratio of the mean distances."""
    columns = list(TEXT_DESCRIPTORS) + ([PREDICTION] if reference[PREDICTION].notna().all()
                                        and current[PREDICTION].notna().all() else [])
    ref, cur = reference[columns].copy(), current[columns].copy()
    ratio = None
    ref_vectors, cur_vectors = _vectors(reference), _vectors(current)
    if ref_vectors is not None and cur_vectors is not None and ref_vectors.shape[1] == cur_vectors.shape[1]:
        ref_labels, cur_labels = reference[PREDICTION].reset_index(drop=True), current[PREDICTION].reset_index(drop=True)
        ref_free = sentiment_free(ref_vectors, ref_labels, ref_vectors, ref_labels)
        cur_free = sentiment_free(cur_vectors, cur_labels, ref_vectors, ref_labels)
        ref[EMBEDDING], cur[EMBEDDING] = centroid_distances(ref_free, cur_free)
        ratio = float(cur[EMBEDDING].mean() / max(ref[EMBEDDING].mean(), 1e-12))
    return ref.reset_index(drop=True), cur.reset_index(drop=True), ratio


def compare(reference: pd.DataFrame, current: pd.DataFrame) -> DriftResult:
    """Evidently's drift tests of every descriptor, the drift score and the HTML report."""
    from tlflow.monitoring.evidently_api import DataDefinition, Dataset, DriftedColumnsCount, Report, ValueDrift

    if len(reference) < 2 or len(current) < 2:
        raise ValueError(f"drift needs at least 2 rows on each side (reference {len(reference)}, "
                         f"current {len(current)})")
    ref, cur, ratio = drift_frames(reference, current)
    numerical = [c for c in ref.columns if c != PREDICTION]
    categorical = [c for c in ref.columns if c == PREDICTION]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    columns = list(ref.columns)
    report = Report([DriftedColumnsCount(columns=columns), *(ValueDrift(column=c) for c in columns)],
                    include_tests=True)
    with warnings.catch_warnings():  # correlations of a constant column (no non-ASCII text at all)
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(Dataset.from_pandas(cur, data_definition=definition),
                              Dataset.from_pandas(ref, data_definition=definition))
    results = snapshot.dict()
    share = next(m["value"]["share"] for m in results["metrics"] if m["config"]["type"].endswith(":DriftedColumnsCount"))
    failed = {t["metric_config"]["params"]["column"] for t in results["tests"]
              if t["status"] == "FAIL" and "column" in t["metric_config"].get("params", {})}
    found = []
    for m in results["metrics"]:
        config = m["config"]
        if config["type"].endswith(":ValueDrift"):
            found.append(ColumnDrift(config["column"], str(config.get("method", "")), float(m["value"]),
                                     float(config.get("threshold") or 0), config["column"] in failed))
    return DriftResult(score=float(share), columns=found, reference_rows=len(ref), current_rows=len(cur),
                       embedding_ratio=ratio, html=snapshot.get_html_str(as_iframe=False))
