"""Starting runs of deployed flows (prefect.yaml) on the Prefect server."""

from __future__ import annotations

from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound


class DeploymentNotFound(LookupError):
    """No deployment of that name on the server."""


def trigger_deployment(name: str, wait: bool = False) -> FlowRun:
    """Start a run of deployment `name` (FLOW/DEPLOYMENT); with `wait`, return when it has finished."""
    try:
        return run_deployment(name, timeout=None if wait else 0)
    except ObjectNotFound:
        raise DeploymentNotFound(name) from None
