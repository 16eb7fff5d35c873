"""`tlflow serve`: a registered model over HTTP with MLflow's scoring app (`tlflow.serving.http_server`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.commands.common import NameArg, registry_client
from tlflow.serving.request_limits import (
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MAX_ROWS,
    DEFAULT_TIMEOUT_S,
    ENV_MAX_BODY_MB,
    ENV_MAX_ROWS,
    ENV_TIMEOUT_S,
    ServeLimits,
)


def serve(
    name: NameArg,
    alias: Annotated[str, typer.Option("--alias", help="Registry alias to serve.")] = "champion",
    port: Annotated[int, typer.Option("--port", help="HTTP port on 127.0.0.1.")] = 5001,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", envvar=ENV_MAX_BODY_MB, min=0.001,
                                               help="Largest request body in MB (413 above, before it is read).")] = DEFAULT_MAX_BODY_MB,
    max_rows: Annotated[int, typer.Option("--max-rows", envvar=ENV_MAX_ROWS, min=1,
                                          help="Most rows in one request (413 above).")] = DEFAULT_MAX_ROWS,
    timeout_s: Annotated[float, typer.Option("--timeout-s", envvar=ENV_TIMEOUT_S, min=0.001,
                                             help="Seconds a request may run (504 after; its work is stopped).")] = DEFAULT_TIMEOUT_S,
    docs: Annotated[bool, typer.Option("--docs", help="Also serve FastAPI's /docs and /openapi.json.")] = False,
) -> None:
    """Serve NAME@ALIAS over HTTP with MLflow's model server (POST /invocations; an unknown
    request param is a 400, a request above the limits a 413, one past the timeout a 504). The
    model is this installation's TaskModel over the version's files: the code stored with the
    version is checked against the digest recorded at logging time and never run."""
    client = registry_client()
    from tlflow.registry import tracking
    from tlflow.registry.registration import RegistryError, check_model

    check_model(client, name)
    if tracking.alias_version(client, name, alias) is None:
        raise RegistryError(f"model '{name}' has no alias '{alias}'")
    command = serve_command(name, alias, port, host, ServeLimits(max_body_mb, max_rows, timeout_s), docs)
    typer.echo(f"serving models:/{name}@{alias} on http://{host}:{port}/invocations "
               f"(at most {max_body_mb:g} MB and {max_rows} rows a request, {timeout_s:g} s)")
    os.execvpe(command[0], command, {**serve_env(), "MLFLOW_TRACKING_URI": tracking.tracking_uri()})


def serve_command(name: str, alias: str, port: int, host: str = "127.0.0.1", limits: ServeLimits | None = None,
                  docs: bool = False) -> list[str]:
    """MLflow's scoring server for a registry alias in this environment, behind
    `tlflow.serving.http_server` (same routes and formats as `mlflow models serve`, plus a 400 for
    a param the model does not take, which MLflow only drops with a warning, and the request
    bounds of `limits`; without `limits` the server reads `TLFLOW_SERVE_*` or its defaults)."""
    command = [sys.executable, "-m", "tlflow.serving.http_server", f"models:/{name}@{alias}",
               "--host", host, "--port", str(port)]
    if limits is not None:
        command += ["--max-body-mb", f"{limits.max_body_mb:g}", "--max-rows", str(limits.max_rows),
                    "--timeout-s", f"{limits.timeout_s:g}"]
    return command + (["--docs"] if docs else [])


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
