"""Commands that run the pipeline's Prefect flows, and the data checks on their own.

The flows (and with them Prefect, torch and transformers) are imported inside each command, after
the config has loaded: `tlflow run` starts the ephemeral Prefect server first, so that it comes up
while those import.
"""

from __future__ import annotations

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

NOTHING_TRAINED = "Nothing was trained or registered."


def run(
    config: ConfigArg = None,
    set_: SetOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's INFO logs in the terminal.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Train even when data, config and code match a registered "
                                                        "version.")] = False,
) -> None:
    """Run `training_pipeline` on CONFIG and print the outcome (nothing is retrained when data,
    config and code match a registered version, unless --force)."""
    cfg = pipeline_config(config, set_)
    prepare_env(verbose)
    from flows.ephemeral import start_early

    server = start_early()  # comes up while torch and transformers import
    from flows.training import training_pipeline

    server.wait()
    on_failure(NOTHING_TRAINED)
    outcome = training_pipeline(cfg, force=force)
    print_outcome(cfg, outcome)


def pretrain(config: ConfigArg = None, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Run `pretraining_pipeline` (pretrain.mode scratch or continue) and register `<name>-encoder`."""
    cfg = pipeline_config(config, set_)
    if cfg.pretrain.mode == "none":
        fail("pretrain.mode is 'none': set it to 'scratch' or 'continue' (e.g. --set pretrain.mode=scratch)", 2)
    prepare_env(verbose)
    from flows.pretraining import pretraining_pipeline

    on_failure(NOTHING_TRAINED)
    encoder = pretraining_pipeline(cfg)
    typer.echo(f"{cfg.name}-encoder v{encoder.version} registered; encoder files: {encoder.path}")
    print_ui_commands()


def report_transfer(config: ConfigArg = None, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Fine-tune CONFIG's task from random init, a scratch-pretrained encoder, the base checkpoint and
    the base after continued in-domain pretraining (same budget); print the comparison table."""
    cfg = pipeline_config(config, set_)
    prepare_env(verbose)
    from flows.transfer import transfer_report
    from tlflow.evaluation.transfer import report_markdown

    on_failure("The failing variant trained and registered nothing; variants finished before it stay in MLflow.")
    results = transfer_report(cfg)
    typer.echo(report_markdown(cfg.task.primary_metric, results))
    print_ui_commands()


def validate(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Run only the data checks of CONFIG and print the report (exit 1 when a check fails)."""
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
    cfg = pipeline_config(config, set_)
    prepare_env(verbose)
    from flows.retraining import retraining_pipeline
    from tlflow.registry.retraining import RetrainingCheck

    on_failure(NOTHING_TRAINED)
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
    prepare_env(verbose=False)
    from flows.batch import batch_predict

    path = batch_predict(name, str(input_file), str(output_file), alias)
    typer.echo(f"predictions written to {path}")
