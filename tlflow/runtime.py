"""Process-wide defaults for running offline and quietly; applied by entry points, never on import."""

from __future__ import annotations

import gc
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: Environment defaults: offline model/data loading, no telemetry, terse console.
OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DVC_NO_ANALYTICS": "1",
}

#: Environment defaults for a busy machine (a shared worker, an oversubscribed CPU): Prefect waits
#: up to 5 minutes, not 20 s, for its temporary server to start (`flows.ephemeral`; about 8 s on an
#: idle machine); its client retries a failed API call 5 times over about a minute (Prefect's own
#: default, kept explicit here because the command line's one-line "API lost" error relies on it).
RESILIENCE_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    "PREFECT_CLIENT_MAX_RETRIES": "5",
}


def apply_defaults(quiet_console: bool = True) -> None:
    """Set offline/telemetry and busy-machine defaults (explicit environment settings win) and
    silence library noise. Call it before Prefect is imported: Prefect reads its settings then.

    With `quiet_console`, Prefect keeps sending INFO logs to its API (the UI shows them) while the
    terminal shows only what the caller prints (the CLI prints one summary, or the error).
    """
    for key, value in {**OFFLINE_DEFAULTS, **RESILIENCE_DEFAULTS}.items():
        os.environ.setdefault(key, value)
    if quiet_console:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        # Prefect's background services (events, logs) report each item they could not send to a
        # lost API on their own handler: a wall of lines before the command's one-line error.
        os.environ.setdefault("PREFECT_INTERNAL_LOGGING_LEVEL", "CRITICAL")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*pydantic.*", category=UserWarning)
    for name in ("mlflow", "alembic", "great_expectations", "datasets", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - both are dependencies
        pass


def freeze_imported() -> None:
    """Put every object alive now out of the cyclic garbage collector's reach (`gc.freeze`), after
    collecting what is already garbage. Call it once the libraries are imported: torch,
    transformers, MLflow and Prefect leave millions of objects that live until
    the process ends, and every full collection would scan them all again; frozen, only what the
    work allocates is scanned."""
    gc.collect()
    gc.freeze()


@contextmanager
def startup_imports() -> Iterator[None]:
    """A block that imports what a command needs before its work starts: the cyclic collector is
    off meanwhile, and what is alive at the end is frozen (`freeze_imported`). Imports leave little
    garbage, but as the heap grows they set off ever longer full collections: 12 (3.2 s) in a tiny
    `tlflow run` before this block was used, 9 (1.9 s) with it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        freeze_imported()
        if enabled:
            gc.enable()


def exit_without_scanning() -> None:
    """`gc.freeze` without a collection: the interpreter's exit then does not scan the heap for
    cycles (about 3 s after the pipeline's imports). Exit handlers still run; objects kept alive
    only by reference cycles are left to the OS, which Python never promised to finalize anyway."""
    gc.freeze()
