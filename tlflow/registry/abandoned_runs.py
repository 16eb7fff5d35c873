"""MLflow runs whose process died (`kill -9`, a crash, a lost machine) stay RUNNING forever: closing
them is the next run's job.

Every pipeline run records the process that owns it (`owner_tags`: host, pid and PID namespace,
the identity the promotion lock records too). A later run of the same experiment closes the
RUNNING runs whose owner is provably dead (`close_abandoned_runs`): same host and PID namespace,
and no such process, or a pid reused since the run started (`tlflow.registry.lock.holder_alive`).
It marks them KILLED, with a note in the run's description and the `killed_note` tag saying what
happened and who found it. A run owned by another host, or recorded without an owner, cannot be
checked and is left as it is.
"""

from __future__ import annotations

import os
import socket
import time

from mlflow import MlflowClient
from mlflow.entities import RunStatus

from tlflow.registry.descriptions import NOTE_TAG  # the run's description in the MLflow UI
from tlflow.registry.lock import Holder, _pid_namespace, holder_alive

PROCESS_TAG = "process"  # "host:pid" of the process that owns the run
PROCESS_NS_TAG = "process_pid_ns"
KILLED_TAG = "killed_note"


def owner_tags() -> dict[str, str]:
    """Tags that name this process as the owner of a run it starts."""
    return {PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}", PROCESS_NS_TAG: _pid_namespace()}


def owner(run) -> Holder | None:
    """The process that owns `run`, from its tags; None for a run recorded without one."""
    host, _, pid = run.data.tags.get(PROCESS_TAG, "").rpartition(":")
    if not host or not pid.isdigit():
        return None
    return Holder(host, int(pid), run.data.tags.get(PROCESS_NS_TAG, ""), run.info.start_time / 1000)


def close_abandoned_runs(client: MlflowClient, experiment_id: str, found_by: str) -> list[str]:
    """Mark the RUNNING runs of `experiment_id` whose owning process is provably dead KILLED, with
    a note naming `found_by` (the run that noticed); returns their ids, oldest first."""
    running = client.search_runs([experiment_id], f"attributes.status = '{RunStatus.to_string(RunStatus.RUNNING)}'",
                                 order_by=["attributes.start_time ASC"], max_results=1000)
    closed = []
    now = time.time()
    for run in running:
        holder = owner(run)
        if holder is None or run.info.run_id == found_by or holder_alive(holder) is not False:
            continue
        note = (f"KILLED: its process {holder.label} ended without closing the run (killed or crashed); "
                f"found by run {found_by} at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now))}.")
        description = run.data.tags.get(NOTE_TAG, "")
        client.set_tag(run.info.run_id, KILLED_TAG, note)
        client.set_tag(run.info.run_id, NOTE_TAG, f"{description}\n\n{note}" if description else note)
        client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.KILLED), end_time=int(now * 1000))
        closed.append(run.info.run_id)
    return closed
