"""Which part of a dataset config decides the rows of each split, and a digest of it.

`readers.load_labelled_data` reads the files, cuts the splits, drops training rows that overlap
the evaluation splits and samples subsets. A split depends on the reading settings (format,
columns, labels, ...), on where its rows come from, and on its own subset, never on another
split's subset:

- **test**: its file (`files.test`, or `file` with `split` and `group_column`) and
  `max_eval_rows` (with `seed` when a subset is sampled); never `max_train_rows`,
  `drop_train_overlap` or the other splits' files;
- **validation**: likewise with its own file; without one (it may be carved out of the training
  rows) the training file and `seed`;
- **train**: everything but `max_eval_rows` (the overlap with the evaluation splits is dropped
  before they are sampled).

Fields not named here count for every split, so a reading setting added to `DataConfig` later
changes every split's digest rather than none. `split_digest` adds the task type: for the test
split it is the frozen evaluation split `eval_split` of the lineage (recorded beside `data_md5`);
with the data version too, it names one split of one dataset version (the MLflow dataset digest).
"""

from __future__ import annotations

from tlflow.config import DataConfig
from tlflow.data.cache import cache_key

#: Fields that only decide the training rows.
TRAIN_ONLY = ("max_train_rows", "drop_train_overlap")
#: Fields that only decide the evaluation rows.
EVAL_ONLY = ("max_eval_rows",)


def split_definition(cfg: DataConfig, split: str) -> dict:
    """The settings of `cfg` that decide the rows of `split` ('train', 'validation' or 'test')."""
    fields = cfg.model_dump(mode="json")
    if split == "train":
        return {k: v for k, v in fields.items() if k not in EVAL_ONLY}
    if split not in ("validation", "test"):
        raise ValueError(f"unknown split '{split}' (train, validation or test)")
    definition = {k: v for k, v in fields.items() if k not in TRAIN_ONLY}
    # A validation split may be carved out of the training rows (seeded by `seed`); a test split never is.
    own_file = bool(cfg.files) and split in cfg.files
    if cfg.files:
        definition["files"] = {split: cfg.files[split]} if own_file else {"train": cfg.files["train"]}
    if not cfg.max_eval_rows and (split == "test" or own_file):
        definition.pop("seed")  # seeds only the carve-out and the evaluation subsets
    return definition


def split_digest(cfg: DataConfig, split: str, task_type: str | None, data_md5: str = "") -> str:
    """Digest of (task type, the definition of `split`, and the data version `data_md5` when given):
    with the data version, equal digests mean equal rows."""
    parts = {"task": task_type, "split": split, "definition": split_definition(cfg, split)}
    return cache_key(**parts, **({"data_md5": data_md5} if data_md5 else {}))
