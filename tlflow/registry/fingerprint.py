"""A compact fingerprint of the rows a model was trained on, to find them in a later test split.

When the split definition changes (a random split replaced by an official one, say), the test
split the champion is re-scored on may hold rows it was trained on, and it scores higher than it
should. Every registered version's run keeps, as artifact `FINGERPRINT_ARTIFACT`, a 64-bit hash of
each training row's canonical text fields (the task type's `overlap_columns`, normalised as the
leakage check does: `tlflow.data.readers.overlap_keys`), sorted and stored once per distinct row;
about 11 bytes a row in JSON. The gate (`tlflow.registry.gate.champion_overlap`) counts the test
rows found in it. A version logged before fingerprints were kept has none: its overlap is unknown,
and the decision says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
import numpy as np
from datasets import Dataset
from mlflow.exceptions import MlflowException

from tlflow.data.readers import overlap_keys
from tlflow.data.row_store import frames_of
from tlflow.registry.gate import TrainedRows

#: Artifact of a version's run that holds the fingerprint of its training rows.
FINGERPRINT_ARTIFACT = "lineage/train_rows.json"
FORMAT = "tlflow-train-rows/1"


def row_digests(split: Dataset, columns: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each row's canonical key (`overlap_keys` of `columns`); 0 for a row whose
    key is blank (it matches nothing). Rows are read a chunk at a time."""
    keys = (k for frame in frames_of(split, columns) for k in overlap_keys(frame, list(columns)))
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little") if k is not None else 0
         for k in keys),
        dtype=np.uint64, count=len(split),
    )


@dataclass(frozen=True)
class Fingerprint:
    """The distinct training-row hashes of one model, with the columns they were taken from."""

    columns: tuple[str, ...]
    rows: int  # training rows fingerprinted (duplicates and blank keys included)
    digests: np.ndarray  # sorted distinct uint64 hashes

    @classmethod
    def of(cls, train: Dataset, columns: Sequence[str]) -> Fingerprint:
        digests = row_digests(train, columns)
        return cls(tuple(columns), len(digests), np.unique(digests[digests != 0]))

    def rows_in(self, split: Dataset) -> np.ndarray | None:
        """Indices of the rows of `split` whose key is among the fingerprinted ones; None when the
        split lacks one of the fingerprint's columns (the overlap cannot be told)."""
        if not set(self.columns) <= set(split.column_names):
            return None
        digests = row_digests(split, self.columns)
        return np.flatnonzero((digests != 0) & np.isin(digests, self.digests))

    def to_json(self) -> str:
        packed = base64.b64encode(self.digests.astype("<u8").tobytes()).decode("ascii")
        return json.dumps({"format": FORMAT, "hash": "blake2b-64 of the normalised overlap key",
                           "columns": list(self.columns), "rows": self.rows, "distinct": len(self.digests),
                           "digests": packed})

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a training-row fingerprint ({data.get('format')!r}, expected {FORMAT!r})")
        digests = np.frombuffer(base64.b64decode(data["digests"]), dtype="<u8").astype(np.uint64)
        return cls(tuple(data["columns"]), int(data["rows"]), digests)


def log_fingerprint(train: Dataset, columns: Sequence[str]) -> Fingerprint:
    """Fingerprint the training split and log it to the active MLflow run (`FINGERPRINT_ARTIFACT`)."""
    fingerprint = Fingerprint.of(train, columns)
    mlflow.log_text(fingerprint.to_json(), FINGERPRINT_ARTIFACT)
    return fingerprint


def load_fingerprint(run_id: str | None) -> Fingerprint | None:
    """The fingerprint logged in run `run_id`; None when the run has none (an older version)."""
    if not run_id:
        return None
    try:
        return Fingerprint.from_json(mlflow.artifacts.load_text(f"runs:/{run_id}/{FINGERPRINT_ARTIFACT}"))
    except (MlflowException, OSError):
        return None


def trained_rows(run_id: str | None, split: Dataset) -> TrainedRows:
    """The rows of `split` the model of run `run_id` was trained on, as the gate takes them
    (`TrainedRows(None)`: no fingerprint, or one over columns the split lacks)."""
    fingerprint = load_fingerprint(run_id)
    return TrainedRows(fingerprint.rows_in(split) if fingerprint else None)
