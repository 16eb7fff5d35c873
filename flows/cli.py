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
    """Offline, quiet defaults plus project-local Prefect state (so the UI command below sees it);
    a configured server that does not answer is a one-line error before any work starts."""
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))
    apply_defaults(quiet_console=not verbose)
    from flows.ops.servers import ServerError, require

    try:
        if os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
            uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
            require(f"{uri}/health", "the MLflow tracking server (MLFLOW_TRACKING_URI)", "make serve")
        if os.environ.get("PREFECT_API_URL"):
            api = os.environ["PREFECT_API_URL"].rstrip("/")
            require(f"{api}/health", "the Prefect server (PREFECT_API_URL)", "make serve")
    except ServerError as err:
        _fail(f"error: {err}")


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


@app.command()
def run(
    config: ConfigArg = None,
    set_: SetOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's INFO logs in the terminal.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Train even when data, config and code match a registered "
                                                        "version.")] = False,
) -> None:
    """Run `training_pipeline` on CONFIG and print the outcome (nothing is retrained when data,
    config and code match a registered version, unless --force)."""
    cfg = _config(config, set_)
    _prepare_env(verbose)
    from flows.ephemeral import start_early  # Prefect is imported here, not by the library

    server = start_early()  # comes up while torch and transformers import
    from flows.training import training_pipeline

    server.wait()
    outcome = _guarded(lambda: training_pipeline(cfg, force=force))
    _print_outcome(cfg, outcome)


def _guarded(run_flow, consequence: str = "Nothing was trained or registered."):
    """Run a flow; data and model errors end the command with their one-line message, exit 1."""
    from tlflow.data.readers import DataError
    from tlflow.data.validation.stage import DataValidationError
    from tlflow.modeling.models import ModelError
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
    shown = [k for k in ("accuracy", "macro_f1", "f1", "precision", "recall", "exact_match") if f"test_{k}" in m]
    typer.secho(f"{cfg.name}: " + ", ".join(f"test_{k} {m[f'test_{k}']:.4f}" for k in shown), bold=True)
    typer.echo(outcome.summary())
    if outcome.reused:
        training = "nothing trained in this run"
    elif m.get("resumed_from_step", 0) >= m.get("train_steps", 1):
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


servers_app = typer.Typer(no_args_is_help=True, help="Local Prefect and MLflow servers.")
app.add_typer(servers_app, name="servers")


@servers_app.command("up")
def servers_up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port.")] = 5000,
) -> None:
    """Start `prefect server start` and `mlflow server` (store under mlflow/) in the background."""
    from flows.ops.servers import STATE_DIR, ServerError, up

    try:
        started = up(prefect_port, mlflow_port)
    except ServerError as err:
        _fail(f"error: {err}")
    prefect_url, mlflow_url = (s.url for s in started)
    typer.echo(f"Prefect UI: {prefect_url}\nMLflow UI:  {mlflow_url}\nlogs: {STATE_DIR}/")
    typer.echo(f"export PREFECT_API_URL={prefect_url}/api MLFLOW_TRACKING_URI={mlflow_url}")


@servers_app.command("down")
def servers_down() -> None:
    """Stop the servers started by `tlflow servers up`."""
    from flows.ops.servers import down

    stopped = down()
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "no servers were running")


report_app = typer.Typer(no_args_is_help=True, help="Comparisons across pipeline runs.")
app.add_typer(report_app, name="report")


@report_app.command("transfer")
def report_transfer(config: ConfigArg = None, set_: SetOpt = None, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Fine-tune CONFIG's task from random init, a scratch-pretrained encoder, the base checkpoint and
    the base after continued in-domain pretraining (same budget); print the comparison table."""
    cfg = _config(config, set_)
    _prepare_env(verbose)
    from flows.transfer import transfer_report
    from tlflow.evaluation.transfer import report_markdown

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
    from tlflow.data.readers import DataError
    from tlflow.data.validation.stage import check_data

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

    from tlflow.registry import tracking

    tracking.configure()
    try:
        rows = tracking.list_versions(MlflowClient(), name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            _fail(f"no registered model named {name!r} in {tracking.tracking_uri()}")
        _fail(f"error: cannot read the registry at {tracking.tracking_uri()}: {str(err).splitlines()[0]}")
    if not rows:
        _fail(f"no registered model{' named ' + repr(name) if name else 's'} in {tracking.tracking_uri()}")
    header = f"{'model':<24} {'ver':>4}  {'aliases':<20} {'primary metric':>22}  {'data_md5':<10} decision"
    typer.echo(header)
    for r in rows:
        metric = r.tags.get("primary_metric", "accuracy")
        score = f"{metric} {r.tags.get(f'test_{metric}', '-')[:6]}" if f"test_{metric}" in r.tags else "-"
        typer.echo(
            f"{r.name:<24} {r.version:>4}  {','.join(r.aliases) or '-':<20} {score:>22}  "
            f"{r.tags.get('data_md5', '-')[:8]:<10} {r.tags.get('decision_reason', '')}"
        )


NameArg = Annotated[str, typer.Argument(help="Registered model name (the config's `name`).")]


def _registry():
    """Configured MLflow client for the registry commands."""
    _prepare_env(verbose=False)
    from mlflow import MlflowClient

    from tlflow.registry import tracking

    tracking.configure()
    return MlflowClient()


def _actor() -> str:
    import getpass

    return f"cli user {getpass.getuser()}"


def _cli_lineage() -> dict[str, str]:
    from tlflow.registry import tracking

    return {"data_md5": tracking.data_version(), "git_commit": tracking.git_commit(), "prefect_flow_run_id": ""}


@app.command()
def history(name: NameArg) -> None:
    """Print the promotion ledger of NAME: every decision, oldest first."""
    client = _registry()
    from tlflow.registry import ledger
    from tlflow.registry.registration import RegistryError, check_model

    try:
        check_model(client, name)
    except RegistryError as err:
        _fail(f"error: {err}")
    typer.echo(ledger.format_history(ledger.entries(client, name)))


@app.command()
def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    force: Annotated[bool, typer.Option("--force", help="Override a failed gate (needs --reason).")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why the gate is overridden (recorded).")] = "",
) -> None:
    """Run the promotion gate for VERSION of NAME against the champion on VERSION's own test split
    (its run's config); make it champion when every check passes, or with --force --reason."""
    client = _registry()
    from mlflow.exceptions import MlflowException

    from tlflow.data.readers import DataError, load_labelled_data
    from tlflow.registry import registration

    try:
        mv = registration.check_candidate(registration.check_model(client, name, version))
        if force and not reason.strip():
            raise registration.RegistryError("--force needs --reason: say why the gate is overridden")
        cfg = registration.version_config(client, mv)
        loaded = load_labelled_data(cfg.data, cfg.task.type)

        def evaluate(v: str):
            return registration.scores_of(cfg, registration.evaluate_version(cfg, name, v, loaded), loaded.label_names)

        lineage = {**_cli_lineage(), "eval_split": mv.tags.get("eval_split", "")}
        decision, action = registration.promote_version(
            client, cfg, version, evaluate, _actor(), lineage, force=force, reason=reason
        )
    except (registration.RegistryError, DataError, ConfigError, MlflowException) as err:
        _fail(f"error: {str(err).splitlines()[0]}")
    for check in decision.checks:
        typer.echo(f"  {'pass' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
    if action == "rejected":
        _fail(f"{name} v{version} not promoted: {decision.reason}")
    typer.echo(f"{name} v{version} is champion ({action})")


@app.command()
def retrain(config: ConfigArg = None, set_: SetOpt = None, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run `retraining_pipeline`: keep the champion when data and config are unchanged, else train + gate."""
    cfg = _config(config, set_)
    _prepare_env(verbose)
    from flows.retraining import retraining_pipeline
    from tlflow.registry.retraining import RetrainingCheck

    result = _guarded(lambda: retraining_pipeline(cfg))
    if isinstance(result, RetrainingCheck):
        typer.echo(result.summary())
    else:
        _print_outcome(cfg, result)


@app.command()
def trigger(
    deployment: Annotated[str, typer.Argument(help="FLOW/DEPLOYMENT, e.g. retraining_from_file/retrain-sst2.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run finishes.")] = False,
) -> None:
    """Start a run of a deployment (prefect.yaml) on the Prefect server; a worker executes it."""
    _prepare_env(verbose=False)
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        _fail("error: no Prefect server configured: start one with `make serve` and export PREFECT_API_URL")
    from flows.deployments import DeploymentNotFound, trigger_deployment

    if "/" not in deployment:
        _fail(f"error: '{deployment}' is not FLOW/DEPLOYMENT (e.g. retraining_from_file/retrain-sst2)")
    try:
        flow_run = trigger_deployment(deployment, wait)
    except DeploymentNotFound:
        _fail(f"error: no deployment '{deployment}' on {api}: create it with `prefect deploy --all` "
              "(list them with `prefect deployment ls`)")
    typer.echo(f"flow run {flow_run.name} ({flow_run.id}): {flow_run.state.type.value if flow_run.state else '-'}")


@app.command()
def predict(
    name: NameArg,
    input_file: Annotated[Path, typer.Argument(help="Requests: .csv, .tsv, .jsonl or .parquet with the task's request columns.")],
    output_file: Annotated[Path, typer.Argument(help="Where to write requests + predictions (.jsonl, .csv, .tsv, .parquet).")],
    alias: Annotated[str, typer.Option("--alias", help="Registry alias of the model to use.")] = "champion",
) -> None:
    """Run the `batch_predict` flow: predictions of NAME@ALIAS for every row of INPUT_FILE."""
    _prepare_env(verbose=False)
    from mlflow.exceptions import MlflowException

    from flows.batch import batch_predict
    from tlflow.data.readers import DataError
    from tlflow.registry.registration import RegistryError

    try:
        path = batch_predict(name, str(input_file), str(output_file), alias)
    except (RegistryError, DataError, MlflowException) as err:
        _fail(f"error: {str(err).splitlines()[0]}")
    typer.echo(f"predictions written to {path}")


@app.command()
def serve(
    name: NameArg,
    alias: Annotated[str, typer.Option("--alias", help="Registry alias to serve.")] = "champion",
    port: Annotated[int, typer.Option("--port", help="HTTP port on 127.0.0.1.")] = 5001,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Serve NAME@ALIAS over HTTP with MLflow's model server (POST /invocations)."""
    client = _registry()
    from tlflow.registry import tracking
    from tlflow.registry.registration import RegistryError, check_model

    try:
        check_model(client, name)
    except RegistryError as err:
        _fail(f"error: {err}")
    if tracking.alias_version(client, name, alias) is None:
        _fail(f"error: model '{name}' has no alias '{alias}'")
    command = serve_command(name, alias, port, host)
    typer.echo(f"serving models:/{name}@{alias} on http://{host}:{port}/invocations")
    os.execvpe(command[0], command, {**serve_env(), "MLFLOW_TRACKING_URI": tracking.tracking_uri()})


def serve_command(name: str, alias: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """`mlflow models serve` for a registry alias, in this environment (no new virtualenv)."""
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    return [mlflow_bin, "models", "serve", "-m", f"models:/{name}@{alias}", "--env-manager", "local",
            "--host", host, "--port", str(port), "--workers", "1"]


def serve_env() -> dict[str, str]:
    """The environment for `serve_command`: MLflow starts `uvicorn` by name, so this
    environment's bin folder goes first on PATH."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")])}


@app.command()
def rollback(name: NameArg) -> None:
    """Make the previous champion of NAME (per the ledger) champion again, and record it."""
    client = _registry()
    from tlflow.registry import registration

    try:
        current, previous = registration.rollback(client, name, _actor(), _cli_lineage())
    except registration.RegistryError as err:
        _fail(f"error: {err}")
    typer.echo(f"{name}: champion v{current} -> v{previous} (rollback recorded)")


VariantsOpt = Annotated[str, typer.Option("--variants", help="Comma-separated variants to try.")]
MaxDropOpt = Annotated[float, typer.Option("--max-drop", help="Largest primary-metric loss accepted (0.01 = 1 pt).")]
SpeedupOpt = Annotated[float, typer.Option("--min-speedup", help="The variant must be over this many times faster.")]
RepeatsOpt = Annotated[int, typer.Option("--repeats", help="Timed evaluations per model (median).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Threads for torch and ONNX Runtime alike.")]


@app.command()
def optimize(
    name: NameArg,
    variants: VariantsOpt = "torch-int8,onnx-fp32,onnx-int8",
    max_drop: MaxDropOpt = 0.01,
    min_speedup: SpeedupOpt = 1.0,
    repeats: RepeatsOpt = 3,
    threads: ThreadsOpt = None,
) -> None:
    """Score NAME's champion (fp32) against its int8 / ONNX Runtime variants on its test split; register the
    fastest variant within --max-drop of its primary metric as a version tagged `variant`, alias `optimized`."""
    client = _registry()
    from mlflow.exceptions import MlflowException

    from tlflow.data.readers import DataError
    from tlflow.registry.lock import LockTimeout
    from tlflow.registry.registration import RegistryError
    from tlflow.serving.optimize_champion import optimize_champion
    from tlflow.serving.optimized import OptimizeError, comparison_table

    wanted = tuple(v.strip() for v in variants.split(",") if v.strip())
    try:
        outcome = optimize_champion(client, name, _actor(), _cli_lineage(), wanted, max_drop, min_speedup, repeats,
                                    threads, progress=lambda m: typer.echo(f"  {m}", err=True))
    except (RegistryError, OptimizeError, DataError, ConfigError, LockTimeout, MlflowException, ValueError) as err:
        _fail(f"error: {str(err).splitlines()[0]}")
    typer.echo(comparison_table(outcome.baseline, outcome.candidates, outcome.metric))
    if outcome.version is None:
        _fail(f"{name}: nothing registered: {outcome.reason}")
    typer.echo(f"{name} v{outcome.version} registered: {outcome.chosen.variant} of champion v{outcome.source_version}, "
               f"alias optimized ({outcome.reason})")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
