"""`bench/scaling.py` builds its large training files by resampling SST-2 with seeded word-level
edits (reproducible, labels kept, never a dev/test text), and `benchlib.append_job` keeps every
earlier job of a results file."""

import json
import random

import pytest
from benchlib import append_job
from scaling import perturb, write_train

pytestmark = [pytest.mark.unit]


def test_perturb_makes_one_word_level_edit():
    words = "a b c d e".split()
    rng = random.Random(0)
    for _ in range(200):
        out = perturb(words, rng)
        assert sorted(out) != sorted(words) or out != words  # dropped/repeated changes the bag, a swap the order
        assert abs(len(out) - len(words)) <= 1
        assert set(out) <= set(words)
    assert perturb(["only"], rng) == ["only", "only"]


def test_write_train_is_seeded_keeps_labels_and_avoids_held_out_texts(tmp_path):
    source = tmp_path / "train.tsv"
    rows = [("good film indeed", "1"), ("bad film", "0"), ("so so plot here", "1")]
    source.write_text("sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows), encoding="utf-8")
    held_out = {"film bad"}  # the swap of "bad film"
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    made = write_train(source, a, 500, seed=7, probability=0.9, held_out=held_out)
    write_train(source, b, 500, seed=7, probability=0.9, held_out=held_out)
    assert a.read_text() == b.read_text()
    lines = a.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "sentence\tlabel" and len(lines) == 501 == made["rows"] + 1
    labels = {s: label for s, label in rows}
    for line in lines[1:]:
        text, label = line.split("\t")
        assert text.strip().lower() not in held_out
        sources = [s for s in labels
                   if set(text.split()) <= set(s.split()) and abs(len(text.split()) - len(s.split())) <= 1]
        assert sources and all(labels[s] == label for s in sources), text
    assert 0.7 * 500 < made["perturbed_rows"] < 500


def test_append_job_keeps_earlier_jobs(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"date": "old"}), encoding="utf-8")  # a file of the single-job format
    assert append_job(path, {"date": "new"}) == 2
    assert append_job(path, {"date": "newer"}) == 3
    assert [j["date"] for j in json.loads(path.read_text(encoding="utf-8"))] == ["old", "new", "newer"]


def _run(rows, anon_peak, rss_peak, seconds=1.0):
    stage = {"seconds": seconds * rows / 1e5, "rss_start_mb": 500.0, "peak_rss_mb": rss_peak, "peak_anon_mb": anon_peak}
    from scaling import STAGES
    return {"train_rows": rows, "stages": {name: dict(stage) for name in STAGES}}


def test_memory_is_judged_flat_on_anonymous_memory_not_on_mapped_file_pages():
    from scaling import summarise

    # RSS grows 50 MB per 100k rows (mapped feature pages), anonymous memory 5 MB: flat
    flat = summarise([_run(100_000, 600.0, 700.0), _run(1_000_000, 645.0, 1150.0)])
    assert all(v["memory_flat"] for v in flat.values())
    assert flat["tokenize"]["anon_growth_mb_per_100k_rows"] == pytest.approx(5.0)
    assert flat["tokenize"]["memory_growth_mb_per_100k_rows"] == pytest.approx(50.0)
    assert flat["read"]["linear"] and flat["read"]["time_exponent"] == pytest.approx(1.0)
    # anonymous memory growing 30 MB per 100k rows is not flat
    grows = summarise([_run(100_000, 600.0, 700.0), _run(1_000_000, 870.0, 970.0)])
    assert not any(v["memory_flat"] for v in grows.values())
