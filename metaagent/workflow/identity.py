"""Workflow identity: the key that tells a run of the same workflow (and inputs) again."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metaagent.core.tasks import AgentTask


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
