"""Audits of registered versions: `tlflow audit fairness NAME` (the counterfactual EEC audit) and
`tlflow audit slices NAME` (the test split's metrics per evaluation slice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.commands.common import NameArg, fail, pipeline_config, registry_client

audit_app = typer.Typer(no_args_is_help=True, help="Audits of registered model versions.")

AliasOpt = Annotated[str | None, typer.Option("--alias", help="Alias of the version to audit (default: champion).")]
VersionOpt = Annotated[str | None, typer.Option("--version", help="Version number to audit (instead of --alias).")]
AuditConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Config to audit with (fairness.eec, data, evaluate.slices; default: the version's own logged config).")]


def _version(client, name: str, alias: str | None, version: str | None):
    """The model version NAME --version N, or the one with --alias (default champion)."""
    from tlflow.registry.registration import RegistryError, check_model

    if alias and version:
        fail("give --alias or --version, not both", 2)
    if version is None:
        check_model(client, name)
        alias = alias or "champion"
        try:
            version = str(client.get_model_version_by_alias(name, alias).version)
        except Exception:  # MlflowException: the alias is not set
            raise RegistryError(f"model '{name}' has no version with alias '{alias}'") from None
    return check_model(client, name, version)


@audit_app.command("fairness")
def fairness(name: NameArg, alias: AliasOpt = None, version: VersionOpt = None, config: AuditConfigOpt = None) -> None:
    """Counterfactual fairness audit (EEC) of a registered version of NAME: predict every EEC
    sentence, print the per-group table and the paired gender/race gaps with bootstrap intervals,
    and log them (metrics `eec_*`, artifacts `fairness/`) into the version's MLflow run."""
    client = registry_client()
    import tempfile
    import time

    from mlflow.entities import Metric

    from tlflow.evaluation.counterfactual import run_eec_audit
    from tlflow.registry.champion import load_version
    from tlflow.registry.registration import version_config
    from tlflow.task_types.base import TaskSettings
    from tlflow.task_types.registry import task_type_for

    mv = _version(client, name, alias, version)
    version = str(mv.version)
    cfg = pipeline_config(config, None) if config else version_config(client, mv)
    if cfg.fairness.eec is None:
        fail(f"{'config ' + str(config) if config else f'{name} v{version} was trained with a config that'} has no "
             "fairness.eec section (give --config FILE with fairness.eec.label_map)", 2)
    settings = TaskSettings.from_config(cfg)
    loaded = load_version(f"models:/{name}/{version}", settings)
    typer.echo(f"auditing {name} v{version} on {cfg.fairness.eec.file} ...", err=True)
    audit = run_eec_audit(task_type_for(cfg), loaded.model, loaded.tokenizer, loaded.settings, cfg.fairness.eec,
                          cfg.finetune.seed)
    now = int(time.time() * 1000)
    client.log_batch(mv.run_id, metrics=[Metric(k, v, now, 0) for k, v in audit.metrics().items()])
    with tempfile.TemporaryDirectory() as tmp:
        for path in audit.write(Path(tmp), f"{name} v{version}: EEC counterfactual gaps"):
            client.log_artifact(mv.run_id, str(path), "fairness")
    typer.echo(audit.markdown(f"Counterfactual fairness audit (EEC): {name} v{version}"))
    typer.echo(f"\nlogged to MLflow run {mv.run_id} (artifacts fairness/, metrics eec_*)")


@audit_app.command("slices")
def slices(name: NameArg, alias: AliasOpt = None, version: VersionOpt = None, config: AuditConfigOpt = None) -> None:
    """Metrics per evaluation slice (built-in ones such as length quartiles, plus the config's
    evaluate.slices) of a registered version of NAME on its config's test split: print the table
    and log it (`audit/slices.json`, `audit/slices.png`) into the version's MLflow run. The model
    is loaded by the registry (no code stored with it runs); nothing else in the store changes."""
    client = registry_client()
    import tempfile

    from tlflow.data.readers import load_labelled_data
    from tlflow.evaluation.slice_plot import plot_slices
    from tlflow.evaluation.slices import slice_report
    from tlflow.registry.champion import load_version
    from tlflow.registry.registration import version_config
    from tlflow.task_types.base import TaskSettings
    from tlflow.task_types.registry import task_type_for

    mv = _version(client, name, alias, version)
    cfg = pipeline_config(config, None) if config else version_config(client, mv)
    task_type, settings = task_type_for(cfg), TaskSettings.from_config(cfg)
    loaded = load_labelled_data(cfg.data, task_type.dataset_spec(), cfg.evaluate.slices)
    test = loaded.splits["test"]
    typer.echo(f"scoring {name} v{mv.version} on {len(test)} test examples ...", err=True)
    model = load_version(f"models:/{name}/{mv.version}", settings)
    evaluation = task_type.evaluate(model.model, model.tokenizer, test, loaded.label_names, model.settings)
    report = slice_report(task_type, test, evaluation, loaded.label_names, cfg.task.primary_metric,
                          cfg.evaluate.slices, cfg.promote.min_slice_size)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "slices.json"
        table.write_text(json.dumps(report.table(), indent=1), encoding="utf-8")
        client.log_artifact(mv.run_id, str(table), "audit")
        client.log_artifact(mv.run_id, str(plot_slices(report, Path(tmp) / "slices.png")), "audit")
    overall = ", ".join(f"{k} {evaluation.metrics[k]:.4f}" for k in evaluation.headline)
    typer.echo(f"{name} v{mv.version} on the test split ({len(test)} examples): {overall}\n")
    typer.echo(report.markdown())
    typer.echo(f"\nlogged to MLflow run {mv.run_id} (artifacts audit/slices.json, audit/slices.png)")
