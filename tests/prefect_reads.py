"""Reading back what a flow sent to the Prefect API, completely.

Prefect ships log records to the API from a background worker in batches and does not wait for it
when a flow run ends, so a test that reads logs right after a flow returns first drains that
worker (`flush_logs`). One `read_*` call returns at most the server's default limit, and the test
server is shared with the session's other tests, so reads go page by page (`every`)."""

from __future__ import annotations

from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogWorker


def flush_logs() -> None:
    """Block until every log record emitted so far in this process has reached the API."""
    APILogWorker.drain_all(timeout=30)


def every(read, page: int = 200, **filters) -> list:
    """Every object a Prefect client `read_*` call returns, page by page."""
    out: list = []
    while batch := read(limit=page, offset=len(out), **filters):
        out.extend(batch)
        if len(batch) < page:
            break
    return out


def flow_run_logs(prefect, flow_run_id) -> list[str]:
    """The messages of every log of one flow run (its tasks' included), after a flush."""
    flush_logs()
    return [log.message for log in every(prefect.read_logs, log_filter=LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]
