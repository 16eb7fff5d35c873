"""The prediction window of a model: one JSON line per prediction, in one file per model and day.

`<root>/<model name>/predictions-<YYYY-MM-DD>.jsonl` (UTC days, so old days are deleted as whole
files). Each line holds when and by what the prediction was made (`time`, `source`: batch or serve,
`model_version`, `model_alias`), the request's `descriptors` and, only when the version was trained
under `privacy.pii: redact`, its `text` with every personal-data finding replaced by `<TYPE>`.
Under any other policy no text is stored: monitoring needs only the descriptors.

A batch of predictions is appended with one write, under a lock per process, so the lines of
concurrent requests of one server never interleave.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tlflow.config.schema import PrivacyConfig
from tlflow.data.pii.redact import redact_text
from tlflow.data.pii.scan import analyze
from tlflow.monitoring.descriptors import CLS, PREDICTION, TEXT_DESCRIPTORS, describe, prediction_labels, request_texts

_WRITE_LOCK = threading.Lock()
#: Columns of a window frame besides the descriptors.
META = ("time", "source", "model_version", "model_alias")


def model_folder(root: str | Path, name: str) -> Path:
    return Path(root) / name


def day_file(root: str | Path, name: str, when: float) -> Path:
    return model_folder(root, name) / f"predictions-{time.strftime('%Y-%m-%d', time.gmtime(when))}.jsonl"


def redacted_texts(texts: Sequence[str], privacy: PrivacyConfig) -> list[str]:
    """`texts` with each finding of the privacy settings' scan replaced by `<TYPE>`."""
    found = analyze(list(texts), list(privacy.entities), privacy.min_score)
    return [redact_text(t, found.get(t, [])) for t in texts]


@dataclass
class PredictionRecorder:
    """Appends the predictions of one model version to its window (`root`/`name`)."""

    root: Path
    name: str
    version: str
    alias: str
    source: str  # "batch" or "serve"
    privacy: PrivacyConfig | None = None  # the version's settings; texts are kept only under `redact`

    def record(self, task_model: object, requests: pd.DataFrame, predictions: pd.DataFrame) -> Path:
        """Describe `requests` (with `predictions`, the same rows) under `task_model` (a
        `tlflow.serving.TaskModel`: its tokenizer, encoder and request columns) and append them;
        returns the file."""
        texts = request_texts(requests, tuple(task_model.task.request_columns))
        frame = describe(texts, prediction_labels(predictions), task_model.model, task_model.tokenizer,
                         task_model.settings.max_length)
        if self.privacy is not None and self.privacy.pii == "redact":
            frame["text"] = redacted_texts(texts, self.privacy)
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        lines = [json.dumps({"time": stamp, "source": self.source, "model_version": self.version,
                             "model_alias": self.alias, **row}, ensure_ascii=False)
                 for row in frame.to_dict("records")]
        path = day_file(self.root, self.name, now)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _WRITE_LOCK, open(path, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return path


def window_files(path: str | Path) -> list[Path]:
    """The window files at `path` (a model's folder, or one file), oldest first."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no prediction window (nothing recorded yet: run batch_predict, or serve "
                                "with TLFLOW_SERVE_RECORD_DIR set)")
    return sorted(path.glob("predictions-*.jsonl"))


def read_window(path: str | Path, rows: int, version: str | None = None) -> pd.DataFrame:
    """The latest `rows` predictions at `path` (of model `version` only, when given), oldest first,
    with `META` and the descriptor columns. A line that is not a prediction record is an error
    naming file:line."""
    kept: list[pd.DataFrame] = []
    count = 0
    for file in reversed(window_files(path)):
        records = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                missing = [k for k in (*META, *TEXT_DESCRIPTORS, PREDICTION, CLS) if k not in record]
            except ValueError as err:
                raise ValueError(f"{file}:{number}: not a JSON prediction record ({err})") from None
            if missing:
                raise ValueError(f"{file}:{number}: prediction record without '{missing[0]}'")
            if version is None or str(record["model_version"]) == str(version):
                records.append(record)
        if records:
            kept.append(pd.DataFrame.from_records(records))
            count += len(records)
        if count >= rows:
            break
    if not kept:
        return pd.DataFrame(columns=[*META, *TEXT_DESCRIPTORS, PREDICTION, CLS])
    frame = pd.concat(list(reversed(kept)), ignore_index=True)
    return frame.tail(rows).reset_index(drop=True)
