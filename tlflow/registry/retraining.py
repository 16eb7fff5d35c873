"""When is retraining due? The data version, the raw files and the config, against the champion's lineage.

The champion's model version carries the lineage tags (`tlflow.registry.lineage`) `data_md5` (the
md5 in data.dvc), `data_files_md5` (the content of the config's raw files, which also catches data
edited in place or a config pointing at another folder) and `config_hash`. Retraining is due when
any of them differs from the current state (`Lineage.differences`), or when there is no champion yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient

from tlflow.config import PipelineConfig
from tlflow.registry import tracking
from tlflow.registry.lineage import Lineage


@dataclass(frozen=True)
class RetrainingCheck:
    champion_version: str | None
    changes: tuple[str, ...]  # one line per difference; empty: nothing new

    @property
    def due(self) -> bool:
        return self.champion_version is None or bool(self.changes)

    def summary(self) -> str:
        if self.champion_version is None:
            return "no champion yet: training"
        if not self.changes:
            return f"no new data, champion v{self.champion_version} kept"
        return f"retraining: {'; '.join(self.changes)} (champion v{self.champion_version})"


def check_retraining(client: MlflowClient, cfg: PipelineConfig) -> RetrainingCheck:
    """Compare the current data and config with the lineage of `cfg.name@champion`."""
    champion = tracking.alias_version(client, cfg.name, tracking.CHAMPION)
    if champion is None:
        return RetrainingCheck(None, ())
    return RetrainingCheck(str(champion.version), Lineage.of(cfg).differences(Lineage.from_tags(champion.tags)))
