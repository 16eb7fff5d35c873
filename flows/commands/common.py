"""What the commands share: argument types, config loading, environment checks and printing.

Heavy modules (Prefect, MLflow, torch through the flows) are imported inside the functions that use
them, so that `tlflow --help` and a bad config answer at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.ops.servers import require
from tlflow import paths
from tlflow.config import PipelineConfig, load_config
from tlflow.runtime import apply_defaults

ConfigArg = Annotated[Path | None, typer.Argument(help="YAML config in configs/ (default: the built-in SST-2 demo).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set finetune.epochs=2 (repeatable).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v")]
NameArg = Annotated[str, typer.Argument(help="Registered model name (the config's `name`).")]

#: The line printed after an error: what the failure left undone (set by the running command).
#: A plain module state, not click's context: a command's work may run where click's thread-local
#: context stack is not visible.
CONSEQUENCE: dict[str, str] = {}


def fail(message: str, code: int = 1) -> None:
    """End the command with `message` on stderr and exit status `code` (an outcome, not an error)."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def on_failure(consequence: str) -> None:
    """Say what a user-facing error from here on leaves undone (printed after its message)."""
    CONSEQUENCE["line"] = consequence


def pipeline_config(path: Path | None, overrides: list[str] | None) -> PipelineConfig:
    """The pipeline config at `path` (default: the built-in demo) with `--set` overrides applied,
    checked against its task type (type, options, primary metric) and for what it reads (allowed
    roots, a base model that resolves offline)."""
    from tlflow.task_types.registry import check_config, check_inputs

    return check_inputs(check_config(load_config(path, overrides or [])))


def prepare_env(verbose: bool) -> None:
    """Offline, quiet defaults plus project-local Prefect state (so the UI command below sees it);
    a configured server that does not answer is a one-line error before any work starts."""
    os.environ.setdefault("PREFECT_HOME", str(paths.PREFECT_HOME.resolve()))
    apply_defaults(quiet_console=not verbose)
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
        require(f"{uri}/health", "the MLflow tracking server (MLFLOW_TRACKING_URI)", "make serve")
        from tlflow.registry.tracking import check_server

        check_server(uri)  # the server that answers is MLflow (any server answers /health)
    if os.environ.get("PREFECT_API_URL"):
        api = os.environ["PREFECT_API_URL"].rstrip("/")
        require(f"{api}/health", "the Prefect server (PREFECT_API_URL)", "make serve")


def ui_commands() -> list[str]:
    """Commands that open the MLflow and Prefect UIs on the state this run wrote."""
    from tlflow.registry import tracking

    bindir = Path(sys.executable).parent
    mlflow_cmd = tracking.ui_command(str(bindir / "mlflow"))
    prefect_cmd = (
        f"PREFECT_HOME={os.environ['PREFECT_HOME']} {bindir / 'prefect'} server start --port 4200"
        if "PREFECT_API_URL" not in os.environ
        else f"open {os.environ['PREFECT_API_URL'].removesuffix('/api')}"
    )
    return [f"MLflow UI:  {mlflow_cmd}", f"Prefect UI: {prefect_cmd}"]


def print_ui_commands() -> None:
    for line in ui_commands():
        typer.echo(line)


def print_outcome(cfg: PipelineConfig, outcome) -> None:
    """Test metrics, what was trained or reused, and the MLflow run of a `training_pipeline` outcome."""
    from mlflow import MlflowClient

    run = MlflowClient().get_run(outcome.run_id)
    m = run.data.metrics
    typer.echo("")
    from tlflow.task_types.registry import get_task_type

    task = get_task_type(cfg.task.type)
    names = dict.fromkeys([cfg.task.primary_metric, *task.headline_metrics, *task.primary_metrics])
    shown = [k for k in names if f"test_{k}" in m]
    typer.secho(f"{cfg.name}: " + ", ".join(f"test_{k} {m[f'test_{k}']:.4f}" for k in shown), bold=True)
    if any(f"zeroshot_{k}" in m for k in shown):  # the base model as it is, on the same test split
        typer.echo("zero-shot base: " + ", ".join(f"{k} {m[f'zeroshot_{k}']:.4f}" for k in shown
                                                  if f"zeroshot_{k}" in m))
    typer.echo(outcome.summary())
    if outcome.reused:
        training = "nothing trained in this run"
    elif m.get("train/resumed_from_step", 0) >= m.get("train/steps", 1):
        training = f"training already complete at step {m['train/steps']:.0f}, checkpoint reused"
    else:
        training = f"train {m['train/seconds']:.0f}s, {m['train/samples_per_s']:.0f} samples/s"
    typer.echo(f"MLflow run {outcome.run_id} ({training})")
    print_ui_commands()


def registry_client():
    """Configured MLflow client for the registry commands."""
    prepare_env(verbose=False)
    from mlflow import MlflowClient

    from tlflow.registry import tracking

    tracking.configure()
    return MlflowClient()


def actor() -> str:
    """Who a registry change made from the command line is recorded as."""
    import getpass

    return f"cli user {getpass.getuser()}"


def cli_lineage():
    """Lineage of a registry change made from the command line (no Prefect flow run)."""
    from tlflow.registry.lineage import Lineage

    return Lineage.here()
