"""`model_selection`: which base model and settings? Trials on the validation split, then the winner
through the normal path: validate -> study -> trials (Dask) -> linear probes -> report -> retrain,
evaluate, register and promote (`training_pipeline`, on train or on train + validation:
`select.retrain_on`) with its selection lineage."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect_dask import DaskTaskRunner

from flows.training import training_pipeline
from tasks.register import RegistrationOutcome
from tasks.selection import best_trials, open_study, resolve_candidates, run_probe, run_trial
from tasks.selection_report import SelectionSummary, publish_selection
from tasks.tracking import lineage_tags, pipeline_run
from tasks.validate import validate_data
from tlflow.config import PipelineConfig
from tlflow.config.selection import SelectConfig
from tlflow.runtime import apply_defaults
from tlflow.selection.checks import check_selection
from tlflow.selection.space import retrain_config, search_config
from tlflow.task_types.registry import check_config, check_inputs


def dask_runner(select: SelectConfig) -> DaskTaskRunner:
    """The Dask cluster trials run on: `select.dask_address`, or a local one of `select.workers`
    processes with one thread each (a trial at a time per worker; its torch threads share the cores)."""
    if select.dask_address:
        return DaskTaskRunner(address=select.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": select.workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


@flow(name="model_selection", task_runner=dask_runner(SelectConfig()))
def model_selection(config: PipelineConfig = PipelineConfig(select=SelectConfig())) -> tuple[SelectionSummary,
                                                                                             RegistrationOutcome]:
    """Search `select.candidates` x `select.space` with Optuna (TPE, pruning at the loop's
    evaluations) on the validation split, resuming the study when it exists; each trial a Prefect
    task on the flow's Dask task runner and an MLflow child run of the selection run. Then the
    linear probe of each candidate, the report, and the winner retrained with its settings on the
    training split (or, `select.retrain_on: train_and_validation`, on training and validation
    together: `data.train_on_validation`) and sent through `training_pipeline` (evaluated on test,
    registered, promoted) with tags `selection_study`, `selection_trial`, `selection_candidate`,
    `selection_run_id` and `selection_retrain_on`. `run_selection` runs it on the cluster `select` names."""
    apply_defaults()
    config = check_selection(check_inputs(check_config(config)))
    tags = lineage_tags(config)
    with pipeline_run(config, tags, stage="model-selection") as run:
        config = resolve_candidates(config)
        search = search_config(config)
        loaded = validate_data(search, tags["data_md5"])
        ref, slots = open_study(config, tags["data_md5"])
        deadline = time.time() + config.select.timeout_s if config.select.timeout_s else None
        parent = run.info.run_id
        trials = [run_trial.submit(search, ref, slot, loaded, tags["data_md5"], parent, deadline) for slot in slots]
        [t.result() for t in trials]
        probes = []
        if config.select.linear_probe:
            probes = [run_probe.submit(search, ref, params, number, loaded, tags["data_md5"], parent)
                      for number, params in best_trials(ref)]
            probes = [p.result() for p in probes]
        summary = publish_selection(config, ref, probes)
        get_run_logger().info("winner: trial %d (%s), retrained on %s", summary.trial, summary.params["candidate"],
                              summary.retrain_on.replace("_and_", " + "))
        outcome = training_pipeline(retrain_config(config, summary.params), lineage=summary.lineage(parent))
        return summary, outcome


def run_selection(config: PipelineConfig) -> tuple[SelectionSummary, RegistrationOutcome]:
    """`model_selection` on the Dask cluster of `config.select` (local or `dask_address`)."""
    return model_selection.with_options(task_runner=dask_runner(config.select))(config)


if __name__ == "__main__":
    model_selection()
