"""The `select` section: one-line errors before any work (`tlflow select`), a trial's draws written
into the config, the winner (best validation score, the cheaper among equals), and its final run on
train + validation (`select.retrain_on`)."""

import optuna
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tlflow.config import ConfigError, load_config
from tlflow.config.selection import SearchRange
from tlflow.data.readers import load_labelled_data
from tlflow.registry.fingerprint import Fingerprint
from tlflow.selection import study as studies
from tlflow.selection.checks import check_selection
from tlflow.selection.space import apply_params, retrain_config, search_config, suggest
from tlflow.task_types.registry import check_config, task_type_for

pytestmark = [pytest.mark.unit]
runner = CliRunner()


def _cfg(*sets: str):
    """select_mrpc.yaml with the packaged candidate only (mpnet-base needs `make bases`)."""
    return check_config(load_config("configs/select_mrpc.yaml", ["select.candidates=[minilm-l6]", *sets]))


@pytest.mark.parametrize(("sets", "message"), [
    (["select.metric=accuracy_top5"], "select.metric: 'accuracy_top5' is not a validation metric of sentence-pair"),
    (["select.space.dropout={low: 0.1, high: 1.5}"], "select.space.dropout: 1.5 is not a valid model.dropout"),
    (["select.candidates=[no/such/folder]"], "select.candidates: 'no/such/folder' is not a packaged base"),
    (["select.retrain_on=train_and_validation", "finetune.early_stopping={patience: 2}"],
     "select.retrain_on: train_and_validation leaves no validation split for finetune.early_stopping"),
])
def test_bad_selection_is_one_line(sets, message):
    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.")):
        check_selection(_cfg(*sets))


def test_bad_range_and_missing_section_at_the_command_line():
    result = runner.invoke(app, ["select", "configs/mrpc.yaml"])
    assert result.exit_code == 2 and "select: the config has no `select` section" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["select", "configs/select_mrpc.yaml", "--set", "select.space.epochs={low: 3, high: 1}"])
    assert result.exit_code == 2 and "low 3 is above high 1" in result.output


def test_draws_go_into_their_sections_and_the_select_section_is_dropped():
    cfg = _cfg()
    trial = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)).ask()
    params = suggest(trial, cfg.select.candidates, cfg.select.space)
    assert set(params) == {"candidate", *cfg.select.space}
    assert params["batch_size"] in (16, 32) and isinstance(params["batch_size"], int)
    assert 2e-5 <= params["learning_rate"] <= 2e-4
    run = apply_params(cfg, params, threads=1, method="head", learning_rate=1e-3)
    assert run.select is None and run.model.base == params["candidate"] and run.finetune.method == "head"
    assert run.finetune.learning_rate == 1e-3 and run.finetune.threads == 1  # overrides win over draws
    assert (run.model.dropout, run.finetune.batch_size) == (params["dropout"], params["batch_size"])
    assert run.hash() != cfg.hash() and cfg.finetune.learning_rate == 1e-4  # the original is unchanged


def test_winner_is_the_best_then_the_cheapest():
    study = optuna.create_study(direction="maximize")
    for value, seconds in ((0.8, 10.0), (0.9, 30.0), (0.9, 20.0)):
        trial = study.ask({"candidate": optuna.distributions.CategoricalDistribution(["a", "b"])})
        trial.set_user_attr(studies.SECONDS, seconds)
        study.tell(trial, value)
    assert studies.winner(study).number == 2
    rows = studies.trial_rows(study)
    assert [r["state"] for r in rows] == ["complete"] * 3 and rows[2]["seconds"] == 20.0


def test_search_range_is_a_range_or_choices():
    with pytest.raises(ValueError, match="a log-scale range needs low > 0"):
        SearchRange(low=0, high=1, log=True)
    with pytest.raises(ValueError, match="not both"):
        SearchRange(low=0, high=1, choices=[1])


def test_retrain_on_train_and_validation_trains_on_both_and_fingerprints_both(project, tiny_config):
    params = {"candidate": "minilm-l6", "epochs": 2.0}
    assert not retrain_config(_cfg(), params).data.train_on_validation  # default: train only
    cfg = tiny_config(**{"select.retrain_on": "train_and_validation"})
    run = retrain_config(cfg, params)
    assert run.select is None and run.data.train_on_validation and run.finetune.epochs == 2.0
    assert run.hash() != retrain_config(tiny_config(), params).hash()  # not taken for the train-only model
    assert not search_config(run).data.train_on_validation  # trials are always scored on validation
    with pytest.raises(ConfigError, match="finetune.early_stopping watches the validation split"):
        load_config("configs/sst2.yaml", ["data.train_on_validation=true", "finetune.early_stopping={patience: 2}"])

    task_type = task_type_for(run)
    loaded = load_labelled_data(run.data, task_type.dataset_spec())
    merged = loaded.with_validation_in_train()
    train, validation = loaded.splits["train"], loaded.splits["validation"]
    assert set(merged.splits) == {"train", "test"} and merged.splits["test"] is loaded.splits["test"]
    assert len(merged.splits["train"]) == len(train) + len(validation) == 400 + 200
    assert merged.splits["train"][len(train):]["text"] == validation["text"]
    assert merged.validated is loaded.validated  # what validation checked (before sampling) is unchanged
    fingerprint = Fingerprint.of(merged.splits["train"], task_type.overlap_columns)  # what register logs
    assert fingerprint.rows == 600 and len(fingerprint.rows_in(validation)) == len(validation)
    assert len(Fingerprint.of(train, task_type.overlap_columns).rows_in(validation)) == 0
