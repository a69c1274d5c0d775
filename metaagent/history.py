"""Reading runs back from a journal: identities of workflows and reports of stored runs."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from metaagent.batch import aggregate
from metaagent.model import TaskResult, TaskState

if TYPE_CHECKING:
    from metaagent.journal.base import StoredRun
    from metaagent.model import AgentTask


def batch_key(name: str, tasks: list[AgentTask], workdir: str) -> str:
    """A workflow run's identity: the same tasks, name and workdir give the same key."""
    canon = [
        [t.id, t.capability, t.prompt, t.input, list(t.depends_on), t.priority, t.complexity,
         t.timeout_s, t.max_attempts, list(t.resources),
         None if t.verify is None else list(t.verify.argv), t.metadata]
        for t in tasks
    ]  # fmt: skip
    blob = json.dumps([name, workdir, canon], sort_keys=True, default=str)
    return "wf:" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def stored_report(stored: StoredRun) -> dict[str, object]:
    """A stored run in the shape of ``metaagent run --json`` (the same contract)."""
    results: list[TaskResult] = []
    for t in stored.tasks:
        r = stored.results.get(t.id)
        attempts = stored.attempts.get(t.id, [])
        state = r.state if r is not None else (TaskState.RUNNING if any(
            a.finished_at is None for a in attempts) else TaskState.PENDING)  # fmt: skip
        results.append(
            TaskResult(
                t.id,
                state,
                None if r is None else r.output,
                None if r is None else r.error,
                attempts[-1].agent if attempts else None,
                attempts,
                t.capability,
                None,
                None if r is None else r.finished_at,
            )
        )
    report = aggregate(results, name=stored.info.name, run_id=stored.info.run_id).to_json()
    report["decisions"] = stored.decisions
    report["finished"] = stored.info.finished
    return report
