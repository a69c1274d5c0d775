"""The events the service records: the runtime's events of each run it executes, as the JSON
objects of docs/service.md ("The event object"), and the run events it makes itself
(``submitted``, ``resumed``, ``cancel_requested``, ``finished``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from metaagent.core.tasks import TaskState
from metaagent.service.store import run_state

if TYPE_CHECKING:
    from collections.abc import Callable

    from metaagent.core.decisions import Decision
    from metaagent.runtime.events import Event
    from metaagent.runtime.handle import RunHandle
    from metaagent.runtime.orchestrator import Orchestrator
    from metaagent.service.eventlog import EventLog

__all__ = ["EVENT_TYPES", "RUN_EVENT_STATES", "TASK_EVENT_STATES", "Announcer", "event_doc"]

EVENT_TYPES = ("run", "task", "decision")
RUN_EVENT_STATES = ("submitted", "resumed", "cancel_requested", "finished")
TASK_EVENT_STATES = ("running", "succeeded", "retrying", "failed", "skipped", "cancelled")
_POOL_SEEN = 10_000
_FIELDS = ("task_id", "state", "agent", "instance", "detail", "decision")


def event_doc(ev: Event, instance: str | None = None) -> dict[str, object]:
    """A runtime event as the service records it (``seq`` and ``ts`` are added when stored)."""
    decision: dict[str, object] | None = None
    if ev.decision is not None:
        decision = ev.decision.to_json()
        decision["at"] = round(ev.at, 6)
        if instance is None and isinstance(decision.get("instance"), str):
            instance = str(decision["instance"])
    return {
        "type": ev.kind,
        "run_id": ev.run_id,
        "at": round(ev.at, 6),
        "task_id": ev.task_id,
        "state": ev.state,
        "agent": ev.agent,
        "instance": instance,
        "detail": ev.detail,
        "decision": decision,
    }


class Listener:
    """The ``on_event`` callback of one run: records its events, after the run event that
    opens its story (``submitted`` or ``resumed``)."""

    __slots__ = ("_announcer", "_extra", "_opened", "_opening", "run_id")

    def __init__(
        self, announcer: Announcer, run_id: str, opening: str, extra: dict[str, object]
    ) -> None:
        self._announcer = announcer
        self.run_id = run_id
        self._opening = opening
        self._extra = extra
        self._opened = False

    def announce(self, handle: RunHandle | None = None) -> None:
        """Record the opening run event, if no event of the run came before it; with the
        run's ``handle``, also the pool decisions it holds that were never published (the
        agents started with the first run)."""
        a = self._announcer
        if not self._opened:
            self._opened = True
            tasks = a.task_count(self.run_id)
            a.run_event(self.run_id, self._opening, tasks=tasks, **self._extra)
        if handle is not None:
            for d in handle.decisions:
                if d.run_id is None:
                    a.pool_decision(d)

    def __call__(self, ev: Event) -> None:
        self.announce()
        a = self._announcer
        for observe in a.observers:
            observe(ev)
        if ev.kind == "run":
            a.finished(ev)
            return
        if ev.kind == "decision" and ev.decision is not None and ev.decision.run_id is None:
            a.pool_decision(ev.decision)  # every open run is told: recorded once, of no run
            return
        instance = a.instance_of(ev) if ev.state == "succeeded" else None
        a.log.append(event_doc(ev, instance))


class Announcer:
    """Turns what the orchestrator publishes into recorded events."""

    def __init__(self, log: EventLog, orch: Orchestrator) -> None:
        self.log = log
        self.orch = orch
        self.observers: list[Callable[[Event], None]] = []  # told every runtime event
        self._pool_seen: dict[int, None] = {}  # pool decisions recorded, oldest first

    def listener(self, run_id: str, opening: str, **extra: object) -> Listener:
        return Listener(self, run_id, opening, extra)

    def run_event(self, run_id: str, state: str, **extra: object) -> None:
        doc: dict[str, object] = {"type": "run", "run_id": run_id, "at": None}
        doc.update(dict.fromkeys(_FIELDS))
        doc["state"] = state
        doc.update(extra)
        self.log.append(doc)

    def pool_decision(self, d: Decision) -> None:
        """Record a decision about the pool that belongs to no run (``run_id`` null), once."""
        key = id(d)  # decisions live on in their runs' handles while those are in memory
        if key in self._pool_seen:
            return
        self._pool_seen[key] = None
        if len(self._pool_seen) > _POOL_SEEN:
            self._pool_seen.pop(next(iter(self._pool_seen)))
        decision = d.to_json()
        decision["at"] = None  # the orchestrator's clock: ``ts`` says when
        doc: dict[str, object] = {"type": "decision", "run_id": None, "at": None}
        doc.update(dict.fromkeys(_FIELDS))
        doc.update(agent=d.agent, detail=d.reason, decision=decision)
        instance = decision.get("instance")
        doc["instance"] = instance if isinstance(instance, str) else None
        self.log.append(doc)

    def task_count(self, run_id: str) -> int:
        run = self.orch.scheduler.runs.get(run_id)
        return 0 if run is None else len(self.orch.task_states(run_id))

    def instance_of(self, ev: Event) -> str | None:
        run = self.orch.scheduler.runs.get(ev.run_id)
        rec = None if run is None or ev.task_id is None else run.tasks.get(ev.task_id)
        if rec is None or not rec.attempts:
            return None
        return rec.attempts[-1].agent_instance

    def finished(self, ev: Event) -> None:
        """The run's end: its counts recorded, then the run dropped from memory (the journal
        has it) so that a long-lived server does not grow with the runs it served."""
        counts: dict[str, int] = {}
        for st in self.orch.task_states(ev.run_id).values():
            if st is not TaskState.PENDING:
                counts[st.value] = counts.get(st.value, 0) + 1
        doc: dict[str, object] = {"type": "run", "run_id": ev.run_id, "at": round(ev.at, 6)}
        doc.update(dict.fromkeys(_FIELDS))
        doc.update(state="finished", counts=counts, run_state=run_state(True, counts, False))
        self.log.append(doc)
        asyncio.get_running_loop().call_soon(self._forget, ev.run_id)

    def _forget(self, run_id: str) -> None:
        try:
            self.orch.forget(run_id)
        except Exception:  # still being read back: kept, harmlessly
            return
