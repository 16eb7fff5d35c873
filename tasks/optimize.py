"""Optional stage: register the champion's fastest inference variant as alias `optimized`.

Not part of `training_pipeline`; a flow calls it after registration when serving speed matters
(`tlflow optimize NAME` runs the same library function from the command line).
"""

from __future__ import annotations

from mlflow import MlflowClient
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tlflow.registry import tracking
from tlflow.registry.lineage import Lineage
from tlflow.registry.lock import lock_notices
from tlflow.serving.optimize_champion import OptimizeOutcome, optimize_champion
from tlflow.serving.optimized import VARIANTS


@task(name="optimize", cache_policy=NO_CACHE, persist_result=False)
def optimize_model(
    name: str, variants: tuple[str, ...] = VARIANTS, max_drop: float = 0.01, min_speedup: float = 1.0,
    repeats: int = 3,
) -> OptimizeOutcome:
    """Score `name`'s champion against its torch int8 and ONNX Runtime variants on its own test
    split and register the fastest variant within `max_drop` of its primary metric (tags
    `variant`, `optimized_from`; alias `optimized`; ledger action `optimize`)."""
    logger = get_run_logger()
    tracking.configure()
    with lock_notices(logger.warning):  # who holds the promotion lock, while this run waits
        outcome = optimize_champion(
            MlflowClient(), name, f"flow {flow_run.flow_name} run {flow_run.id}",
            Lineage.here(prefect_flow_run_id=str(flow_run.id or "")), tuple(variants), max_drop,
            min_speedup, repeats, progress=logger.info,
        )
    if outcome.version is None:
        logger.warning("%s: no variant registered: %s", name, outcome.reason)
    else:
        logger.info("%s v%s registered (%s), alias optimized: %s", name, outcome.version, outcome.chosen.variant,
                    outcome.reason)
    return outcome
