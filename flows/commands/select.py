"""`tlflow select CONFIG`: the model-selection flow (candidates x search space with Optuna on a Dask
cluster), then the winner through the normal retrain -> evaluate -> register -> promote path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from flows.commands.common import (
    ConfigArg,
    SetOpt,
    VerboseOpt,
    on_failure,
    pipeline_config,
    prepare_env,
    print_outcome,
)
from tlflow.runtime import startup_imports

RESUMABLE = ("Finished and pruned trials stay in the study and in MLflow: the same command resumes the search "
             "(select.trials counts them).")


@contextmanager
def _server_for_workers(server) -> Iterator[None]:
    """Dask workers are other processes: they reach this command's temporary Prefect server by its URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = server.api_url
    if not url:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def select(config: ConfigArg = None, set_: SetOpt = None, verbose: VerboseOpt = False) -> None:
    """Run `model_selection` on CONFIG's `select` section (candidates, space, trials), resuming its
    study when it exists; print the candidates table and the registered winner."""
    with startup_imports():
        cfg = pipeline_config(config, set_)
        from tlflow.selection.checks import check_selection

        check_selection(cfg)
        prepare_env(verbose)
        from flows.ephemeral import api_loss_is_one_line, start_early

        server = start_early()  # comes up while torch, transformers, Optuna and Dask import
        from flows.model_selection import run_selection
        from tlflow.selection.report import candidates_markdown

    server.wait()
    on_failure(RESUMABLE)
    with api_loss_is_one_line(), _server_for_workers(server):
        summary, outcome = run_selection(cfg)
    typer.echo(candidates_markdown(summary.candidates, summary.metric))
    typer.echo(f"study {summary.study}: winner trial {summary.trial} ({summary.params['candidate']}), "
               f"val_{summary.metric} {summary.score:.4f}")
    print_outcome(cfg, outcome)
