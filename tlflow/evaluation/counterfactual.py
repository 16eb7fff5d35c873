"""Counterfactual fairness audit on the Equity Evaluation Corpus (EEC; Kiritchenko & Mohammad 2018).

The EEC fills 11 sentence templates with a person (a name typical of African-American or European
Americans of either gender, or a noun phrase such as 'my sister') and an emotion word. Sentences
of one (template, emotion word) *cell* differ only in the person, so a fair model gives them the
same probabilities. For each audited dimension (gender: female vs male; race: African-American vs
European, names only) and each label the EEC emotions map to, the **paired gap** is the mean over
cells of (mean probability over the first group's persons in the cell - the same for the second
group); its interval is a seeded percentile bootstrap over cells. Per group, the mean probability
of each mapped label and the accuracy against the sentence's emotion (mapped through the
`label_map`; neutral sentences are left out) are reported beside it.

Pure functions over a frame of sentences and a frame of probabilities, plus `run_eec_audit`, which
predicts every sentence with a task type's own batched `probabilities`.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tlflow.config import ConfigError
from tlflow.config.schema import EEC_EMOTIONS, EecAuditConfig
from tlflow.errors import TlflowError

#: Header of the EEC csv, and the frame columns `read_eec` gives each field.
EEC_FIELDS = {"ID": "id", "Sentence": "sentence", "Template": "template", "Person": "person", "Gender": "gender",
              "Race": "race", "Emotion": "emotion", "Emotion word": "emotion_word"}
#: Audited dimensions: frame column and its two groups; a gap is the first group minus the second.
DIMENSIONS = {"gender": ("gender", ("female", "male")), "race": ("race", ("African-American", "European"))}
#: Allowed values of the constrained fields ("" where the field may be empty).
_ALLOWED = {"Gender": ("female", "male"), "Race": ("", "African-American", "European"), "Emotion": ("", *EEC_EMOTIONS)}
_REQUIRED = ("ID", "Sentence", "Template", "Person")
CELL = ["template", "emotion_word"]


class EecFileError(TlflowError, ValueError):
    """A missing or malformed EEC file (one line: file, row and field)."""


def read_eec(path: str | Path) -> pd.DataFrame:
    """The EEC sentences as a frame (columns of `EEC_FIELDS`, empty strings for empty fields).

    Raises EecFileError naming file, line and field for a wrong header, a row with too few or
    too many fields, an empty required field, a value outside the EEC's categories, or an
    emotion without its emotion word."""
    path = Path(path)
    if not path.is_file():
        raise EecFileError(f"{path}: EEC file not found (fairness.eec.file; `dvc pull` restores data/eec/)")
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != list(EEC_FIELDS):
                raise EecFileError(f"{path}:1: header is {header}, expected {','.join(EEC_FIELDS)}")
            rows = [_checked(path, reader.line_num, row) for row in reader]
    except UnicodeDecodeError as err:
        raise EecFileError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    if not rows:
        raise EecFileError(f"{path}: no sentences after the header")
    return pd.DataFrame(rows, columns=list(EEC_FIELDS.values()))


def _checked(path: Path, line: int, row: list[str]) -> list[str]:
    if len(row) != len(EEC_FIELDS):
        raise EecFileError(f"{path}:{line}: {len(row)} fields, expected {len(EEC_FIELDS)} ({','.join(EEC_FIELDS)})")
    values = dict(zip(EEC_FIELDS, (v.strip() for v in row), strict=True))
    for name in _REQUIRED:
        if not values[name]:
            raise EecFileError(f"{path}:{line}: field '{name}' is empty")
    for name, allowed in _ALLOWED.items():
        if values[name] not in allowed:
            shown = ", ".join(a or "(empty)" for a in allowed)
            raise EecFileError(f"{path}:{line}: field '{name}': {values[name]!r} is not one of {shown}")
    if values["Emotion"] and not values["Emotion word"]:
        raise EecFileError(f"{path}:{line}: field 'Emotion word' is empty for emotion {values['Emotion']!r}")
    return list(values.values())


def paired_differences(eec: pd.DataFrame, scores: pd.Series, column: str, groups: tuple[str, str]) -> np.ndarray:
    """Per (template, emotion word) cell holding both groups: mean score of the first group's
    sentences minus the second's (cells in sorted order)."""
    rows = eec[column].isin(groups)
    frame = eec.loc[rows, [*CELL, column]].assign(score=scores[rows].to_numpy())
    means = frame.groupby([*CELL, column])["score"].mean().unstack(column).dropna()
    if means.empty or not set(groups) <= set(means.columns):
        return np.zeros(0)
    return (means[groups[0]] - means[groups[1]]).to_numpy()


def bootstrap_mean(values: np.ndarray, samples: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile interval at `confidence` over `samples`
    seeded resamples (with replacement) of `values`."""
    if len(values) == 0:
        raise ValueError("no paired cells to bootstrap")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(values.mean()), float(low), float(high)


def metric_key(*parts: str) -> str:
    """An MLflow metric name from parts: lower case, runs of other characters as one '_'."""
    return "_".join(re.sub(r"[^0-9a-z]+", "_", p.lower()).strip("_") for p in parts)


@dataclass(frozen=True)
class CounterfactualAudit:
    """The audit's numbers: `groups` (one row per dimension and group: sentences, mean probability
    of each mapped label, accuracy over the scored emotional sentences) and `gaps` (one row per
    dimension and label: paired gap, interval, cells)."""

    groups: pd.DataFrame
    gaps: pd.DataFrame
    labels: list[str]
    label_map: dict[str, str]
    confidence: float
    bootstrap_samples: int
    sentences: int
    predictions: pd.DataFrame  # per sentence: id, person, gender, race, emotion, predicted, p(label)...

    def gaps_dict(self) -> dict[str, tuple[float, float, float]]:
        """name ('gender/positive') -> (gap, low, high): `Evaluation.counterfactual_gaps`."""
        return {r.name: (r.gap, r.low, r.high) for r in self.gaps.itertuples()}

    def metrics(self) -> dict[str, float]:
        out = {}
        for r in self.gaps.itertuples():
            out |= {metric_key("eec_gap", r.dimension, r.label): r.gap,
                    metric_key("eec_gap_low", r.dimension, r.label): r.low,
                    metric_key("eec_gap_high", r.dimension, r.label): r.high}
        for r in self.groups.to_dict("records"):
            out |= {metric_key("eec_mean", r["group"], label): r[f"p({label})"] for label in self.labels}
            if r["scored"]:
                out[metric_key("eec_accuracy", r["group"])] = r["accuracy"]
        return out

    def markdown(self, title: str = "Counterfactual fairness audit (EEC)") -> str:
        level = f"{int(self.confidence * 100)}%"
        mapping = ", ".join(f"{k} → {v}" for k, v in sorted(self.label_map.items()))
        lines = [f"### {title}", "",
                 f"{self.sentences:,} EEC sentences; label map {mapping}. Paired gap: mean over (template, emotion "
                 f"word) cells of (first group − second group) mean probability; {level} bootstrap interval over "
                 f"cells ({self.bootstrap_samples} resamples). Accuracy leaves the neutral sentences out.", "",
                 "| group | sentences | " + " | ".join(f"P({x})" for x in self.labels) + " | accuracy (scored) |",
                 "|---|---:|" + "---:|" * len(self.labels) + "---:|"]
        for r in self.groups.to_dict("records"):
            acc = f"{r['accuracy']:.4f} ({r['scored']})" if r["scored"] else "–"
            probs = " | ".join(f"{r[f'p({x})']:.4f}" for x in self.labels)
            lines.append(f"| {r['dimension']}: {r['group']} | {r['sentences']} | {probs} | {acc} |")
        lines += ["", f"| gap | groups | paired gap | {level} interval | cells |", "|---|---|---:|---|---:|"]
        for r in self.gaps.itertuples():
            first, second = DIMENSIONS[r.dimension][1]
            lines.append(f"| {r.name} | {first} − {second} | {r.gap:+.4f} | [{r.low:+.4f}, {r.high:+.4f}] "
                         f"| {r.cells} |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"sentences": self.sentences, "label_map": self.label_map, "confidence": self.confidence,
                "bootstrap_samples": self.bootstrap_samples, "groups": self.groups.to_dict("records"),
                "gaps": self.gaps.to_dict("records")}

    def plot(self, path: Path, title: str = "") -> Path:
        """Horizontal bars of the paired gaps with their intervals as error bars, zero marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        g = self.gaps.iloc[::-1]
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(g)))
        err = np.vstack([g["gap"] - g["low"], g["high"] - g["gap"]])
        ax.barh(g["name"], g["gap"], xerr=err, capsize=4, color=["#c44e52" if lo > 0 or hi < 0 else "#4c72b0"
                                                                   for lo, hi in zip(g["low"], g["high"])])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"paired gap (first group − second), {int(self.confidence * 100)}% bootstrap interval\n"
                      "red: the interval excludes 0")
        ax.set_title(title or "EEC counterfactual gaps")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)

    def write(self, folder: Path, title: str = "") -> list[Path]:
        """The table (markdown, JSON), the plot (PNG) and the per-sentence predictions (csv) in `folder`."""
        folder = Path(folder)
        md = folder / "eec_gaps.md"
        md.write_text(self.markdown() + "\n", encoding="utf-8")
        js = folder / "eec_gaps.json"
        js.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        csv_path = folder / "eec_predictions.csv"
        self.predictions.to_csv(csv_path, index=False, float_format="%.4f")
        return [md, js, self.plot(folder / "eec_gaps.png", title), csv_path]


def audit(eec: pd.DataFrame, probs: pd.DataFrame, label_map: dict[str, str], confidence: float = 0.95,
          bootstrap_samples: int = 1000, seed: int = 0) -> CounterfactualAudit:
    """The audit of one model from its probabilities `probs` (one row per `eec` row, one column
    per model label, in the model's label order). ConfigError when `label_map` names a label
    the model does not have."""
    check_labels(label_map, list(probs.columns))
    if len(probs) != len(eec):
        raise ValueError(f"{len(probs)} probability rows for {len(eec)} sentences")
    probs = probs.reset_index(drop=True)
    eec = eec.reset_index(drop=True)
    labels = [c for c in probs.columns if c in set(label_map.values())]
    predicted = probs.idxmax(axis=1)
    expected = eec["emotion"].map(label_map)  # NaN for neutral sentences and unmapped emotions
    correct = (predicted == expected).where(expected.notna())
    groups = []
    for dimension, (column, names) in DIMENSIONS.items():
        for name in names:
            rows = eec[column] == name
            scored = correct[rows].dropna()
            groups.append({"dimension": dimension, "group": name, "sentences": int(rows.sum()),
                           **{f"p({x})": float(probs.loc[rows, x].mean()) for x in labels},
                           "accuracy": float(scored.mean()) if len(scored) else float("nan"), "scored": len(scored)})
    gaps = []
    for dimension, (column, names) in DIMENSIONS.items():
        for label in labels:
            diffs = paired_differences(eec, probs[label], column, names)
            if len(diffs) == 0:
                continue
            gap, low, high = bootstrap_mean(diffs, bootstrap_samples, confidence, seed)
            gaps.append({"name": f"{dimension}/{label}", "dimension": dimension, "label": label, "gap": gap,
                         "low": low, "high": high, "cells": len(diffs)})
    predictions = eec[["id", "person", "gender", "race", "emotion"]].assign(
        predicted=predicted, **{f"p({c})": probs[c] for c in probs.columns})
    return CounterfactualAudit(
        pd.DataFrame(groups),
        pd.DataFrame(gaps, columns=["name", "dimension", "label", "gap", "low", "high", "cells"]),
        labels, dict(label_map), confidence, bootstrap_samples, len(eec), predictions,
    )


def check_labels(label_map: dict[str, str], labels: list[str]) -> list[str]:
    """`labels` when every label `label_map` maps to is one of them; ConfigError (one line) otherwise."""
    unknown = sorted(set(label_map.values()) - set(labels))
    if unknown:
        raise ConfigError(f"fairness.eec.label_map: {', '.join(unknown)} is not a label of the model "
                          f"(its labels: {', '.join(map(str, labels))})")
    return labels


def model_labels(model) -> list[str]:
    """The model's label names in id order (its config's id2label)."""
    id2label = model.config.id2label
    return [str(id2label[i]) for i in range(len(id2label))]


def run_eec_audit(task_type, model, tokenizer, settings, eec_cfg: EecAuditConfig, seed: int) -> CounterfactualAudit:
    """Predict every EEC sentence with the task type's batched `probabilities` (the model's own
    tokenizer, `settings`' max_length and batch size) and audit the result."""
    labels = check_labels(eec_cfg.label_map, model_labels(model))  # before predicting anything
    eec = read_eec(eec_cfg.file)
    probs = task_type.probabilities(model, tokenizer, pd.DataFrame({"text": eec["sentence"]}), settings)
    return audit(eec, pd.DataFrame(probs, columns=labels), eec_cfg.label_map, eec_cfg.confidence,
                 eec_cfg.bootstrap_samples, seed)
