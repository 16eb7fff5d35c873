"""`tlflow` command line: run the pipeline, check data, list registered models.

Importing this module (or anything in `tlflow`) never imports Prefect: `tlflow run` imports the
flow from `flows/` inside the command, the one place where the library reaches up to its
orchestration layer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tlflow.config import ConfigError, PipelineConfig, load_config
from tlflow.runtime import apply_defaults

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])

ConfigArg = Annotated[Path | None, typer.Argument(help="YAML config in configs/ (default: the built-in SST-2 demo).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a field: --set finetune.epochs=2 (repeatable).")]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _config(path: Path | None, overrides: list[str] | None) -> PipelineConfig:
    try:
        return load_config(path, overrides or [])
    except ConfigError as err:
        _fail(str(err), 2)


def _prepare_env(verbose: bool) -> None:
    """Offline, quiet defaults plus project-local Prefect state (so the UI command below sees it)."""
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    apply_defaults(quiet_console=not verbose)


def ui_commands() -> list[str]:
    """Commands that open the MLflow and Prefect UIs on the state this run wrote."""
    from tlflow import tracking

    bindir = Path(sys.executable).parent
    mlflow_cmd = tracking.ui_command(str(bindir / "mlflow"))
    prefect_cmd = (
        f"PREFECT_HOME={os.environ['PREFECT_HOME']} {bindir / 'prefect'} server start --port 4200"
        if "PREFECT_API_URL" not in os.environ
        else f"open {os.environ['PREFECT_API_URL'].removesuffix('/api')}"
    )
    return [f"MLflow UI:  {mlflow_cmd}", f"Prefect UI: {prefect_cmd}"]


@app.command()
def run(
    config: ConfigArg = None,
    set_: SetOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's INFO logs in the terminal.")] = False,
) -> None:
    """Run `training_pipeline` on CONFIG and print the outcome."""
    cfg = _config(config, set_)
    _prepare_env(verbose)
    from flows.training import training_pipeline  # Prefect is imported here, not by the library

    outcome = _guarded(lambda: training_pipeline(cfg))
    _print_outcome(cfg, outcome)


def _guarded(run_flow, consequence: str = "Nothing was trained or registered."):
    """Run a flow; data and model errors end the command with their one-line message, exit 1."""
    from tlflow.data.checks import DataValidationError
    from tlflow.data.readers import DataError
    from tlflow.models import ModelError
    from tlflow.pretraining.corpus import CorpusError

    try:
        return run_flow()
    except DataValidationError as err:
        _fail(f"{err}\n{consequence}")
    except (DataError, ModelError, CorpusError) as err:
        _fail(f"error: {err}\n{consequence}")


def _print_outcome(cfg: PipelineConfig, outcome) -> None:
    from mlflow import MlflowClient

    run = MlflowClient().get_run(outcome.run_id)
    m = run.data.metrics
    typer.echo("")
    typer.secho(f"{cfg.name}: test_accuracy {m['test_accuracy']:.4f}, test_macro_f1 {m['test_macro_f1']:.4f}", bold=True)
    if outcome.decision is not None:
        d = outcome.decision
        verdict = "became champion" if d.promoted else "registered as challenger"
        typer.echo(f"model {cfg.name} v{outcome.version} {verdict} ({d.reason})")
    else:
        typer.echo("model logged, not registered (promote.register_model is false)")
    if m.get("resumed_from_step", 0) >= m.get("train_steps", 1):
        training = f"training already complete at step {m['train_steps']:.0f}, checkpoint reused"
    else:
        training = f"train {m['train_seconds']:.0f}s, {m['train_samples_per_s']:.0f} samples/s"
    typer.echo(f"MLflow run {outcome.run_id} ({training})")
    for line in ui_commands():
        typer.echo(line)


@app.command()
def pretrain(config: ConfigArg = None, set_: SetOpt = None, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run `pretraining_pipeline` (pretrain.mode scratch or continue) and register `<name>-encoder`."""
    cfg = _config(config, set_)
    if cfg.pretrain.mode == "none":
        _fail("pretrain.mode is 'none': set it to 'scratch' or 'continue' (e.g. --set pretrain.mode=scratch)", 2)
    _prepare_env(verbose)
    from flows.pretraining import pretraining_pipeline

    encoder = _guarded(lambda: pretraining_pipeline(cfg))
    typer.echo(f"{cfg.name}-encoder v{encoder.version} registered; encoder files: {encoder.path}")
    for line in ui_commands():
        typer.echo(line)


report_app = typer.Typer(no_args_is_help=True, help="Comparisons across pipeline runs.")
app.add_typer(report_app, name="report")


@report_app.command("transfer")
def report_transfer(config: ConfigArg = None, set_: SetOpt = None, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Fine-tune CONFIG's task from random init, a scratch-pretrained encoder, the base checkpoint and
    the base after continued in-domain pretraining (same budget); print the comparison table."""
    cfg = _config(config, set_)
    _prepare_env(verbose)
    from flows.transfer import transfer_report
    from tlflow.transfer import report_markdown

    results = _guarded(
        lambda: transfer_report(cfg),
        "The failing variant trained and registered nothing; variants finished before it stay in MLflow.",
    )
    typer.echo(report_markdown(cfg.task.primary_metric, results))
    for line in ui_commands():
        typer.echo(line)


@app.command()
def validate(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Run only the data checks of CONFIG and print the report (exit 1 when a check fails)."""
    cfg = _config(config, set_)
    _prepare_env(verbose=False)
    from tlflow.data.checks import check_data
    from tlflow.data.readers import DataError

    try:
        loaded, report, path = check_data(cfg)
    except DataError as err:
        _fail(f"error: {err}")
    typer.echo(report.summary())
    typer.echo(f"HTML report: {path}")
    if not report.success:
        raise typer.Exit(1)


@app.command()
def models(name: Annotated[str | None, typer.Argument(help="Registered model name (default: all).")] = None) -> None:
    """List registered models: versions, aliases and test metrics."""
    _prepare_env(verbose=False)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tlflow import tracking

    tracking.configure()
    try:
        rows = tracking.list_versions(MlflowClient(), name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            _fail(f"no registered model named {name!r} in {tracking.tracking_uri()}")
        _fail(f"error: cannot read the registry at {tracking.tracking_uri()}: {str(err).splitlines()[0]}")
    if not rows:
        _fail(f"no registered model{' named ' + repr(name) if name else 's'} in {tracking.tracking_uri()}")
    header = f"{'model':<24} {'ver':>4}  {'aliases':<20} {'test_accuracy':>13} {'test_macro_f1':>13}  {'data_md5':<10} decision"
    typer.echo(header)
    for r in rows:
        typer.echo(
            f"{r.name:<24} {r.version:>4}  {','.join(r.aliases) or '-':<20} "
            f"{r.tags.get('test_accuracy', '-')[:6]:>13} {r.tags.get('test_macro_f1', '-')[:6]:>13}  "
            f"{r.tags.get('data_md5', '-')[:8]:<10} {r.tags.get('decision_reason', '')}"
        )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
