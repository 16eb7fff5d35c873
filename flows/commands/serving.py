"""`tlflow serve`: a registered model over HTTP with MLflow's scoring app (`tlflow.serving.http_server`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.commands.common import NameArg, registry_client


def serve(
    name: NameArg,
    alias: Annotated[str, typer.Option("--alias", help="Registry alias to serve.")] = "champion",
    port: Annotated[int, typer.Option("--port", help="HTTP port on 127.0.0.1.")] = 5001,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Serve NAME@ALIAS over HTTP with MLflow's model server (POST /invocations; an unknown
    request param is a 400)."""
    client = registry_client()
    from tlflow.registry import tracking
    from tlflow.registry.registration import RegistryError, check_model

    check_model(client, name)
    if tracking.alias_version(client, name, alias) is None:
        raise RegistryError(f"model '{name}' has no alias '{alias}'")
    command = serve_command(name, alias, port, host)
    typer.echo(f"serving models:/{name}@{alias} on http://{host}:{port}/invocations")
    os.execvpe(command[0], command, {**serve_env(), "MLFLOW_TRACKING_URI": tracking.tracking_uri()})


def serve_command(name: str, alias: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """MLflow's scoring server for a registry alias in this environment, behind
    `tlflow.serving.http_server` (same routes and formats as `mlflow models serve`, plus a 400 for
    a param the model does not take, which MLflow only drops with a warning)."""
    return [sys.executable, "-m", "tlflow.serving.http_server", f"models:/{name}@{alias}",
            "--host", host, "--port", str(port)]


def mlflow_serve_command(name: str, alias: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """Plain `mlflow models serve` for a registry alias, in this environment (no new virtualenv)."""
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    return [mlflow_bin, "models", "serve", "-m", f"models:/{name}@{alias}", "--env-manager", "local",
            "--host", host, "--port", str(port), "--workers", "1"]


def serve_env() -> dict[str, str]:
    """The environment for `serve_command` and `mlflow_serve_command`: MLflow starts `uvicorn` by
    name, so this environment's bin folder goes first on PATH."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")])}
