"""Register the champion's fastest inference variant that keeps its accuracy, as alias `optimized`.

`optimize_champion` builds the variants of `tlflow.serving.optimized` from the champion (`torch-int8`,
`onnx-fp32`, `onnx-int8`), scores the fp32 champion and every variant on the champion's own test
split (its run's config) with the task type's own `evaluate`, alternating them for the timing,
and picks the fastest variant whose primary metric is at most `max_drop` below fp32's (default one
point; of variants within 5 % of the fastest one's speed, the most accurate: `optimize.choose`). The comparison is logged as a run of the experiment `<name>-optimize`, with the chosen
variant as its model; that model becomes a new version of the same registered model with tags
`variant` and `optimized_from`, and alias `optimized` moves to it.

The registration is one registry transaction (`tlflow.registry.registration.register_variant`):
under the model's promotion lock the version is created `pending` with its source's lineage, the
alias moves, the ledger entry (action `optimize`; the champion does not change) is appended, and
only then is the version marked `complete`; a failure on the way leaves the registry as it was.
Versions tagged `variant` are never champion candidates (`registration.check_candidate`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient

from tlflow.data.readers import load_labelled_data
from tlflow.registry import registration, tracking
from tlflow.registry.champion import load_version
from tlflow.registry.descriptions import experiment_description
from tlflow.registry.lineage import Lineage
from tlflow.registry.registration import VARIANT_TAG, RegistryError
from tlflow.registry.transaction import OnStep
from tlflow.serving.optimized import FP32, VARIANTS, Measurement, build_variants, check_variant, choose, measure
from tlflow.serving.task_model import log_task_model
from tlflow.task_types.base import TaskSettings
from tlflow.task_types.registry import task_type_for


@dataclass
class OptimizeOutcome:
    name: str
    source_version: str
    metric: str
    baseline: Measurement
    candidates: list[Measurement]
    reason: str
    run_id: str
    chosen: Measurement | None = None
    version: str | None = None  # the registered variant (None: nothing qualified)
    ledger_sequence: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


def optimize_champion(
    client: MlflowClient,
    name: str,
    actor: str,
    lineage: Lineage,
    variants: tuple[str, ...] = VARIANTS,
    max_drop: float = 0.01,
    min_speedup: float = 1.0,
    repeats: int = 3,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    on_step: OnStep | None = None,
    lock_wait_s: float = 1800,
    lock_stale_s: float = 1800,
) -> OptimizeOutcome:
    """Measure the champion of `name` against its `variants` and register the fastest one within
    `max_drop` of its primary metric (and over `min_speedup` times its samples/s) as alias
    `optimized`. Nothing is registered when no variant qualifies (`outcome.version` is None and
    `outcome.reason` says why). `on_step`: see `tlflow.registry.transaction.transact`."""
    say = progress or (lambda message: None)
    if max_drop < 0:
        raise RegistryError(f"max_drop must be >= 0 (the largest metric loss accepted), got {max_drop}")
    if not variants:
        raise RegistryError("no variants to try")
    registration.check_model(client, name)
    source = registration.aliases(client, name)[tracking.CHAMPION]
    if source is None:
        raise RegistryError(f"'{name}' has no champion to optimize")
    mv = registration.check_candidate(registration.check_model(client, name, source))
    cfg = registration.version_config(client, mv)
    task = task_type_for(cfg)
    for variant in variants:
        check_variant(variant, cfg.task.type, VARIANTS)
    metric = cfg.task.primary_metric
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()

    say(f"loading {name} v{source} and its test split")
    loaded = load_labelled_data(cfg.data, task.dataset_spec())
    test = loaded.splits["test"]
    fp32 = load_version(f"models:/{name}/{source}", TaskSettings.from_config(cfg))
    with tempfile.TemporaryDirectory(prefix="tlflow-optimize-") as tmp:
        say(f"building {', '.join(variants)}")
        built = build_variants(fp32.model, cfg.task.type, Path(tmp), variants, threads)
        say(f"scoring fp32 and {len(built)} variants on {len(test):,} test examples, {repeats} rounds, "
            f"{threads} threads")
        measured = measure({FP32: fp32.model, **{k: v.model for k, v in built.items()}}, task, fp32.tokenizer, test,
                           loaded.label_names, fp32.settings, repeats)
        baseline, candidates = measured[FP32], [measured[v] for v in variants]
        choice = choose(baseline, candidates, metric, max_drop, min_speedup)

        experiment_id = tracking.ensure_experiment(f"{name}-optimize", experiment_description(f"{name}-optimize"))
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"optimize v{source}",
                              nested=mlflow.active_run() is not None) as run:
            mlflow.log_params({"source_model": name, "source_version": source, "variants": ",".join(variants),
                               "max_metric_drop": max_drop, "min_speedup": min_speedup, "repeats": repeats,
                               "threads": threads, "primary_metric": metric, "test_examples": len(test)})
            mlflow.log_dict(cfg.to_dict(), "config.yaml")
            for m in (baseline, *candidates):
                mlflow.log_metrics({f"{m.variant}_samples_per_s": m.samples_per_s,
                                    f"{m.variant}_test_{metric}": m.metrics[metric],
                                    f"{m.variant}_speedup": m.samples_per_s / baseline.samples_per_s,
                                    f"{m.variant}_delta_{metric}": m.metrics[metric] - baseline.metrics[metric]})
            comparison = {"metric": metric, "max_drop": max_drop, "min_speedup": min_speedup,
                          "source_version": source, "threads": threads,
                          "measurements": [m.to_dict() for m in (baseline, *candidates)],
                          "chosen": choice.chosen.variant if choice.chosen else None, "reason": choice.reason}
            mlflow.log_dict(comparison, "optimize/comparison.json")
            mlflow.set_tags({"source_version": source, "optimize_outcome": choice.chosen.variant if choice.chosen
                             else "none", "optimize_reason": choice.reason[:4900]})
            outcome = OptimizeOutcome(name, source, metric, baseline, candidates, choice.reason, run.info.run_id,
                                      choice.chosen)
            if choice.chosen is None:
                return outcome
            chosen = choice.chosen
            say(f"logging {chosen.variant}")
            example = task.requests(test.select(range(min(3, len(test)))))
            model_uri = log_task_model(fp32.model, fp32.tokenizer, fp32.settings, example, built[chosen.variant],
                                       source={"source_model": name, "source_version": source})
            mlflow.log_metrics({"samples_per_s_fp32": baseline.samples_per_s, "samples_per_s": chosen.samples_per_s,
                                "speedup": chosen.samples_per_s / baseline.samples_per_s,
                                f"delta_{metric}": chosen.metrics[metric] - baseline.metrics[metric]})
            mlflow.set_tag("variant", chosen.variant)

    tags = {
        **Lineage.from_tags(mv.tags).for_variant().tags(),
        VARIANT_TAG: chosen.variant,
        "optimized_from": source,
        "primary_metric": metric,
        **{f"test_{k}": f"{chosen.metrics[k]:.6f}" for k in chosen.headline},
        f"fp32_test_{metric}": f"{baseline.metrics[metric]:.6f}",
        "samples_per_s": f"{chosen.samples_per_s:.1f}",
        "fp32_samples_per_s": f"{baseline.samples_per_s:.1f}",
        "speedup": f"{chosen.samples_per_s / baseline.samples_per_s:.3f}",
        "threads": str(threads),
        "optimize_run_id": outcome.run_id,
        "decision_reason": f"optimized variant of v{source}: {choice.reason}"[:4900],
    }
    outcome.tags = tags
    say(f"registering {chosen.variant} as a version of {name}")
    outcome.version, outcome.ledger_sequence = registration.register_variant(
        client, name, source, model_uri, tags, actor, lineage, tags["decision_reason"], comparison,
        lambda version: _description(name, version, source, comparison), lock_wait_s, lock_stale_s, on_step,
    )
    return outcome


def _description(name: str, version: str, source: str, comparison: dict) -> str:
    metric = comparison["metric"]
    rows = comparison["measurements"]
    base = rows[0]
    lines = [f"## {name} v{version}: **{comparison['chosen']}** variant of v{source} (alias `optimized`)", "",
             f"| variant | samples/s | speedup | test {metric} | change |", "|---|---|---|---|---|"]
    for r in rows:
        delta = r["metrics"][metric] - base["metrics"][metric]
        lines.append(f"| {r['variant']} | {r['samples_per_s']:.1f} | {r['samples_per_s'] / base['samples_per_s']:.2f}x "
                     f"| {r['metrics'][metric]:.4f} | {100 * delta:+.2f} pt |")
    lines += ["", comparison["reason"], "",
              f"{comparison['threads']} threads, max {metric} drop {100 * comparison['max_drop']:.2f} pt; "
              "never a champion candidate (tag `variant`)."]
    return "\n".join(lines)
