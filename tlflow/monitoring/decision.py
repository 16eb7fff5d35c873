"""Whether drift of the champion's predictions triggers retraining, and where that is recorded.

Retraining is due when the drift score exceeds `monitoring.threshold`, the window held at least
`monitoring.min_rows` predictions of the champion, and no retraining was triggered for the same
champion within `monitoring.cooldown_hours` (an hourly check of a drifted window would otherwise
start a retraining every hour). Each check is one MLflow run in the experiment `<name>-monitoring`
(tag `retraining_triggered` on the runs that triggered one); the champion version carries the
reason of the last trigger (`retraining_reason`) and the retraining's flow run
(`retraining_flow_run`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlflow import MlflowClient

from tlflow.config.schema import MonitoringConfig
from tlflow.monitoring.drift import DriftResult

REASON_TAG, FLOW_RUN_TAG, TRIGGERED_TAG, VERSION_TAG = (
    "retraining_reason", "retraining_flow_run", "retraining_triggered", "champion_version"
)


def monitoring_experiment(name: str) -> str:
    return f"{name}-monitoring"


@dataclass(frozen=True)
class MonitoringCheck:
    model: str
    champion_version: str | None
    window_rows: int
    threshold: float
    result: DriftResult | None = None  # None: not judged (no champion, too few predictions)
    cooldown_since: str | None = None  # when the last drift trigger of this champion was, within the cooldown
    note: str = ""

    @property
    def drifted(self) -> bool:
        return self.result is not None and self.result.score > self.threshold

    @property
    def due(self) -> bool:
        return self.drifted and self.cooldown_since is None

    def reason(self) -> str:
        """The drift in one line (what the version's `retraining_reason` tag says)."""
        if self.result is None:
            return self.note
        drifted = ", ".join(self.result.drifted) or "none"
        return (f"drift score {self.result.score:.2f} {'>' if self.drifted else '<='} threshold {self.threshold:.2f} "
                f"on {self.window_rows} predictions of v{self.champion_version} (drifted: {drifted})")

    def summary(self) -> str:
        if self.result is None:
            return self.note
        if self.due:
            return f"{self.reason()}: retraining triggered"
        if self.drifted:
            return f"{self.reason()}: retraining already triggered at {self.cooldown_since} (cooldown)"
        return f"{self.reason()}: no retraining"


def not_judged(model: str, champion: str | None, rows: int, settings: MonitoringConfig) -> MonitoringCheck | None:
    """The check when there is nothing to judge (no champion, too few predictions), else None."""
    if champion is None:
        return MonitoringCheck(model, None, rows, settings.threshold, note=f"'{model}' has no champion: nothing to monitor")
    if rows < settings.min_rows:
        return MonitoringCheck(model, champion, rows, settings.threshold,
                               note=f"{rows} predictions of v{champion} in the window, fewer than monitoring.min_rows "
                                    f"({settings.min_rows}): not judged")
    return None


def last_trigger(client: MlflowClient, model: str, champion: str, cooldown_hours: float) -> str | None:
    """When drift last triggered a retraining of `champion` (UTC), if within the cooldown."""
    experiment = client.get_experiment_by_name(monitoring_experiment(model))
    if experiment is None or cooldown_hours <= 0:
        return None
    since = int((time.time() - cooldown_hours * 3600) * 1000)
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.{TRIGGERED_TAG} = 'true' and tags.{VERSION_TAG} = '{champion}' "
                              f"and attributes.start_time >= {since}",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(runs[0].info.start_time / 1000)) if runs else None


def record_trigger(client: MlflowClient, model: str, check: MonitoringCheck, flow_run_id: str) -> None:
    """Tag the champion version with the reason of the retraining and its flow run."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    client.set_model_version_tag(model, check.champion_version, REASON_TAG, f"{stamp}: {check.reason()}")
    client.set_model_version_tag(model, check.champion_version, FLOW_RUN_TAG, flow_run_id)
