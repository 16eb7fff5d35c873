"""Commands that read and change the MLflow model registry: list, history, promote, roll back, optimize, unlock.

While a command waits on another promotion's lock, who holds it is printed every few seconds."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.commands.common import NameArg, actor, cli_lineage, fail, prepare_env, registry_client


def _lock_notices():
    """Print the promotion lock's notices (who holds it, since when) on stderr."""
    from tlflow.registry.lock import lock_notices

    return lock_notices(lambda message: typer.echo(message, err=True))


def models(name: Annotated[str | None, typer.Argument(help="Registered model name (default: all).")] = None) -> None:
    """List registered models: versions, aliases and test metrics."""
    prepare_env(verbose=False)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from tlflow.registry import tracking

    tracking.configure()
    try:
        rows = tracking.list_versions(MlflowClient(), name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            fail(f"no registered model named {name!r} in {tracking.tracking_uri()}")
        fail(f"error: cannot read the registry at {tracking.tracking_uri()}: {str(err).splitlines()[0]}")
    if not rows:
        fail(f"no registered model{' named ' + repr(name) if name else 's'} in {tracking.tracking_uri()}")
    header = f"{'model':<24} {'ver':>4}  {'aliases':<20} {'primary metric':>22}  {'data_md5':<10} decision"
    typer.echo(header)
    for r in rows:
        score = _primary_score(r.tags)
        typer.echo(
            f"{r.name:<24} {r.version:>4}  {','.join(r.aliases) or '-':<20} {score:>22}  "
            f"{r.tags.get('data_md5', '-')[:8]:<10} {r.tags.get('decision_reason', '')}"
        )


def _primary_score(tags: dict[str, str]) -> str:
    """'<metric> <value>' of a version's primary test metric, rounded to 4 decimals as the decision
    text writes it ('-' when the version has none)."""
    metric = tags.get("primary_metric", "accuracy")
    value = tags.get(f"test_{metric}")
    if value is None:
        return "-"
    try:
        return f"{metric} {float(value):.4f}"
    except ValueError:
        return f"{metric} {value}"


def history(name: NameArg) -> None:
    """Print the promotion ledger of NAME: every decision, oldest first (aliases moved in the
    MLflow registry since the last entry are recorded first, as `external-alias-change`)."""
    client = registry_client()
    from tlflow.registry import ledger
    from tlflow.registry.reconcile import settle
    from tlflow.registry.registration import check_model

    check_model(client, name)
    with _lock_notices():
        note = settle(client, name, actor(), cli_lineage())
    if note:
        typer.echo(note, err=True)
    typer.echo(ledger.format_history(ledger.entries(client, name)))


def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="Version to make champion.")],
    force: Annotated[bool, typer.Option("--force", help="Override a failed gate (needs --reason).")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why the gate is overridden (recorded).")] = "",
) -> None:
    """Run the promotion gate for VERSION of NAME against the champion on VERSION's own test split
    (its run's config); make it champion when every check passes, or with --force --reason."""
    client = registry_client()
    from tlflow.registry import registration

    with _lock_notices():
        decision, action = registration.promote(client, name, version, actor(), cli_lineage(), force=force,
                                                reason=reason)
    for check in decision.checks:
        typer.echo(f"  {'pass' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
    for note in decision.notes:  # the rows compared, classes with F1 0
        typer.echo(f"  note  {note}")
    if action == "rejected":
        fail(f"{name} v{version} not promoted: {decision.reason}")
    typer.echo(f"{name} v{version} is champion ({action})")


def rollback(name: NameArg) -> None:
    """Make the previous champion of NAME (per the ledger) champion again, and record it."""
    client = registry_client()
    from tlflow.registry import registration

    with _lock_notices():
        current, previous = registration.rollback(client, name, actor(), cli_lineage())
    typer.echo(f"{name}: champion v{current} -> v{previous} (rollback recorded)")


VariantsOpt = Annotated[str, typer.Option("--variants", help="Comma-separated variants to try.")]
MaxDropOpt = Annotated[float, typer.Option("--max-drop", help="Largest primary-metric loss accepted (0.01 = 1 pt).")]
SpeedupOpt = Annotated[float, typer.Option("--min-speedup", help="The variant must be over this many times faster.")]
RepeatsOpt = Annotated[int, typer.Option("--repeats", help="Timed evaluations per model (median).")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Threads for torch and ONNX Runtime alike.")]


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
    client = registry_client()
    from tlflow.serving.optimize_champion import optimize_champion
    from tlflow.serving.optimized import comparison_table

    wanted = tuple(v.strip() for v in variants.split(",") if v.strip())
    with _lock_notices():
        outcome = optimize_champion(client, name, actor(), cli_lineage(), wanted, max_drop, min_speedup, repeats,
                                    threads, progress=lambda m: typer.echo(f"  {m}", err=True))
    typer.echo(comparison_table(outcome.baseline, outcome.candidates, outcome.metric))
    if outcome.version is None:
        fail(f"{name}: nothing registered: {outcome.reason}")
    typer.echo(f"{name} v{outcome.version} registered: {outcome.chosen.variant} of champion v{outcome.source_version}, "
               f"alias optimized ({outcome.reason})")


def unlock(
    name: NameArg,
    reason: Annotated[str, typer.Option("--reason", help="Why the lock is removed (recorded in the ledger).")],
) -> None:
    """Remove NAME's promotion lock left by a process on another host that died (a dead holder on this
    host is detected and its lock broken by itself); recorded in the ledger as action `unlock`."""
    client = registry_client()
    from tlflow.registry.unlock import unlock as unlock_model

    with _lock_notices():
        done = unlock_model(client, name, actor(), reason, cli_lineage())
    typer.echo(f"{name}: promotion lock {done.holder.describe()} removed (ledger #{done.entry.sequence})")
