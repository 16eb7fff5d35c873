"""What the MLflow UI shows as the description of the project's experiments, registered models and
runs: the experiment tag and run tag `mlflow.note.content`, and a registered model's description.

Each says what the object is, what it holds and where to look next, in a few lines of markdown.
"""

from __future__ import annotations

from tlflow.config import PipelineConfig

#: The tag MLflow shows as the description of an experiment or a run.
NOTE_TAG = "mlflow.note.content"
#: The experiment type the MLflow 3 UI reads: "Machine learning" experiments open on their Runs tab
#: (and switch the UI to its machine-learning view) instead of the GenAI traces and overview.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"

#: Experiment name suffix -> what its runs are (`<model>-batch`, `<model>-optimize`).
_DERIVED_EXPERIMENTS = {
    "-batch": "Batch predictions of registered model `{model}` (`tlflow predict`, flow `batch_predict`): one run "
              "per input file, with the model version and alias used, the input and output files and the row count.",
    "-optimize": "Inference variants of the champion of registered model `{model}` (`tlflow optimize`): one run per "
                 "optimization, with the accuracy and speed of fp32, int8 and ONNX Runtime variants; the chosen one "
                 "is registered with alias `optimized`.",
    "-monitoring": "Drift checks of the champion of registered model `{model}` (`tlflow monitor`, flow `monitoring`): "
                   "one run per check, with the drift score, the drifted descriptors, the Evidently report "
                   "(`monitoring/drift.html`) and whether retraining was triggered.",
}


#: Description of the promotion ledger's experiment (`tlflow.registry.ledger`).
LEDGER_DESCRIPTION = (
    "Promotion ledger of every registered model: one run per decision (promoted, rejected, rollback, manual "
    "promotion, optimize, unlock, recovered, external alias change), with the version, the champion before and "
    "after, who decided and why (`decision` tag: every gate check with its numbers). Filter with "
    "`tags.model = '<name>'`, or run `tlflow history <name>`."
)


def experiment_description(name: str) -> str:
    """Description of experiment `name`: a model's batch predictions or optimizations, or else a
    config's pipeline runs."""
    for suffix, text in _DERIVED_EXPERIMENTS.items():
        if name.endswith(suffix):
            return text.format(model=name.removesuffix(suffix))
    return (f"Pipeline runs of config `{name}` (`tlflow run`, `tlflow retrain`, the `retrain-*` deployments): "
            "validation, tokenization, fine-tuning, evaluation and the promotion decision, one run per flow run. "
            "Model metrics (unprefixed): `test_*` on the frozen test split (and its slices), `val_*` during "
            "fine-tuning, `zeroshot_*` for the base model, `eec_*` for fairness, `pii_*` for personal data found. "
            "Bookkeeping charts in its own sections: `train/` (loss, learning rate, steps, throughput), `data/` "
            "(row counts), `gap/` (train - validation), `gate/`, `pretrain/`. The model each run registers is registered model `{name}`.")


def model_description(name: str) -> str:
    """Description of registered model `name` (each version's own description is its run summary
    and the promotion decision)."""
    return (f"Trained by the tlflow pipeline from config `{name}`. Aliases: `champion` is the version to serve, "
            "`challenger` the latest version the promotion gate refused, `optimized` a faster variant of the "
            "champion. Each version's description holds its run summary and the gate's decision table; the "
            f"promotion ledger (`tlflow history {name}`, experiment `tlflow-promotion-ledger`) lists every decision.")


#: Flows whose runs fine-tune a model of the config (their description gives the method and epochs).
_TRAINING_FLOWS = ("training_pipeline", "retraining_pipeline", "retraining_from_file")


def run_description(cfg: PipelineConfig, data_md5: str, flow: str | None = None) -> str:
    """Description of a top-level run of `flow` (a training pipeline when None) on `cfg` and data
    version `data_md5`."""
    data = cfg.data
    named = data.files or data.class_files
    source = ", ".join(f"{key} `{path}`" for key, path in named.items()) if named else f"`{data.file or '-'}`"
    what = f" (`{flow}`)" if flow else ""
    training = (f", {cfg.finetune.method} fine-tuning for {cfg.finetune.epochs:g} epoch(s)"
                if flow is None or flow in _TRAINING_FLOWS else "")
    return (f"**{cfg.name}**{what}: {cfg.task.type} on {source} (data version `{data_md5[:8]}`), base model "
            f"`{cfg.model.base}`{training}. The config is in Artifacts → `config.yaml`; a registered version's "
            f"description holds the outcome (Models → `{cfg.name}`).")


def ledger_run_description(action: str, version: str, reason: str) -> str:
    """Description of one promotion ledger entry."""
    return f"**{action}** v{version}: {reason}"
