"""Commands that run the pipeline's Prefect flows, and the data checks on their own.

The flows (and with them Prefect, torch and transformers) are imported inside each command, after
the config has loaded: each command starts the temporary Prefect server first (`flows.ephemeral`),
so that it comes up while those import, and dies with the command; a Prefect API that stops
answering during the flow is one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from flows.commands.common import (
    ConfigArg,
    NameArg,
    SetOpt,
    VerboseOpt,
    fail,
    on_failure,
    pipeline_config,
    prepare_env,
    print_outcome,
    print_ui_commands,
)
from flows.ephemeral import EarlyServer, PrefectApiLost, api_loss_is_one_line, start_early
from tlflow.runtime import startup_imports

NOTHING_TRAINED = "Nothing was trained or registered."
#: What a run stopped by a lost Prefect API keeps. Prefect orchestrates tasks in this process, so
#: training goes on without the API; the loss surfaces at the next call that needs it (an artifact,
#: the flow's final state), before or after registration.
RESUMABLE = ("What it finished is kept (checkpoints, a version registered before the loss): run the same "
             "command again to resume from there.")


@contextmanager
def _running_flows(server: EarlyServer, consequence: str | None = NOTHING_TRAINED,
                   lost: str | None = RESUMABLE) -> Iterator[None]:
    """The block where a command runs its flow: the temporary Prefect server ready first,
    `consequence` said after an error, a Prefect API lost meanwhile one line (then `lost`)."""
    if consequence:
        on_failure(consequence)
    server.wait()
    try:
        with api_loss_is_one_line():
            yield
    except PrefectApiLost:
        if lost:
            on_failure(lost)
        raise


def run(
    config: ConfigArg = None,
    set_: SetOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's INFO logs in the terminal.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Train even when data, config and code match a registered "
                                                        "version.")] = False,
) -> None:
    """Run `training_pipeline` on CONFIG and print the outcome (nothing is retrained when data,
    config and code match a registered version, unless --force)."""
    with startup_imports():
        cfg = pipeline_config(config, set_)
        prepare_env(verbose)
        server = start_early()  # comes up while torch and transformers import
        from flows.training import training_pipeline

    with _running_flows(server):
        outcome = training_pipeline(cfg, force=force)
    print_outcome(cfg, outcome)


def pretrain(config: ConfigArg = None, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Run `pretraining_pipeline` (pretrain.mode scratch or continue) and register `<name>-encoder`."""
    with startup_imports():
        cfg = pipeline_config(config, set_)
        if cfg.pretrain.mode == "none":
            fail("pretrain.mode is 'none': set it to 'scratch' or 'continue' (e.g. --set pretrain.mode=scratch)", 2)
        prepare_env(verbose)
        server = start_early()
        from flows.pretraining import pretraining_pipeline

    with _running_flows(server):
        encoder = pretraining_pipeline(cfg)
    typer.echo(f"{cfg.name}-encoder v{encoder.version} registered; encoder files: {encoder.path}")
    print_ui_commands()


def report_transfer(config: ConfigArg = None, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Fine-tune CONFIG's task from random init, a scratch-pretrained encoder, the base checkpoint and
    the base after continued in-domain pretraining (same budget); print the comparison table."""
    with startup_imports():
        cfg = pipeline_config(config, set_)
        prepare_env(verbose)
        server = start_early()
        from flows.transfer import transfer_report
        from tlflow.evaluation.transfer import report_markdown

    with _running_flows(server, "The failing variant trained and registered nothing; variants finished before it "
                                "stay in MLflow.", lost=None):
        results = transfer_report(cfg)
    typer.echo(report_markdown(cfg.task.primary_metric, results))
    print_ui_commands()


def validate(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Run only the data checks of CONFIG and print the report (exit 1 when a check fails)."""
    with startup_imports():
        cfg = pipeline_config(config, set_)
        prepare_env(verbose=False)
        from tlflow.data.validation.stage import check_data
        from tlflow.task_types.registry import task_type_for

    task_type = task_type_for(cfg)
    loaded, report, path = check_data(cfg, task_type.dataset_spec(), task_type.data_checks(),
                                      text_fields=task_type.text_fields)
    typer.echo(report.summary())
    typer.echo(f"HTML report: {path}")
    if not report.success:
        raise typer.Exit(1)


def retrain(config: ConfigArg = None, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Run `retraining_pipeline`: keep the champion when data and config are unchanged, else train + gate."""
    with startup_imports():
        cfg = pipeline_config(config, set_)
        prepare_env(verbose)
        server = start_early()
        from flows.retraining import retraining_pipeline
        from tlflow.registry.retraining import RetrainingCheck

    with _running_flows(server):
        result = retraining_pipeline(cfg)
    if isinstance(result, RetrainingCheck):
        typer.echo(result.summary())
    else:
        print_outcome(cfg, result)


def predict(
    name: NameArg,
    input_file: Annotated[Path, typer.Argument(help="Requests: .csv, .tsv, .jsonl or .parquet with the task's request columns.")],
    output_file: Annotated[Path, typer.Argument(help="Where to write requests + predictions (.jsonl, .csv, .tsv, .parquet).")],
    alias: Annotated[str, typer.Option("--alias", help="Registry alias of the model to use.")] = "champion",
) -> None:
    """Run the `batch_predict` flow: predictions of NAME@ALIAS for every row of INPUT_FILE."""
    with startup_imports():
        prepare_env(verbose=False)
        server = start_early()
        from flows.batch import batch_predict

    with _running_flows(server, consequence=None, lost=None):
        path = batch_predict(name, str(input_file), str(output_file), alias)
    typer.echo(f"predictions written to {path}")


def monitor(
    config: ConfigArg = None,
    set_: SetOpt = None,
    window: Annotated[Path | None, typer.Option("--window", help="Prediction window folder or file (default: the "
                                                                  "model's folder under monitoring.windows_dir).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the `monitoring` flow: drift of the champion's latest predictions against its training
    rows; retraining is triggered when the drift score exceeds monitoring.threshold."""
    with startup_imports():
        cfg = pipeline_config(config, set_)
        if window is not None and not window.exists():
            fail(f"{window}: no such prediction window", 2)
        prepare_env(verbose)
        server = start_early()
        from flows.monitoring import monitoring_pipeline

    with _running_flows(server, consequence=None):
        check = monitoring_pipeline(cfg, str(window) if window else None)
    typer.echo(check.summary())
    if check.result is not None:
        typer.echo(check.result.table())
