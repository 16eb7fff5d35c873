"""Reading in chunks gives what reading whole gives: delimited files decoded a block at a time and
parsed a chunk of rows at a time, splits cut over memory-mapped rows, lineage without the rows."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import datasets
import pandas as pd
import pytest

from tlflow.config import DataConfig, PipelineConfig
from tlflow.data import row_store
from tlflow.data.formats.compression import iter_text, read_text
from tlflow.data.readers import DataError, load_labelled_data, read_table_chunks
from tlflow.data.row_store import POSITION, KeyColumns, RowFile, take_rows
from tlflow.data.version import data_version
from tlflow.registry import dataset_inputs as inputs
from tlflow.task_types.registry import get_task_type

pytestmark = [pytest.mark.unit]

SPEC = get_task_type("text-classification").dataset_spec()
WHOLE = 10**9  # a chunk size no test file reaches


def rows_of(n: int, start: int = 0) -> list[tuple[str, str]]:
    labels = ("pos", "neg", "neutral")
    return [(f"sentence {i} about {'films' if i % 2 else 'books'}", labels[i % 3]) for i in range(start, start + n)]


# --------------------------------------------------------------------------- parsing in chunks


CSV = ('text,label\r\n"a quoted\nline break",pos\r\nplain,neg\r\n"with ""quotes""",pos\r\n'
       + "".join(f"row {i},{'pos' if i % 2 else 'neg'}\r\n" for i in range(20))
       + "ragged,row,here\r\n" + '"another\r\nbreak",neg\r\n\r\n' + "last,pos")
TSV = "text\tlabel\n" + "".join(f"it's \"row {i}\t{'pos' if i % 3 else 'neg'}\n" for i in range(25)) + "one\ttoo\tmany\n\n"
TEXT = "".join(f"{'pos' if i % 2 else 'neg'} || row {i} || more\n" for i in range(23)) + "bad line\n"
CASES = {
    "csv": (CSV, {"format": "csv"}),
    "tsv": (TSV, {"format": "tsv"}),
    "text-maxsplit": (TEXT, {"format": "text", "separator": " || ", "header": False, "maxsplit": 1,
                             "text_columns": [1], "label_column": 0}),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("chunk_rows", [1, 4, 7])
def test_a_file_parsed_in_chunks_equals_one_parse(tmp_path, case, chunk_rows):
    body, options = CASES[case]
    path = tmp_path / "data.txt"
    path.write_bytes(body.encode("utf-8"))
    cfg = DataConfig(file=str(path), invalid_rows="drop", **options)
    one_invalid, chunked_invalid = [], []
    (one,) = read_table_chunks(path, cfg, SPEC, invalid=one_invalid, chunk_rows=WHOLE)
    chunks = list(read_table_chunks(path, cfg, SPEC, invalid=chunked_invalid, chunk_rows=chunk_rows))
    assert len(chunks) == -(-len(one) // chunk_rows) > 1  # really chunked
    assert all(len(c) <= chunk_rows for c in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), one)
    assert chunked_invalid == one_invalid and one_invalid  # the ragged lines, in line order
    assert [r.row for r in chunked_invalid] == sorted(r.row for r in chunked_invalid)


def test_a_ragged_line_after_the_first_chunks_names_its_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f"t{i},pos\n" for i in range(30)) + "x,y,z\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.csv: line 32: expected 2 fields separated by ',', found 3"):
        list(read_table_chunks(path, DataConfig(file=str(path), format="csv"), SPEC, chunk_rows=4))


# --------------------------------------------------------------------------- decoding in blocks


#: Texts longer than the first 4 KiB read at once (a BOM, multi-byte characters cut by blocks).
TEXTS = {
    "utf-8-bom": ("\ufeff" + "text,label\r\ncafé crème,pos\r\n漢字 and 🎬,neg\r\n" * 200, "utf-8"),
    "utf-16": ("text,label\nnaïve,pos\n" * 300, "utf-16"),
    "latin-1": ("text,label\nfaçade,pos\n" * 300, "latin-1"),
    "no-final-newline": ("a\nb\n" * 2500 + "last", "utf-8"),
}
COMPRESS = {"none": ("", lambda b: b), "gz": (".gz", gzip.compress), "bz2": (".bz2", bz2.compress),
            "xz": (".xz", lzma.compress)}


@pytest.mark.parametrize("name", TEXTS)
@pytest.mark.parametrize("compression", [*COMPRESS, "zip"])
@pytest.mark.parametrize("block", [1, 7, 4096])
def test_text_decoded_in_blocks_equals_one_read(tmp_path, name, compression, block):
    text, encoding = TEXTS[name]
    raw = text.encode(encoding)
    if compression == "zip":
        path = tmp_path / "data.csv.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("data.csv", raw)
    else:
        suffix, pack = COMPRESS[compression]
        path = tmp_path / f"data.csv{suffix}"
        path.write_bytes(pack(raw))
    pieces = list(iter_text(path, "data.csv", encoding, block=block))
    assert "".join(pieces) == read_text(path, "data.csv", encoding)
    assert all(p.endswith("\n") for p in pieces[:-1])
    assert len(pieces) > 1 or block == 4096


def test_a_bad_byte_late_in_a_file_is_named_as_a_whole_read_names_it(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\n" + b"".join(b"fine %d,pos\n" % i for i in range(500)) + b"bad \xff byte,neg\n")
    with pytest.raises(DataError) as whole:
        read_text(path, "train.csv", "utf-8")
    with pytest.raises(DataError) as blocks:
        list(iter_text(path, "train.csv", "utf-8", block=16))
    assert str(blocks.value) == str(whole.value)
    assert "line 502" in str(blocks.value)


# --------------------------------------------------------------------------- splits over chunks


def write_csv(path: Path, rows: list[tuple[str, str]], extra: str = "") -> str:
    path.write_text("text,label,set\n" + "".join(f"{t},{lab},{s}\n" for (t, lab), s in
                                                 zip(rows, ["train", "train", "dev", "test"] * len(rows))) + extra,
                    encoding="utf-8")
    return str(path)


def loaded_as_dict(loaded):
    return {"splits": {s: ds.to_dict() for s, ds in loaded.splits.items()},
            "whole": {s: ds.to_dict() for s, ds in loaded.whole.items()} if loaded.whole is not None else None,
            "labels": loaded.label_names, "dropped": loaded.dropped_overlap,
            "invalid": [(r.file, r.row, r.reason) for r in loaded.invalid]}


def single_file(tmp_path):
    rows = rows_of(60) + rows_of(6)  # the last 6 repeat the first: overlaps across splits
    return {"file": write_csv(tmp_path / "all.csv", rows, extra=",pos,train\nragged,x,y,z\n"),
            "format": "csv", "invalid_rows": "drop", "drop_train_overlap": True, "max_train_rows": 20,
            "max_eval_rows": 5}


def split_column(tmp_path):
    return {**single_file(tmp_path), "split_column": "set", "split_map": {"dev": "validation"}}


def files_without_validation(tmp_path):
    return {"files": {"train": write_csv(tmp_path / "train.csv", rows_of(40)),
                      "test": write_csv(tmp_path / "test.csv", rows_of(12, start=35))},
            "format": "csv", "drop_train_overlap": True, "max_train_rows": 25}


@pytest.mark.parametrize("layout", [single_file, split_column, files_without_validation])
@pytest.mark.parametrize("chunk_rows", [1, 4, 7])
def test_loading_in_chunks_gives_the_splits_of_one_chunk(tmp_path, layout, chunk_rows):
    cfg = DataConfig(**layout(tmp_path))
    one = loaded_as_dict(load_labelled_data(cfg, SPEC, chunk_rows=WHOLE))
    assert loaded_as_dict(load_labelled_data(cfg, SPEC, chunk_rows=chunk_rows)) == one
    assert one["whole"] is not None  # sampled: both the whole splits and the samples compared
    if layout is not split_column:
        assert one["dropped"] > 0


def test_the_splits_are_memory_mapped_and_a_failed_read_leaves_no_rows_file(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cfg = DataConfig(**single_file(tmp_path))
    loaded = load_labelled_data(cfg, SPEC, chunk_rows=4)
    for split in loaded.splits.values():
        (cached,) = split.cache_files
        assert Path(cached["filename"]).parent.parent == scratch
        assert Path(cached["filename"]).parent.name.startswith("tlflow-rows-")
        # a split is its own contiguous file, not an index selection read back one chunk per row
        assert split.data.table.column("text").num_chunks < len(split)
    before = set(scratch.iterdir())
    bad = DataConfig(**{**single_file(tmp_path), "invalid_rows": "fail"})  # the ragged last line: an error
    with pytest.raises(DataError, match=r"all.csv: line 69: expected 3 fields"):
        load_labelled_data(bad, SPEC, chunk_rows=4)
    assert set(scratch.iterdir()) == before
    # the training file is written whole before the test file fails: its rows go too
    files = files_without_validation(tmp_path)
    Path(files["files"]["test"]).write_text("text,label,set\nfine,pos,test\nragged,x,y,z\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test.csv: line 3: expected 3 fields"):
        load_labelled_data(DataConfig(**files), SPEC, chunk_rows=4)
    assert set(scratch.iterdir()) == before


def test_key_columns_keep_values_codes_and_numbers():
    keys = KeyColumns(["label", "group"], numbers=["source_row"])
    keys.append(pd.DataFrame({"label": pd.Series(["a", None, "b"], dtype=object), "source_row": [2, 3, 4]}))
    keys.append(pd.DataFrame({"label": pd.Series(["b", "a"], dtype=object), "source_row": [5, 9]}))
    frame = keys.frame()
    assert list(frame.columns) == ["label", "source_row", POSITION]  # no group column in the rows
    assert frame["label"].tolist() == ["a", None, "b", "b", "a"]
    assert frame["source_row"].tolist() == [2, 3, 4, 5, 9] and frame["source_row"].dtype == "int64"
    assert frame[POSITION].tolist() == [0, 1, 2, 3, 4]


def test_a_split_logged_to_mlflow_holds_only_its_schema_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "SCHEMA_ROWS", 5)
    data = single_file(tmp_path)
    cfg = PipelineConfig.model_validate({"name": "chunks", "data": data, "model": {"base": "minilm-l6"}})
    loaded = load_labelled_data(cfg.data, SPEC)
    logged = dict((split, ds) for ds, split in inputs.dataset_inputs(cfg, loaded.splits, "0" * 32,
                                                                      data_version(cfg.data), "label"))
    for split, ds in logged.items():
        assert len(ds.df) == min(5, len(loaded.splits[split]))
        assert ds.profile == {"num_rows": len(loaded.splits[split]), "num_elements": 2 * len(loaded.splits[split])}
        assert json.loads(json.dumps(ds.to_dict()))["profile"]


def test_rows_taken_from_a_file_keep_their_order_in_their_own_file():
    with RowFile(datasets.Features({"x": datasets.Value("int64")})) as rows:
        for start in range(0, 100, 7):  # record batches of 7 rows
            rows.append(pd.DataFrame({"x": range(start, min(start + 7, 100))}))
        source = rows.dataset()
    for positions in ([], [0, 6, 7, 50, 99], list(range(3, 100, 3)), list(range(100))):
        taken = take_rows(source, positions)
        assert taken["x"][:] == positions
        assert taken.cache_files[0]["filename"] != source.cache_files[0]["filename"]
    with pytest.raises(ValueError, match="increasing order"):
        take_rows(source, [3, 1])


KILLED_READER = """
import os, signal, sys
from tlflow.config import DataConfig
from tlflow.data.readers import load_labelled_data
from tlflow.task_types.registry import get_task_type
load_labelled_data(DataConfig(file=sys.argv[1], format="csv"), get_task_type("text-classification").dataset_spec())
os.kill(os.getpid(), signal.SIGKILL)  # no exit handler runs
"""


def test_the_rows_folders_of_a_killed_process_are_removed_by_the_next_reader(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    data = write_csv(tmp_path / "all.csv", rows_of(30))
    reader = subprocess.Popen([sys.executable, "-c", KILLED_READER, data], env={**os.environ, "TMPDIR": str(scratch)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = reader.communicate(timeout=300)
    assert reader.returncode == -signal.SIGKILL, err[-2000:]
    left = sorted(scratch.glob(f"tlflow-rows-*-{reader.pid}-*"))
    assert left and left == sorted(scratch.iterdir())  # its rows outlived it
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(row_store, "_SWEPT", True)  # this process has swept already
    features = datasets.Features({"x": datasets.Value("int64")})
    with RowFile(features) as mine:  # a live process's folder
        mine.dataset()
    assert sorted(row_store.sweep_orphans()) == left
    assert list(scratch.iterdir()) == [mine.folder]  # the live one is kept
    # a process's first RowFile sweeps
    orphan = scratch / f"{left[0].name}-again"
    orphan.mkdir()
    monkeypatch.setattr(row_store, "_SWEPT", False)
    with RowFile(features) as another:
        another.dataset()
    assert sorted(scratch.iterdir()) == sorted([mine.folder, another.folder])
