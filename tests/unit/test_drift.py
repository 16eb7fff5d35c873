"""The drift comparison and the prediction window on synthetic descriptors (real Evidently)."""

import json

import numpy as np
import pandas as pd
import pytest

from tlflow.monitoring.drift import EMBEDDING, centroid_distances, compare
from tlflow.monitoring.window import read_window

pytestmark = [pytest.mark.unit]


def _frame(rng, n: int, shift: float) -> pd.DataFrame:
    return pd.DataFrame({
        "text_length": rng.normal(60 + 80 * shift, 15, n).round(),
        "unk_share": rng.beta(1, 30, n),
        "non_ascii_share": np.zeros(n),
        "prediction": rng.choice(["negative", "positive"], n),
        "cls": rng.normal(shift, 1, (n, 16)).round(4).tolist(),
    })


def test_a_shifted_window_drifts_and_a_sample_of_the_same_data_does_not():
    rng = np.random.default_rng(0)
    reference = _frame(rng, 400, 0)
    same, shifted = compare(reference, _frame(rng, 250, 0)), compare(reference, _frame(rng, 250, 1))
    assert same.drifted == [] and same.score == 0
    assert set(shifted.drifted) == {"text_length", EMBEDDING} and shifted.score == pytest.approx(2 / 5)
    assert shifted.embedding_ratio > 1.3 > same.embedding_ratio > 0.8
    assert "<html" in shifted.html.lower() and "| text_length |" in shifted.table()


def test_embedding_distance_ignores_a_change_of_the_label_mix_only():
    rng = np.random.default_rng(1)
    reference = _frame(rng, 400, 0)
    reference["prediction"] = rng.choice(["negative", "positive"], 400, p=[0.8, 0.2])
    positive = reference["prediction"] == "positive"
    vectors = np.asarray(reference["cls"].tolist())
    vectors[positive.to_numpy()] += 3.0  # the label is written in the vectors
    reference["cls"] = vectors.tolist()
    current = pd.concat([reference[positive].head(70), reference[~positive].head(30)])  # mostly positive
    result = compare(reference, current)
    assert "prediction" in result.drifted and EMBEDDING not in result.drifted


def test_reference_rows_leave_themselves_out_of_the_centroid():
    ref, cur = centroid_distances(np.eye(3), np.eye(3))
    assert (ref > cur).all()


def test_the_window_keeps_the_latest_rows_of_the_version_and_names_a_bad_line(tmp_path):
    row = {"time": "t", "source": "batch", "model_alias": "champion", "text_length": 3, "unk_share": 0.0,
           "non_ascii_share": 0.0, "prediction": "positive", "cls": [0.1]}
    day1, day2 = tmp_path / "predictions-2026-12-01.jsonl", tmp_path / "predictions-2026-12-02.jsonl"
    day1.write_text("".join(json.dumps({**row, "model_version": "1", "text_length": i}) + "\n" for i in range(5)))
    day2.write_text("".join(json.dumps({**row, "model_version": v, "text_length": 10 + i}) + "\n"
                            for i, v in enumerate("1212")))
    window = read_window(tmp_path, rows=4, version="1")
    assert window["text_length"].tolist() == [3, 4, 10, 12]
    day2.write_text(day2.read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"predictions-2026-12-02.jsonl:5"):
        read_window(tmp_path, rows=4)
