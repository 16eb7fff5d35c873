"""Training progress as the loop reports it (`tlflow.training.progress`): one report per log point
with steps, loss, throughput and ETA, continuing from a checkpoint; the one-line summary and when
it is worth a log line."""

import pytest

from tests.unit.test_train import FEATURES, cfg, tiny_model
from tlflow.training.loop import finetune
from tlflow.training.progress import Cadence, TrainingProgress, duration, progress_reporter

pytestmark = [pytest.mark.unit]


def test_the_loop_reports_every_log_point_and_resumes_counting(tmp_path):
    reports: list[TrainingProgress] = []
    with progress_reporter(reports.append):
        finetune(tiny_model(), FEATURES, cfg(epochs=2, log_every_steps=4), 0, tmp_path, progress=False)
    assert [r.step for r in reports] == [4, 8, 12, 16] and {r.total_steps for r in reports} == {16}
    assert all(r.desc == "fine-tune" and r.samples_per_second > 0 and r.loss > 0 for r in reports)
    assert reports[0].eta_seconds > 0 and reports[-1].finished and reports[-1].eta_seconds == 0

    reports.clear()  # a longer budget over the same checkpoints: the run resumes at step 16
    with progress_reporter(reports.append):
        finetune(tiny_model(), FEATURES, cfg(epochs=3, log_every_steps=4), 0, tmp_path, progress=False)
    assert [r.step for r in reports] == [20, 24] and {r.resumed_from for r in reports} == {16}

    finetune(tiny_model(), FEATURES, cfg(epochs=1), 0, tmp_path / "quiet", progress=False)  # no reporter: none
    assert len(reports) == 2


def test_the_line_and_its_cadence():
    p = TrainingProgress("fine-tune", 120, 600, 0, 0.41234, 85.33, 62.5)
    assert p.line() == "fine-tune: step 120/600 (20%), loss 0.4123, 85.3 samples/s, ETA 4m10s"
    assert TrainingProgress("pretrain", 600, 600, 100, 2.0, 10.0, 50.0).line().endswith("done")
    assert (duration(35), duration(250), duration(3725)) == ("35s", "4m10s", "1h02m")
    cadence = Cadence(every_s=60, every_fraction=0.1)

    def at(step: int, now: float) -> bool:
        return cadence.due(TrainingProgress("x", step, 100, 0, 1.0, 1.0, now), now)

    assert [at(1, 0), at(5, 10), at(11, 20), at(12, 85), at(13, 86), at(100, 87)] == [
        True, False, True, True, False, True]  # first, <10 %, +10 %, 60 s later, neither, last
