"""The train/validation gap: the validation metrics measured on training rows as well, at every evaluation.

A model that scores much better on rows it trained on than on validation rows is overfitting; the
gap `gap/<metric>` (training rows' `gap/train_<metric>` minus `val_<metric>`) logged beside the curves
shows when it starts. The training
rows are a seeded subset no larger than the validation split, so measuring the gap costs at most
one more validation pass.
"""

from __future__ import annotations

from datasets import Dataset


def gap_rows(train: Dataset | None, validation: Dataset | None, limit: int, seed: int) -> Dataset | None:
    """A seeded subset of `train` of at most `limit` rows and no more than `validation` has; None
    when the gap is not measured (`limit` 0, or a split is missing)."""
    if not limit or train is None or validation is None or not len(train) or not len(validation):
        return None
    n = min(limit, len(validation), len(train))
    return train.shuffle(seed=seed).select(range(n))


def gap_metrics(train: dict[str, float], val: dict[str, float]) -> dict[str, float]:
    """`gap/train_<metric>` and `gap/<metric>` (train minus validation) of every metric both have
    (MLflow section `gap`)."""
    out = {f"gap/train_{k}": v for k, v in train.items()}
    out.update({f"gap/{k}": v - val[k] for k, v in train.items() if k in val})
    return out
