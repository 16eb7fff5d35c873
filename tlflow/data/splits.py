"""Seeded, pure splitting and sampling of canonical rows: per label (stratified) or by group.

Stratification uses the ``label`` column when the rows have one; rows without it form one group.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tlflow.config import SplitFractions
from tlflow.data.formats.common import DataError


def _label_groups(df: pd.DataFrame) -> list[np.ndarray]:
    """Row positions of each distinct label (missing labels form one group), in first-seen order."""
    if "label" not in df.columns:  # task types without labels: one group
        return [np.arange(len(df))] if len(df) else []
    codes, _ = pd.factorize(df["label"].astype(object), use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, bounds) if len(order) else []


def _partition(df: pd.DataFrame, fractions: dict[str, float], seed: int) -> dict[str, pd.DataFrame]:
    """Per-label proportional partition; 'train' takes the rounding remainder and >= 1 row per label."""
    rng = np.random.default_rng(seed)
    others = [name for name in fractions if name != "train"]
    picked: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    for positions in _label_groups(df):
        n = len(positions)
        positions = rng.permutation(positions)
        counts = {name: int(math.floor(n * fractions[name] + 0.5)) for name in others}
        while n - sum(counts.values()) < 1 and any(counts.values()):
            biggest = max(others, key=lambda name: counts[name])
            counts[biggest] -= 1
        start = 0
        for name in others:
            picked[name].append(positions[start : start + counts[name]])
            start += counts[name]
        picked["train"].append(positions[start:])
    out = {}
    for name, chunks in picked.items():
        rows = np.sort(np.concatenate(chunks)) if chunks else np.array([], dtype=int)
        out[name] = df.iloc[rows].reset_index(drop=True)
    return out


def stratified_split(df: pd.DataFrame, fractions: SplitFractions) -> dict[str, pd.DataFrame]:
    """Split rows into train/validation/test, per label in proportion to ``fractions``.

    Pure and seeded by ``fractions.seed``: the same rows and seed give the same splits. Each label
    is shuffled and cut separately (counts rounded half up); train takes the remainder and keeps
    at least one row of every label, so every label with >= 3 rows (indeed >= 1) lands in train.
    A validation fraction of 0 gives no 'validation' key. Rows keep their original order.
    """
    wanted = {"train": fractions.train, "validation": fractions.validation, "test": fractions.test}
    if not fractions.validation:
        del wanted["validation"]
    return _partition(df, wanted, fractions.seed)


def stratified_sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Seeded subset of ``n`` rows with each label's share kept (largest remainder rounding).

    Every label keeps at least one row when ``n`` is at least the number of labels (otherwise the
    ``n`` most frequent labels get one row each). ``n >= len(df)`` returns all rows. Pure; rows
    keep their original order.
    """
    if n >= len(df):
        return df.reset_index(drop=True)
    groups = _label_groups(df)
    sizes = np.array([len(g) for g in groups])
    if n < len(groups):
        alloc = np.zeros(len(groups), dtype=int)
        alloc[np.argsort(-sizes, kind="stable")[:n]] = 1
    else:
        quota = n * sizes / sizes.sum()
        alloc = np.maximum(np.floor(quota).astype(int), 1)
        while alloc.sum() > n:  # minimum-one bumps overshot: take from the most over-served label
            over = np.where(alloc > 1, alloc - quota, -np.inf)
            alloc[int(np.argmax(over))] -= 1
        while alloc.sum() < n:  # hand out the rest by largest remainder
            short = np.where(alloc < sizes, quota - alloc, -np.inf)
            alloc[int(np.argmax(short))] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(g, size=k, replace=False) for g, k in zip(groups, alloc) if k]
    return df.iloc[np.sort(np.concatenate(chosen))].reset_index(drop=True)


def grouped_split(df: pd.DataFrame, fractions: dict[str, float], column: str, seed: int) -> dict[str, pd.DataFrame]:
    """Split rows so that all rows sharing a value of `column` land in the same split.

    Groups are shuffled (seeded) and handed out in order: each split other than 'train' takes
    groups until it holds its fraction of the rows; 'train' takes the rest. Pure; rows keep their
    original order.
    """
    if column not in df.columns:
        raise DataError(f"group_column '{column}' is not a field of this task type (fields: {', '.join(df.columns)})")
    keys = df[column].astype(object).where(df[column].notna(), "")
    groups = list(dict.fromkeys(keys))
    order = np.random.default_rng(seed).permutation(len(groups))
    sizes = keys.value_counts()
    assignment: dict[Any, str] = {}
    targets = [(name, share * len(df)) for name, share in fractions.items() if name != "train"]
    taken = {name: 0 for name, _ in targets}
    for i in order:
        group = groups[i]
        for name, target in targets:
            if taken[name] < target:
                assignment[group], taken[name] = name, taken[name] + int(sizes[group])
                break
        else:
            assignment[group] = "train"
    split_of = keys.map(assignment)
    return {name: df[split_of == name].reset_index(drop=True) for name in fractions}


def split_by_column(df: pd.DataFrame, column: str, split_map: dict[str, str], name: str) -> dict[str, pd.DataFrame]:
    """The rows of each split named by the value of `column` (a value that is a split name stands
    for itself; `split_map` maps the others). Rows keep their order; 'validation' is absent when no
    row names it. `DataError` naming the first row of a value that names no split, and when no row
    names train or test; `name` is how messages call the column (e.g. "data.split_column 'set'")."""
    mapping = {**{s: s for s in ("train", "validation", "test")}, **split_map}
    values = df[column].tolist()
    unknown = list(dict.fromkeys(v for v in values if v not in mapping))
    if unknown:
        first = values.index(unknown[0])
        shown = ", ".join(repr(v) for v in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise DataError(f"{df['source_file'].iloc[first]}: line {int(df['source_row'].iloc[first])}: {name} value "
                        f"{unknown[0]!r} names no split: map it to train, validation or test in data.split_map "
                        f"(values without a split: {shown})")
    split_of = pd.Series([mapping[v] for v in values], index=df.index, dtype=object)
    out = {split: df[split_of == split].reset_index(drop=True) for split in ("train", "validation", "test")}
    for split in ("train", "test"):
        if out[split].empty:
            found = ", ".join(f"{v!r} -> {mapping[v]}" for v in dict.fromkeys(values))
            raise DataError(f"{df['source_file'].iloc[0]}: no row names the {split} split in {name} "
                            f"(values: {found}); map a value to {split} in data.split_map")
    if out["validation"].empty:
        del out["validation"]
    return out


def split_rows(df: pd.DataFrame, fractions: dict[str, float], group: str | None, seed: int) -> dict[str, pd.DataFrame]:
    """`grouped_split` by `group` when given, else a per-label partition (`stratified_split`'s)."""
    return grouped_split(df, fractions, group, seed) if group else _partition(df, fractions, seed)
