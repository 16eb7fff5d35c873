"""Starting runs of deployed flows (prefect.yaml) on the Prefect server."""

from __future__ import annotations

import os

from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.utilities.urls import url_for

from tlflow.errors import TlflowError


class DeploymentNotFound(TlflowError, LookupError):
    """No deployment of that name on the server."""


def trigger_deployment(name: str, wait: bool = False) -> FlowRun:
    """Start a run of deployment `name` (FLOW/DEPLOYMENT); with `wait`, return when it has finished."""
    try:
        return run_deployment(name, timeout=None if wait else 0)
    except ObjectNotFound:
        raise DeploymentNotFound(
            f"no deployment '{name}' on {os.environ.get('PREFECT_API_URL', 'the Prefect server')}: create it with "
            "`prefect deploy --all` (list them with `prefect deployment ls`)"
        ) from None


def describe_run(flow_run: FlowRun) -> list[str]:
    """What a flow run came to, for a terminal: name, id and state; once it has finished, its state
    message (a retraining run's outcome, a failure's error) and its page in the Prefect UI."""
    state = flow_run.state
    lines = [f"flow run {flow_run.name} ({flow_run.id}): {state.type.value if state else '-'}"]
    if state is not None and state.is_final():
        if state.message:
            lines.append(state.message)
        if url := url_for("flow-run", obj_id=flow_run.id):
            lines.append(url)
    return lines
