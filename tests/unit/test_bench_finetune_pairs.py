"""bench/finetune_throughput.py: pairs across jobs count for speed each time, a seed's accuracy once."""

import pytest
from finetune_throughput import compare

pytestmark = [pytest.mark.unit]

SETTINGS = {"ratio_confidence": 0.95, "equivalence_margin_pt": 0.5, "tost_alpha": 0.05}


def _run(contender: str, seed: int, speed: float, accuracy: float) -> dict:
    return {"contender": contender, "seed": seed, "samples_per_s": speed, "test_accuracy": accuracy,
            "work": {"samples": 100, "padded_tokens": 1000, "batches_sha256": "same"}}


def test_a_seed_run_again_in_a_later_job_adds_a_speed_pair_but_not_an_accuracy_pair():
    first = [_run("ours", 42, 130, 0.880), _run("trainer", 42, 100, 0.878),
             _run("ours", 43, 128, 0.875), _run("trainer", 43, 100, 0.879)]
    again = [_run("ours", 42, 120, 0.880), _run("trainer", 42, 100, 0.878)]  # same seed, same weights
    out = compare(first + again, ["a"] * 4 + ["b"] * 2, "trainer", SETTINGS)
    assert out["pairs"] == 3 and out["samples_per_s_ratio"]["n"] == 3
    assert out["accuracy_seeds"] == 2
    assert out["test_accuracy_tost_pt"]["mean_difference"] == pytest.approx(((88.0 - 87.8) + (87.5 - 87.9)) / 2)
    assert "test_accuracy_tost_pt" not in compare(first[:2] + again, ["a"] * 2 + ["b"] * 2, "trainer", SETTINGS)
