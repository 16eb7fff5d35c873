"""The hostile-input gauntlet: bad configs and bad data files given to the real `tlflow run`.

Each case drives the console script's function (`flows.cli.main`) in this process, against the
project's own MLflow store (and, for data faults, the session's temporary Prefect server), and
asserts the class of behaviour rather than one message:

* exit status 2 for a config fault, 1 for a data fault;
* the first line of stderr is `error: ...` and names the field (config) or the file and row (data,
  or the file alone where no row applies); no traceback anywhere, and any further line is the
  indented report or the line saying what was left undone;
* nothing left behind: no new registered model or version, no MLflow run left RUNNING or FAILED
  without a note saying why, no tokenized cache, checkpoint or other file outside the validation
  report the message points to.

The library-level tests of the same faults (exact wording, hints) are in
tests/unit/test_config_faults.py, tests/data/test_teaching_errors.py and tests/data/test_formats.py;
here the point is the whole command, end to end. Config faults stop before any server starts or
heavy import; data faults stop in the flow's validation stage, before tokenizing or training.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from flows.cli import main
from tlflow import paths
from tlflow.registry import tracking
from tlflow.registry.abandoned_runs import NOTE_TAG

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "tests" / "assets"
CASES = Path("cases")  # inside the project folder: every case's own config and files

#: A config that trains in a second if nothing were wrong: a random 1-layer model on the case's files.
BASE: dict = {
    "name": "gauntlet",
    "paths": {"data_roots": [str(CASES)]},
    "privacy": {"pii": "off"},
    "model": {"init": "random", "num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64,
              "max_length": 32},
    "finetune": {"epochs": 1, "batch_size": 8, "min_steps": 0},
    "promote": {"trivial_baseline": False},
}
TEXT_DATA = {"format": "csv", "label_names": ["neg", "pos"]}


def merged(base: dict, patch: dict) -> dict:
    out = dict(base)
    for key, value in patch.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def reviews(n: int = 24, tag: str = "train") -> str:
    """A clean CSV body: `n` short reviews, both labels."""
    return "text,label\n" + "".join(f"{tag} review {i} was {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n"
                                    for i in range(n))


@dataclass(frozen=True)
class Case:
    """One hostile input. `files`: name -> bytes, written to the case's folder; `config`: patch of
    BASE (or the raw bytes of the config file); `expect`: what the first line must name, with
    `{d}` standing for the case's folder."""

    id: str
    expect: str
    config: dict | bytes = field(default_factory=dict)
    files: dict[str, bytes | Callable[[Path], None]] = field(default_factory=dict)
    sets: tuple[str, ...] = ()
    argv: tuple[str, ...] | None = None  # instead of `run <config>`


def text_case(id: str, expect: str, train: bytes | Callable[[Path], None], name: str = "train.csv",
              data: dict | None = None, test: bytes | None = None) -> Case:
    """A text-classification case: `train` (file `name`) is the hostile one, test is clean."""
    files = {name: train, "test.csv": test if test is not None else reviews(8, "test").encode()}
    return Case(id, expect, {"data": {**TEXT_DATA, "files": {"train": f"{{d}}/{name}", "test": "{d}/test.csv"},
                                      **(data or {})}}, files)


def config_case(id: str, field_: str, patch: dict | bytes | None = None, *sets: str) -> Case:
    """A config fault on otherwise clean data: `patch` of a clean text-classification config (or the
    raw bytes of the whole file), `sets` as `--set` overrides; the first line must name `field_`."""
    clean = {"data": {**TEXT_DATA, "files": {"train": "{d}/train.csv", "test": "{d}/test.csv"}}}
    config = patch if isinstance(patch, bytes) else merged(clean, patch or {})
    return Case(id, field_, config, {"train.csv": reviews().encode(), "test.csv": reviews(8, "test").encode()}, sets)


# --------------------------------------------------------------------------- config faults (exit 2)

CONFIG_FAULTS = [
    config_case("label-names-blank", "data.label_names", {"data": {"label_names": ["neg", " "]}}),
    config_case("label-names-single", "data.label_names", {"data": {"label_names": ["pos"]}}),
    config_case("label-names-numbers", "data.label_names", {"data": {"label_names": [0, 1]}}),
    config_case("label-names-duplicated", "data.label_names", {"data": {"label_names": ["neg", "pos", "neg"]}}),
    config_case("label-names-a-string", "data.label_names", {"data": {"label_names": "neg,pos"}}),
    config_case("epochs-inf", "finetune.epochs", {"finetune": {"epochs": float("inf")}}),
    config_case("epochs-a-word", "finetune.epochs", {"finetune": {"epochs": "two"}}),
    config_case("epochs-negative", "finetune.epochs", {"finetune": {"epochs": -1}}),
    config_case("learning-rate-nan", "finetune.learning_rate", {}, "finetune.learning_rate=.nan"),
    config_case("warmup-ratio-above-one", "finetune.warmup_ratio", {"finetune": {"warmup_ratio": 1.5}}),
    config_case("eval-batch-size-absurd", "evaluate.batch_size", {"evaluate": {"batch_size": 10**12}}),
    config_case("eval-batch-size-zero", "evaluate.batch_size", {"evaluate": {"batch_size": 0}}),
    config_case("max-length-negative", "model.max_length", {"model": {"max_length": -8}}),
    config_case("max-length-absurd", "model.max_length", {"model": {"max_length": 10**9}}),
    config_case("max-train-rows-negative", "data.max_train_rows", {"data": {"max_train_rows": -5}}),
    config_case("heads-do-not-divide-hidden", "num_heads", {"model": {"num_heads": 3}}),
    config_case("unknown-task-type", "task.type", {"task": {"type": "sentiment"}}),
    config_case("metric-of-another-task", "primary_metric", {"task": {"primary_metric": "bleu"}}),
    config_case("unknown-top-level-key", "finetun", {"finetun": {"epochs": 2}}),
    config_case("unknown-nested-key", "finetune.epoch", {"finetune": {"epoch": 2}}),
    config_case("unknown-data-format", "data.format", {"data": {"format": "xlsx"}}),
    config_case("split-fractions-above-one", "data.split", {"data": {"split": {"train": 0.9, "test": 0.5}}}),
    config_case("base-model-unknown", "model.base", {"model": {"init": "pretrained", "base": "no-such-org/no-model"}}),
    config_case("data-outside-roots", "data.files", {"data": {"files": {"train": "/etc/passwd"}}}),
    config_case("empty-name", "name", {"name": ""}),
    config_case("override-without-value", "finetune.epochs", {}, "finetune.epochs"),
    config_case("override-unknown-key", "data.nope", {}, "data.nope=1"),
    config_case("latin1-config", "{d}/config.yaml", "name: gauntlet\n# caf\xe9\n".encode("latin-1")),
    config_case("utf16-config", "{d}/config.yaml", "name: gauntlet\n".encode("utf-16")),
    config_case("binary-config", "{d}/config.yaml", gzip.compress(b"name: gauntlet\n")),
    config_case("yaml-syntax-error", "{d}/config.yaml", b"name: gauntlet\nfinetune: {epochs: 1\n"),
    config_case("yaml-list-not-mapping", "{d}/config.yaml", b"- name\n- gauntlet\n"),
    Case("config-file-missing", "{d}/missing.yaml", argv=("run", "{d}/missing.yaml")),
    Case("config-is-a-directory", "{d}", argv=("run", "{d}")),
]

# --------------------------------------------------------------------------- data faults (exit 1)

CLEAN = reviews().encode()
#: Line of the first row appended to CLEAN (header = line 1, 24 rows).
NEXT = 26


def with_row(row: str) -> bytes:
    return CLEAN + row.encode()


def truncated(raw: bytes) -> bytes:
    """The first half of a file (a download cut off)."""
    return raw[: len(raw) // 2]


def parquet(path: Path, truncate: bool = False) -> None:
    pd.DataFrame({"text": ["good film", "bad film"] * 6, "label": ["pos", "neg"] * 6}).to_parquet(path)
    if truncate:
        path.write_bytes(truncated(path.read_bytes()))


def conll_case(id: str, expect: str, train: str) -> Case:
    """A token-classification case: `train` (CoNLL lines) is the hostile file, test is clean."""
    tags = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    config = {"task": {"type": "token-classification", "primary_metric": "f1"},
              "data": {"format": "conll", "files": {"train": "{d}/train.txt", "test": "{d}/test.txt"},
                       "columns": {"tokens": 0, "tags": 3}, "label_names": tags},
              "validate": {"check_leakage": False}}
    return Case(id, expect, config, {"train.txt": train.encode(), "test.txt": (ASSETS / "conll_test.txt").read_bytes()})


CONLL_OK = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP O\n\n" * 6


def squad_case(id: str, expect: str, body: bytes) -> Case:
    """A question-answering case: `body` is the whole SQuAD-format file, split by article."""
    return Case(id, expect, {"task": {"type": "question-answering", "primary_metric": "f1"},
                             "data": {"format": "squad", "file": "{d}/squad.json", "group_column": "title",
                                      "split": {"train": 0.8, "validation": 0.1, "test": 0.1}}},
                {"squad.json": body})


def squad(answer_start: int = 0, drop: str | None = None) -> bytes:
    """A small SQuAD v1.1 file of ten articles; every `answer_start` shifted to it, or the field `drop`ped."""
    articles = []
    for i in range(10):
        qa = {"id": f"q{i}", "question": f"Who won Super Bowl {50 + i}?",
              "answers": [{"answer_start": answer_start, "text": "Denver Broncos"}]}
        if drop:
            qa.pop(drop)
        context = f"Denver Broncos defeated the Carolina Panthers 24-{i} to win Super Bowl {50 + i}."
        articles.append({"title": f"Super_Bowl_{50 + i}", "paragraphs": [{"context": context, "qas": [qa]}]})
    return json.dumps({"version": "1.1", "data": articles}).encode()


DATA_FAULTS = [
    text_case("empty-file", "{d}/train.csv", b""),
    text_case("header-only", "{d}/train.csv", b"text,label\n"),
    text_case("missing-label-column", "{d}/train.csv", CLEAN.replace(b"text,label", b"text,sentiment", 1)),
    text_case("missing-text-column", "{d}/train.csv", CLEAN.replace(b"text,label", b"review,label", 1)),
    text_case("unknown-label", f"{{d}}/train.csv:{NEXT}", with_row("an odd one,maybe\n")),
    text_case("blank-text", f"{{d}}/train.csv:{NEXT}", with_row("   ,pos\n")),
    text_case("empty-label", f"{{d}}/train.csv:{NEXT}", with_row("no label here,\n")),
    text_case("nan-label", f"{{d}}/train.csv:{NEXT}", with_row("not a number,NaN\n")),
    text_case("overlong-row", f"{{d}}/train.csv: line {NEXT}", with_row("one,pos,extra,fields\n")),
    text_case("unterminated-quote", "{d}/train.csv", with_row('"never closed,pos\n')),
    text_case("nul-byte", f"{{d}}/train.csv: line {NEXT}", with_row("bad\x00text,pos\n")),
    text_case("duplicated-header", "{d}/train.csv", b"text,label,text\n" + b"".join(
        f"review {i},{'pos' if i % 2 else 'neg'},more {i}\n".encode() for i in range(24))),
    text_case("wrong-delimiter", "{d}/train.csv", CLEAN.replace(b",", b"\t")),
    text_case("binary-file", "{d}/train.csv", bytes(range(256)) * 8),
    text_case("utf16-file", "{d}/train.csv", CLEAN.decode().encode("utf-16")),
    text_case("latin1-file", "{d}/train.csv", with_row("caf\xe9 au lait,pos\n").decode().encode("latin-1")),
    text_case("gzip-without-gz-name", "{d}/train.csv", gzip.compress(CLEAN)),
    text_case("truncated-gzip", "{d}/train.csv.gz", truncated(gzip.compress(reviews(2000).encode())), name="train.csv.gz"),
    text_case("parquet-named-csv", "{d}/train.csv", lambda p: parquet(p)),
    text_case("truncated-parquet", "{d}/train.parquet", lambda p: parquet(p, truncate=True), name="train.parquet",
              data={"format": "parquet"}),
    text_case("jsonl-broken-line", "{d}/train.jsonl: line 3",
              b'{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n{"text": "cut\n',
              name="train.jsonl", data={"format": "jsonl"}),
    text_case("jsonl-not-an-object", "{d}/train.jsonl: line 2", b'{"text": "good", "label": "pos"}\n[1, 2]\n',
              name="train.jsonl", data={"format": "jsonl"}),
    text_case("inferred-labels-single-class", "{d}/train.csv",
              ("text,label\n" + "".join(f"good {i},pos\n" for i in range(24))).encode(), data={"label_names": []},
              test=("text,label\n" + "".join(f"fine {i},pos\n" for i in range(8))).encode()),
    text_case("single-class", "{d}/train.csv", ("text,label\n" + "".join(f"good {i},pos\n" for i in range(24))).encode()),
    Case("data-file-missing", "{d}/nope.csv", {"data": {**TEXT_DATA, "files": {"train": "{d}/nope.csv",
                                                                             "test": "{d}/test.csv"}}},
         {"test.csv": reviews(8, "test").encode()}),
    Case("data-file-is-a-directory", "{d}/sub", {"data": {**TEXT_DATA, "files": {"train": "{d}/sub",
                                                                               "test": "{d}/test.csv"}}},
         {"sub/readme.txt": b"not data", "test.csv": reviews(8, "test").encode()}),
    conll_case("conll-missing-tag-field", "{d}/train.txt: line 2", "EU NNP B-NP B-ORG\nrejects\n\n" + CONLL_OK),
    conll_case("conll-unknown-tag", "{d}/train.txt:31", CONLL_OK + "Paris NNP B-NP B-CITY\n\n"),
    conll_case("conll-empty", "{d}/train.txt", "\n\n"),
    squad_case("squad-invalid-json", "{d}/squad.json", squad()[:-20]),
    squad_case("squad-no-data-key", "{d}/squad.json", b'{"version": "1.1", "articles": []}'),
    squad_case("squad-answer-not-in-context", "{d}/squad.json", squad(answer_start=30)),
    squad_case("squad-question-missing", "{d}/squad.json", squad(drop="question")),
]


# --------------------------------------------------------------------------- the gauntlet

#: Lines a command may print after the error: what the failure left undone.
CONSEQUENCES = {"Nothing was trained or registered."}
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \".*\", line \d+", re.M)


def write_case(case: Case, folder: Path) -> Path:
    """Write the case's files and config into `folder`; return the config's path."""
    folder.mkdir(parents=True)
    for name, body in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        body(folder / name) if callable(body) else (folder / name).write_bytes(body)
    path = folder / "config.yaml"
    if isinstance(case.config, bytes):
        path.write_bytes(case.config)
    else:
        text = yaml.safe_dump(merged(BASE, case.config), allow_unicode=True)
        path.write_text(text.replace("{d}", str(folder)), encoding="utf-8")
    return path


def leftovers(root: Path) -> set[str]:
    """Files a run may not leave behind: everything in the project but the MLflow store, Prefect's
    home, the cases' own inputs and the validation reports (the message points to them)."""
    kept = {paths.MLFLOW_STORE_DIR, paths.PREFECT_HOME, CASES, paths.REPORTS_DIR, paths.DATA_DIR, Path("configs"),
            Path("data.dvc")}
    found = set()
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = [d for d in dirs if rel / d not in kept]
        found |= {str(rel / f) for f in files if rel / f not in kept}
    return found


def registry_state(root: Path) -> dict:
    """What a failed command must leave as it was (and what it may add: FAILED runs with a note)."""
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000) if experiments else []
    return {
        "registered models": sorted(m.name for m in client.search_registered_models()),
        "model versions": sorted((v.name, v.version) for v in client.search_model_versions()),
        "runs left RUNNING": [r.info.run_id for r in runs if r.info.status == "RUNNING"],
        "runs FAILED without a note": [r.info.run_id for r in runs
                                       if r.info.status == "FAILED" and not r.data.tags.get(NOTE_TAG)],
        "files left behind": sorted(leftovers(root)),
    }


@pytest.fixture(scope="module")
def gauntlet(module_project) -> Path:
    """The project all cases run in (one MLflow store); the registry starts with a registered
    version of the cases' model, so that 'unchanged' means something."""
    tracking.configure()
    client = MlflowClient()
    client.create_registered_model(BASE["name"])
    (module_project / CASES).mkdir()
    client.create_model_version(BASE["name"], source=str(module_project / CASES))
    return module_project


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """`tlflow ARGV` through the console script's function; its exit status and stderr."""
    saved = sys.argv
    sys.argv = ["tlflow", *argv]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = saved
    return code, capsys.readouterr().err


def check_case(case: Case, code: int, root: Path, capsys) -> None:
    folder = root / CASES / case.id
    config = write_case(case, folder)
    argv = [a.replace("{d}", str(folder)) for a in case.argv] if case.argv else ["run", str(config)]
    argv += [f"--set={s}" for s in case.sets]
    before = registry_state(root)
    status, err = run_cli(argv, capsys)
    first = err.splitlines()[0] if err else ""
    expect = case.expect.replace("{d}", str(folder))
    assert status == code, f"exit {status}, expected {code}:\n{err}"
    assert not TRACEBACK.search(err), err
    assert first.startswith("error: ") and expect in first, f"first line does not name {expect!r}:\n{err}"
    assert all(line.startswith(("  ", "HTML report: ")) or line in CONSEQUENCES for line in err.splitlines()[1:]), err
    assert registry_state(root) == before
    assert mlflow.active_run() is None  # no run left open in the process either


@pytest.mark.parametrize("case", CONFIG_FAULTS, ids=lambda c: c.id)
def test_a_config_fault_is_exit_2_naming_the_field(case, gauntlet, capsys):
    check_case(case, 2, gauntlet, capsys)


@pytest.mark.flow
@pytest.mark.parametrize("case", DATA_FAULTS, ids=lambda c: c.id)
def test_a_data_fault_is_exit_1_naming_file_and_row(case, gauntlet, prefect_server, capsys):
    check_case(case, 1, gauntlet, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("case", [CONFIG_FAULTS[0], DATA_FAULTS[0]], ids=lambda c: c.id)
def test_the_console_script_behaves_the_same(case, gauntlet, prefect_server):
    """The installed `tlflow` script (a process of its own, on the session's Prefect server): the same
    exit status, first line and untouched registry as in-process."""
    from prefect.settings import PREFECT_API_URL

    folder = gauntlet / CASES / f"script-{case.id}"
    config = write_case(case, folder)
    before = registry_state(gauntlet)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run([str(Path(sys.executable).parent / "tlflow"), "run", str(config)], capture_output=True,
                          text=True, env=env, timeout=300)
    first = done.stderr.splitlines()[0] if done.stderr else ""
    assert done.returncode == (2 if case in CONFIG_FAULTS else 1), done.stderr
    assert first.startswith("error: ") and case.expect.replace("{d}", str(folder)) in first, done.stderr
    assert not TRACEBACK.search(done.stderr), done.stderr
    assert registry_state(gauntlet) == before
