"""Where applied decisions go besides the scheduler: the journal and the event stream.

Each sink is a class of hooks (in the manner of dramatiq's middleware): ``Sink`` does nothing,
``JournalSink`` records what happened, ``EventSink`` tells a run's subscribers. The orchestrator
calls both for every output it applies (a plain ``Sink`` stands for the journal when there is
none, so nothing is built for it); neither decides anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.decisions import CancelTask, Decision, FailTask, RetryTask, SkipTask
from metaagent.runtime.events import Event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaagent.core.decisions import RouteTask
    from metaagent.core.learning import Learning
    from metaagent.core.scheduler.records import TaskRecord
    from metaagent.core.tasks import AgentTask, Attempt
    from metaagent.journal.base import Journal
    from metaagent.runtime.handle import RunHandle

_ENDED_AS: dict[type[Decision], str] = {
    FailTask: "failed",
    SkipTask: "skipped",
    CancelTask: "cancelled",
}
"""Decisions that record a task's terminal state, and the state each publishes."""


class Sink:
    """No-op hooks, one per thing that happens to a run. Subclasses fill in what they need.

    Times given to the run's handle are relative to its start (``d.at - h.started_at``).
    """

    __slots__ = ()

    def routed(self, h: RunHandle, d: RouteTask, rec: TaskRecord) -> None:
        """An attempt was routed (it starts once the journal has it)."""

    def succeeded(self, h: RunHandle, rec: TaskRecord, at: float) -> None:
        """A task succeeded with ``rec.output``."""

    def decided(self, h: RunHandle, d: Decision, rec: TaskRecord | None) -> None:
        """Any other decision about the run; ``rec`` is the task it ended, if it ended one."""

    def expanded(self, h: RunHandle, subtasks: Sequence[AgentTask]) -> None:
        """A task was decomposed into ``subtasks``."""

    def attempt_ended(self, h: RunHandle, task_id: str, attempt: Attempt) -> None:
        """A running attempt was stopped from outside (a cancel)."""

    def attempt_finished(self, rec: TaskRecord, number: int) -> None:
        """Attempt ``number`` of a task ended and its outcome was applied."""

    def run_completed(self, h: RunHandle, at: float) -> None:
        """Every task of the run is terminal."""

    def stage(self, learning: Learning) -> None:
        """Record what ``learning`` learned since the last commit (not durable yet)."""

    def commit(self, learning: Learning) -> None:
        """Make everything recorded so far durable, with what ``learning`` learned since the
        last commit. Raises ``JournalError`` when that fails."""


class JournalSink(Sink):
    """Records decisions, attempts and terminal states in a journal (made durable by the
    orchestrator's commit)."""

    __slots__ = ("journal",)

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def routed(self, h: RunHandle, d: RouteTask, rec: TaskRecord) -> None:
        self.journal.attempt_started(h.run_id, rec.task.id, rec.attempts[-1])
        self.journal.decision(h.run_id, d, d.at - h.started_at)

    def succeeded(self, h: RunHandle, rec: TaskRecord, at: float) -> None:
        self.journal.task_finished(
            h.run_id, rec.task.id, rec.state, rec.output, None, at - h.started_at
        )

    def decided(self, h: RunHandle, d: Decision, rec: TaskRecord | None) -> None:
        at = d.at - h.started_at
        self.journal.decision(h.run_id, d, at)
        if rec is not None:
            self.journal.task_finished(h.run_id, rec.task.id, rec.state, None, rec.error, at)

    def expanded(self, h: RunHandle, subtasks: Sequence[AgentTask]) -> None:
        self.journal.add_tasks(h.run_id, subtasks)

    def attempt_ended(self, h: RunHandle, task_id: str, attempt: Attempt) -> None:
        self.journal.attempt_finished(h.run_id, task_id, attempt)

    def attempt_finished(self, rec: TaskRecord, number: int) -> None:
        ended = next(a for a in reversed(rec.attempts) if a.number == number)
        self.journal.attempt_finished(rec.run.id, rec.task.id, ended)

    def run_completed(self, h: RunHandle, at: float) -> None:
        self.journal.run_finished(h.run_id)

    def stage(self, learning: Learning) -> None:
        dirty = learning.drain_dirty()
        if dirty:
            self.journal.save_stats((s, c, learning.arms[(s, c)]) for s, c in dirty)

    def commit(self, learning: Learning) -> None:
        self.stage(learning)
        self.journal.flush()


class EventSink(Sink):
    """Publishes a run's progress to its subscribers. The caller checks ``h.listening`` first,
    so that no event is built (and no call made) for a run nobody watches."""

    __slots__ = ()

    def routed(self, h: RunHandle, d: RouteTask, rec: TaskRecord) -> None:
        at = d.at - h.started_at
        h.publish(Event("task", at, h.run_id, d.task_id, "running", d.spec, d.reason, d))

    def succeeded(self, h: RunHandle, rec: TaskRecord, at: float) -> None:
        agent = rec.attempts[-1].agent if rec.attempts else None
        h.publish(Event("task", at - h.started_at, h.run_id, rec.task.id, "succeeded", agent))

    def decided(self, h: RunHandle, d: Decision, rec: TaskRecord | None) -> None:
        h.publish(decision_event(h, d))

    def run_completed(self, h: RunHandle, at: float) -> None:
        h.publish(Event("run", at - h.started_at, h.run_id))


def decision_event(h: RunHandle, d: Decision) -> Event:
    """The event a decision publishes: a task's new state, or a plain decision."""
    at = d.at - h.started_at
    if isinstance(d, RetryTask):
        return Event("task", at, h.run_id, d.task_id, "retrying", d.failed_agent, d.reason, d)
    state = _ENDED_AS.get(type(d))
    if state is not None:
        return Event("task", at, h.run_id, d.task_id, state, None, d.reason, d)
    return Event("decision", at, h.run_id, d.task_id, None, d.agent, d.reason, d)


def ends_task(d: Decision) -> bool:
    """Whether ``d`` records a task's terminal state (failed, skipped, cancelled)."""
    return type(d) in _ENDED_AS and d.task_id is not None
