"""The `select` section: which base models and settings `tlflow select` tries, and how.

A search space names, for each setting it varies, the range (or the choices) a trial draws from;
a setting the space leaves out keeps the value of the config's own section. The study lives in an
Optuna database so that a search can be resumed and shared by several machines.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Settings a search space may vary, and the config field each one sets.
SPACE_FIELDS: dict[str, tuple[str, str]] = {
    "learning_rate": ("finetune", "learning_rate"),
    "epochs": ("finetune", "epochs"),
    "batch_size": ("finetune", "batch_size"),
    "warmup_ratio": ("finetune", "warmup_ratio"),
    "weight_decay": ("finetune", "weight_decay"),
    "label_smoothing": ("finetune", "label_smoothing"),
    "dropout": ("model", "dropout"),
    "max_length": ("model", "max_length"),
}
#: Settings drawn as whole numbers.
INTEGER_SETTINGS = ("batch_size", "max_length")

SpaceKey = Literal["learning_rate", "epochs", "batch_size", "warmup_ratio", "weight_decay", "label_smoothing",
                   "dropout", "max_length"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SearchRange(_Section):
    """Where one setting is drawn from: `choices`, or a range from `low` to `high` (log scale,
    or in steps of `step`)."""

    low: float | None = Field(None, description="Smallest value of the range.")
    high: float | None = Field(None, description="Largest value of the range.")
    log: bool = Field(False, description="Draw on a log scale (e.g. the learning rate); needs low > 0.")
    step: float | None = Field(None, gt=0, description="Draw only low, low + step, ... (e.g. whole epochs: 1).")
    choices: list[float] = Field(default_factory=list, description="Draw one of these values (instead of a range).")

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchRange:
        if self.choices:
            if self.low is not None or self.high is not None:
                raise ValueError("give either `choices` or `low`/`high`, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give `low` and `high` (or `choices`)")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is above high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("`step` and `log` do not go together")
        return self


def _default_space() -> dict[str, SearchRange]:
    return {"learning_rate": SearchRange(low=1e-5, high=1e-4, log=True)}


class SelectConfig(_Section):
    """Model selection (`tlflow select`): candidates x search space, searched with Optuna (TPE,
    seeded) on the validation split, trials run as Prefect tasks on a Dask cluster."""

    candidates: list[str] = Field(
        default_factory=lambda: ["minilm-l6"], min_length=1,
        description="Base models to choose from: packaged aliases (minilm-l6, mpnet-base), local folders, or "
        "encoders of this project's pretraining as '<name>-encoder@<alias>' (e.g. sst2-encoder@latest-pretrained).",
    )
    space: dict[SpaceKey, SearchRange] = Field(
        default_factory=_default_space,
        description="Setting -> range or choices (learning_rate, epochs, batch_size, warmup_ratio, weight_decay, "
        "label_smoothing, dropout, max_length); a setting left out keeps the config's value.",
    )
    trials: int = Field(8, ge=1, description="Trials of the study (finished or pruned ones of a resumed study count).")
    timeout_s: float | None = Field(
        None, gt=0, description="No trial starts after this many seconds of the search; None: no limit."
    )
    metric: str | None = Field(
        None, description="Validation metric the search maximises; None: the task's primary metric. Never test."
    )
    pruner: Literal["median", "successive_halving", "none"] = Field(
        "median",
        description="Stops unpromising trials at the loop's evaluations: median (below the median of earlier trials "
        "at the same evaluation), successive_halving, or none.",
    )
    pruner_startup_trials: int = Field(
        2, ge=0, description="Trials that finish before the median pruner stops any (median pruner only)."
    )
    seed: int = Field(42, description="Seed of the TPE sampler (trial k draws with seed + k).")
    max_train_rows: int | None = Field(
        None, gt=0,
        description="Trials train on a seeded stratified subset of this many training rows (the winner's retrain "
        "uses data.max_train_rows); None: the same rows as the retrain.",
    )
    storage: str | None = Field(
        None,
        description="Database URL of the Optuna study (e.g. postgresql://user@host/optuna for several machines); "
        "None: the SQLite file .cache/tlflow/selection/optuna.db of this project.",
    )
    study_name: str | None = Field(
        None, description="Study to create or resume; None: '<name>-select-<digest of config and data version>'."
    )
    heartbeat_s: int = Field(
        30, ge=1,
        description="Seconds between a running trial's heartbeats; a trial silent for twice as long (its process "
        "was killed) is marked failed and retried once with the same settings.",
    )
    dask_address: str | None = Field(
        None, description="Scheduler address of an existing Dask cluster (tcp://host:8786); None: a local cluster."
    )
    workers: int = Field(2, ge=1, description="Worker processes of the local Dask cluster (one trial at a time each).")
    trial_threads: int = Field(
        0, ge=0, description="Torch threads of one trial; 0: the machine's cores shared by the workers (at least 1)."
    )
    retrain_on: Literal["train", "train_and_validation"] = Field(
        "train",
        description="What the winner's final run trains on, with the winner's settings (its epochs): the training "
        "split, or the training and validation splits together (data.train_on_validation: no validation curve; "
        "refused with finetune.early_stopping). Evaluated on the test split either way.",
    )
    linear_probe: bool = Field(
        True,
        description="Also train each candidate's frozen encoder with a task head only (finetune.method head) at "
        "the budget of its best trial: is fine-tuning needed at all?",
    )
    probe_learning_rate: float = Field(1e-3, gt=0, description="Learning rate of the linear probes (a head alone).")
