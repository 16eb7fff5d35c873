"""prefect.yaml as Prefect's deploy command reads it: the nightly retrainings do not all start at once
on the one work pool, and no config is retrained twice at the same time."""

from itertools import combinations
from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.objects import ConcurrencyLimitStrategy

pytestmark = [pytest.mark.unit]

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
MIN_GAP_MINUTES = 30


def deployments():
    return PrefectYamlModel.model_validate(yaml.safe_load(PREFECT_YAML.read_text())).deployments


def scheduled():
    """The nightly retrainings (other scheduled flows, e.g. monitoring, are light and not gated here)."""
    return [d for d in deployments() if d.schedules and d.entrypoint.endswith(":retraining_from_file")]


def start_minute(cron: str) -> int:
    """Minute of the day a daily cron (`M H * * *`) fires at."""
    minute, hour, *rest = cron.split()
    assert rest == ["*", "*", "*"] and minute.isdigit() and hour.isdigit(), f"not a daily cron: {cron!r}"
    return int(hour) * 60 + int(minute)


def test_every_shipped_config_is_retrained_nightly_on_the_one_pool():
    names = {d.name for d in scheduled()}
    assert {f"retrain-{c}" for c in ("sst2", "emotion", "ag-news", "mrpc", "conll2003", "squad")} <= names
    assert {d.work_pool.name for d in scheduled()} == {"tlflow-process"}


def test_nightly_retrainings_start_at_least_half_an_hour_apart():
    starts = {}
    for deployment in scheduled():
        for schedule in deployment.schedules:
            cron = schedule.model_dump().get("cron")
            assert cron, f"{deployment.name}: expected a cron schedule"
            assert schedule.model_dump().get("timezone") == "UTC"
            starts[deployment.name] = start_minute(cron)
    for (a, start_a), (b, start_b) in combinations(starts.items(), 2):
        gap = min(abs(start_a - start_b), 24 * 60 - abs(start_a - start_b))
        assert gap >= MIN_GAP_MINUTES, f"{a} and {b} start {gap} minutes apart"


def test_each_deployment_runs_once_at_a_time_and_queues_the_next_run():
    for deployment in scheduled():
        limit = deployment.concurrency_limit
        assert limit is not None, f"{deployment.name}: no concurrency_limit"
        assert limit.limit == 1, deployment.name
        assert ConcurrencyLimitStrategy(limit.collision_strategy) is ConcurrencyLimitStrategy.ENQUEUE


def test_the_pool_limit_is_part_of_the_documented_setup():
    header = [line for line in PREFECT_YAML.read_text().splitlines() if line.startswith("#")]
    assert any("prefect work-pool set-concurrency-limit tlflow-process 1" in line for line in header)
