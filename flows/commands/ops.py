"""Operations: local Prefect and MLflow servers, and runs of deployed flows on the Prefect server."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from flows.commands.common import fail, prepare_env
from flows.ops import servers

servers_app = typer.Typer(no_args_is_help=True, help="Local Prefect and MLflow servers.")


@servers_app.command("up")
def servers_up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port.")] = 5000,
) -> None:
    """Start `prefect server start` and `mlflow server` (store under mlflow/) in the background."""
    started = servers.up(prefect_port, mlflow_port)
    prefect_url, mlflow_url = (s.url for s in started)
    typer.echo(f"Prefect UI: {prefect_url}\nMLflow UI:  {mlflow_url}\nlogs: {servers.STATE_DIR}/")
    typer.echo(f"export PREFECT_API_URL={prefect_url}/api MLFLOW_TRACKING_URI={mlflow_url}")


@servers_app.command("down")
def servers_down() -> None:
    """Stop the servers started by `tlflow servers up`."""
    stopped = servers.down()
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "no servers were running")


def trigger(
    deployment: Annotated[str, typer.Argument(help="FLOW/DEPLOYMENT, e.g. retraining_from_file/retrain-sst2.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run finishes; print its outcome (exit 1 "
                                                      "unless it completed).")] = False,
) -> None:
    """Start a run of a deployment (prefect.yaml) on the Prefect server; a worker executes it."""
    prepare_env(verbose=False)
    if not os.environ.get("PREFECT_API_URL"):
        fail("error: no Prefect server configured: start one with `make serve` and export PREFECT_API_URL")
    if "/" not in deployment:
        fail(f"error: '{deployment}' is not FLOW/DEPLOYMENT (e.g. retraining_from_file/retrain-sst2)")
    from flows.deployments import describe_run, trigger_deployment

    flow_run = trigger_deployment(deployment, wait)
    typer.echo("\n".join(describe_run(flow_run)))
    if wait and not (flow_run.state and flow_run.state.is_completed()):
        raise typer.Exit(1)  # the run failed, crashed or was cancelled: its message says why
