"""`tlflow` command line: run the pipeline, check data, manage registered models and local servers.

This module assembles the commands of `flows/commands/` into one typer app, and is the one place
where a user-facing error (`tlflow.errors.TlflowError`, or an MLflow error from the registry)
becomes a short message on stderr and the error's exit status (config errors 2, others 1), without
a traceback. Importing it does no work: no folders, no servers, no Prefect or torch import.
"""

from __future__ import annotations

import sys

import click
import typer
from typer.core import TyperGroup

from flows.commands import audit, ops, pipelines, registry, select, serving
from flows.commands.common import CONSEQUENCE
from flows.commands.serving import serve_command, serve_env
from tlflow.errors import TlflowError
from tlflow.runtime import exit_without_scanning

__all__ = ["app", "main", "serve_command", "serve_env"]


def _mlflow_error(err: Exception) -> bool:
    """Whether `err` is an MlflowException (without importing MLflow when no command did)."""
    exceptions = sys.modules.get("mlflow.exceptions")
    return exceptions is not None and isinstance(err, exceptions.MlflowException)


class _Commands(TyperGroup):
    """The root command group: ends a command that raised a user-facing error with its message
    (and what the failure left undone, when the command said so) and its exit status."""

    def invoke(self, ctx: click.Context):
        CONSEQUENCE.clear()
        try:
            return super().invoke(ctx)
        except TlflowError as err:
            _exit(ctx, str(err), err.exit_code)
        except Exception as err:
            if not _mlflow_error(err):
                raise
            _exit(ctx, str(err).splitlines()[0], 1)


def _exit(ctx: click.Context, message: str, code: int) -> None:
    consequence = CONSEQUENCE.get("line")
    typer.secho(f"error: {message}" + (f"\n{consequence}" if consequence else ""), fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
app.command()(pipelines.run)
app.command()(pipelines.pretrain)
app.add_typer(ops.servers_app, name="servers")
report_app = typer.Typer(no_args_is_help=True, help="Comparisons across pipeline runs.")
report_app.command("transfer")(pipelines.report_transfer)
app.add_typer(report_app, name="report")
app.add_typer(audit.audit_app, name="audit")
app.command()(pipelines.validate)
app.command()(registry.models)
app.command()(registry.history)
app.command()(registry.promote)
app.command()(pipelines.retrain)
app.command()(pipelines.monitor)
app.command()(select.select)
app.command()(ops.trigger)
app.command()(pipelines.predict)
app.command()(serving.serve)
app.command()(registry.rollback)
app.command()(registry.optimize)
app.command()(registry.unlock)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    finally:
        exit_without_scanning()


if __name__ == "__main__":
    main()
