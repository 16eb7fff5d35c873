"""What a flow run is called and tagged in the Prefect UI.

A pipeline's flow runs are named after the config and the version of the data it reads
(`sst2 · 27320af9`: config `name`, then the first 8 characters of `data_md5`), so a list of runs
says what each one trained; the MLflow run of a flow run takes the same name. Each is tagged
`config:<name>` and `task:<type>`, which the Prefect UI filters on. Names come from the run's
parameters (`flow_run_name=run_name`); tags are added by the flow itself as it starts
(`tag_run`), since they depend on the config it validated.
"""

from __future__ import annotations

from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.runtime import flow_run

from tlflow.config import PipelineConfig, load_config
from tlflow.data.version import data_version


def _config(parameters: dict) -> PipelineConfig | None:
    """The config a run's parameters name: a `config` value, or a `config_file` (and `overrides`)."""
    if (config := parameters.get("config")) is not None:
        return config if isinstance(config, PipelineConfig) else PipelineConfig.model_validate(config)
    if (config_file := parameters.get("config_file")) is not None:
        return load_config(config_file, parameters.get("overrides") or [])
    return None


def config_label(cfg: PipelineConfig) -> str:
    """`<config name> · <data version>` (the data version's first 8 characters)."""
    return f"{cfg.name} · {data_version(cfg.data).md5[:8]}"


def run_name() -> str:
    """The flow-run name of the pipeline flows (`flow_run_name=run_name`): `config_label` of the
    run's config; a config that cannot be read gives its file name (the flow reports the error)."""
    parameters = dict(flow_run.parameters or {})
    try:
        cfg = _config(parameters)
    except Exception:  # noqa: BLE001 - a name must not fail the run: the flow validates and reports
        cfg = None
    if cfg is not None:
        return config_label(cfg)
    if "config_file" in parameters:
        return Path(str(parameters["config_file"])).stem
    name, alias = parameters.get("name"), parameters.get("alias")  # batch_predict
    source = Path(str(parameters.get("input_file", ""))).name
    return f"{name}@{alias} · {source}" if name else (flow_run.flow_name or "flow run")


def run_tags(cfg: PipelineConfig) -> list[str]:
    return [f"config:{cfg.name}", f"task:{cfg.task.type}"]


def tag_run(cfg: PipelineConfig) -> None:
    """Add `run_tags(cfg)` to the current flow run's tags (nothing outside a flow run)."""
    if flow_run.id is None:
        return
    with get_client(sync_client=True) as client:
        tags = set(client.read_flow_run(flow_run.id).tags or [])
        if not set(run_tags(cfg)) <= tags:
            client.update_flow_run(flow_run.id, tags=sorted(tags | set(run_tags(cfg))))
