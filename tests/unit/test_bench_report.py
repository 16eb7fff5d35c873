"""bench/report.py: which job a row describes, and the inference row's allocator cross-check."""

import pytest
from report import inference, latest_frozen

pytestmark = [pytest.mark.unit]


def _job(date: str, geomean: float, low: float, overridden=(), met: bool = False) -> dict:
    variant = {"geomean": geomean, "low": low, "high": geomean + 0.1, "job_low": low, "job_high": geomean + 0.1,
               "n": 10, "largest_drop_pt": 0.33}
    return {"date": date, "settings_overridden": list(overridden), "allocator": "libjemalloc.so.2",
            "settings": {"metric": "accuracy", "test_examples": 1821}, "summary": {},
            "pooled": {"jobs": ["a", "b"], "variants": {"onnx-int8": variant},
                       "goal_met_by": "onnx-int8" if met else None}}


def test_the_row_describes_the_newest_frozen_job_and_appends_the_later_glibc_cross_check():
    old, frozen = _job("2026-12-01", 1.5, 1.4), _job("2026-12-05", 2.23, 2.13, met=True)
    glibc = _job("2026-12-05", 1.87, 1.73, overridden=["environment"])
    history = [old, frozen, glibc]
    assert latest_frozen(history) is frozen
    assert latest_frozen([glibc]) is glibc  # nothing frozen: the newest job
    what, measured, goal, met = inference(frozen, history)
    assert measured.startswith("jemalloc for every contender: onnx-int8 2.23x [2.13, 2.33]")
    assert "glibc malloc for every contender (`--glibc`): onnx-int8 1.87x [1.73, 1.97]" in measured
    assert measured.endswith("over 2 job(s): not met") and met == "**met**"
    assert "--glibc" not in inference(old, [old])[1]  # no cross-check after it
