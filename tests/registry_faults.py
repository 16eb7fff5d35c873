"""The five registry actions on a model whose base state is v1 promoted, v2 promoted (champion),
v3 rejected (challenger), each with a fault point: shared by tests/test_recovery.py and the child
processes it kills (started by a fork server that imported this module once, so a child costs a
fork, not an interpreter start)."""

from __future__ import annotations

import os
import signal
from functools import cache, partial

import numpy as np
from mlflow import MlflowClient

from tlflow.config import load_config
from tlflow.registry import registration, tracking
from tlflow.registry.gate import Scores
from tlflow.registry.lineage import Lineage
from tlflow.task_types.metrics import classification_from_sums, classification_stats
from tlflow.task_types.registry import check_config

NAME = "rec"
LABELS = ["negative", "positive"]
Y = np.array([0, 1] * 100)
LINEAGE = Lineage(data_md5="d" * 32, git_commit="abc", eval_split="split-1")
#: What each action does to the base state.
ACTIONS = ("promotion", "rejection", "manual-promotion", "rollback", "optimize")
#: Actions that register a version, so can be hit after the registration, before the alias move.
REGISTERING = ("promotion", "rejection", "optimize")
#: Inside the act, between the registration of the new version and its alias move.
REGISTERED = "registered"
GOOD, CHAMPION_LEVEL, BAD = 0, 60, 100  # wrong predictions out of 200


def scores(n_wrong: int) -> Scores:
    pred = Y.copy()
    pred[:n_wrong] = 1 - pred[:n_wrong]
    metrics = partial(classification_from_sums, label_names=LABELS)
    stats = classification_stats(Y, pred, 2)
    m = metrics(stats.sum(axis=0))
    return Scores(stats, metrics, {k: m[f"f1_{k}"] for k in LABELS})


@cache
def config():
    return check_config(load_config(None, [f"name={NAME}", "promote.bootstrap_samples=200"]))


def register(client: MlflowClient, uri: str, n_wrong: int, on_step=None, on_registered=None) -> registration.Outcome:
    """Register-and-promote `uri` scored `n_wrong` against a champion at CHAMPION_LEVEL."""

    def describe(version, decision):
        if on_registered:
            on_registered()
        return f"v{version}"

    return registration.register_and_promote(client, config(), uri, scores(n_wrong), lambda v: scores(CHAMPION_LEVEL),
                                             LINEAGE, "tester", describe, on_step=on_step)


def base(client: MlflowClient, uri: str) -> None:
    register(client, uri, GOOD)  # v1 champion
    register(client, uri, GOOD)  # v2 champion (1 -> 2)
    register(client, uri, BAD)  # v3 challenger


def act(client: MlflowClient, action: str, uri: str, on_step=None, on_registered=None):
    """Run `action` on the base state with the fault hooks."""
    if action in ("promotion", "rejection"):
        return register(client, uri, GOOD if action == "promotion" else BAD, on_step, on_registered)
    if action == "manual-promotion":
        return registration.promote_version(client, config(), "3", lambda v: scores(GOOD if v == "3" else CHAMPION_LEVEL),
                                            "tester", LINEAGE, on_step=on_step)
    if action == "rollback":
        return registration.rollback(client, NAME, "tester", LINEAGE, on_step=on_step)
    champion = registration.aliases(client, NAME)[tracking.CHAMPION]

    def describe(version):
        if on_registered:
            on_registered()
        return f"variant v{version}"

    return registration.register_variant(
        client, NAME, champion, uri, {registration.VARIANT_TAG: "dynamic-int8", "optimized_from": champion}, "tester",
        LINEAGE, "faster within the bound", {"chosen": "dynamic-int8"}, describe, on_step=on_step)


def hooks(point: str, fault):
    """(on_step, on_registered) that call `fault()` at `point`."""
    return ((lambda step: fault() if step == point else None),
            (lambda: fault() if point == REGISTERED else None))


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def killed_child(tracking_uri: str, action: str, point: str, uri: str) -> None:
    """In a child process: run `action` on the store at `tracking_uri` and SIGKILL itself at `point`."""
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    tracking.configure()
    act(MlflowClient(), action, uri, *hooks(point, die))
    raise SystemExit(3)  # never reached: the point is on every path of the action
