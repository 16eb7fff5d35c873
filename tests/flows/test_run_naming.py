"""What a scheduled retraining shows in the Prefect UI, under a temporary Prefect server with a real
MLflow store: flow runs named `<config> · <data version>` and tagged `config:<name>`, `task:<type>`;
the outcome in the parent run's state message and artifact, linking the MLflow run and model version
(and the MLflow run linking back to its flow run); fine-tuning progress as log lines and a progress
artifact; what `tlflow trigger --wait` prints of a finished run."""

import pytest
import yaml
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
)

from flows.deployments import describe_run
from flows.retraining import retraining_from_file
from tests.prefect_reads import flow_run_logs
from tlflow.data.version import data_version
from tlflow.registry import tracking
from tlflow.registry.links import model_version_url

pytestmark = [pytest.mark.needs_data, pytest.mark.flow, pytest.mark.slow]


def _artifacts(prefect, key: str, flow_run_id=None):
    found = prefect.read_artifacts(artifact_filter=ArtifactFilter(
        key=ArtifactFilterKey(any_=[key]), **({"flow_run_id": ArtifactFilterFlowRunId(any_=[flow_run_id])}
                                             if flow_run_id else {})))
    return sorted(found, key=lambda a: a.created)


def test_a_scheduled_retraining_names_tags_and_reports_its_runs(project, prefect_server, tiny_config):
    cfg = tiny_config(name="named")
    (project / "configs" / "named.yaml").write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    label = f"named · {data_version(cfg.data).md5[:8]}"

    state = retraining_from_file("configs/named.yaml", return_state=True)
    assert state.is_completed()
    assert "no champion yet: training -> model named v1 became champion" in state.message
    with get_client(sync_client=True) as prefect:
        parent = prefect.read_flow_run(state.state_details.flow_run_id)
        runs = prefect.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[label])))
        flows = {prefect.read_flow(r.flow_id).name: r for r in runs}
        assert len(runs) == 3 and flows["retraining_from_file"].id == parent.id
        assert set(flows) == {"retraining_from_file", "retraining_pipeline", "training_pipeline"}
        for run in flows.values():
            assert run.name == label
            assert {"config:named", "task:text-classification"} <= set(run.tags)
        assert parent.state.message == state.message

        training = flows["training_pipeline"]
        summary = _artifacts(prefect, "named-retraining", parent.id)[-1].data
        tracking.configure()
        mlflow_run = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("named").experiment_id])[0]
        assert model_version_url("named", "1") in summary and mlflow_run.info.run_id in summary
        decision = _artifacts(prefect, "named-summary", training.id)[-1].data  # the run summary links them too
        assert model_version_url("named", "1") in decision and f"/runs/{mlflow_run.info.run_id})" in decision
        assert mlflow_run.info.run_name == label
        assert mlflow_run.data.tags["prefect_flow_run_url"].endswith(f"/runs/flow-run/{training.id}")

        progress = _artifacts(prefect, "named-fine-tune-progress")[-1]
        assert progress.type == "progress" and float(progress.data) == 100.0
        assert "fine-tune: step" in progress.description and "done" in progress.description
        tokenized = _artifacts(prefect, "named-tokenize-progress")[-1]  # the rows turned into features
        assert tokenized.type == "progress" and float(tokenized.data) == 100.0
        assert tokenized.description.startswith("tokenize: ") and tokenized.description.endswith("rows/s, done")
        logs = flow_run_logs(prefect, training.id)
        assert any(m.startswith("tokenize: ") and m.endswith("done") for m in logs)
        lines = [m for m in logs if m.startswith("fine-tune: step")]
        assert len(lines) >= 2 and "samples/s" in lines[0] and "ETA" in lines[0] and lines[-1].endswith("done")

        printed = describe_run(prefect.read_flow_run(parent.id))
        assert printed[0] == f"flow run {label} ({parent.id}): COMPLETED"
        assert printed[1] == state.message

    again = retraining_from_file("configs/named.yaml", return_state=True)
    assert again.message == "no new data, champion v1 kept"
    with get_client(sync_client=True) as prefect:
        assert model_version_url("named", "1") in _artifacts(
            prefect, "named-retraining", again.state_details.flow_run_id)[-1].data


def test_the_rows_progress_line():
    from tasks.progress import RowsProgress

    line = RowsProgress("tokenize", 200_000, 1_000_000, 17.8).line()
    assert line == "tokenize: 200,000/1,000,000 rows (20%), 11,236 rows/s, ETA 1m11s"
    done = RowsProgress("tokenize", 12, 12, 0.5)
    assert done.finished and done.fraction == 1.0 and done.line().endswith("24 rows/s, done")
