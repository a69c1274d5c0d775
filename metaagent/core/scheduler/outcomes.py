"""Outcomes: how attempts end, retries and their back-off, failures and cancellation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.decisions import CancelTask, FailTask, RetryTask, TaskCompleted
from metaagent.core.health import is_agent_fault
from metaagent.core.instances import AgentInstance, AgentState
from metaagent.core.planner import InvalidPlan, expand, parse_plan
from metaagent.core.retry import compute_backoff
from metaagent.core.scheduler.decompose import Decomposing
from metaagent.core.tasks import Outcome, TaskState
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from metaagent.core.decisions import Output
    from metaagent.core.scheduler.records import RunRecord, TaskRecord
    from metaagent.core.specs import AgentSpec

_RUNNING = TaskState.RUNNING
_PENDING = TaskState.PENDING
_AREADY = AgentState.READY
_SUCCESS = Outcome.SUCCEEDED
_SUCCEEDED = TaskState.SUCCEEDED


class Outcomes(Decomposing):
    """Records how attempts end and what follows: success, retry elsewhere, failure, skips."""

    def finish(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        outcome: Outcome,
        now: float,
        *,
        output: object = None,
        error: str | None = None,
    ) -> list[Output]:
        """Record how attempt ``attempt`` of a task ended.

        A result from an attempt that is no longer current (the task was re-routed, cancelled or
        already finished) is rejected: it changes nothing and returns no decision.
        """
        run = self.runs.get(run_id)
        rec = run.tasks.get(task_id) if run is not None else None
        if (
            rec is None
            or rec.state is not _RUNNING
            or rec.attempt != attempt
            or rec.instance is None
        ):
            self.stale_results += 1
            return []
        if outcome is not _SUCCESS:
            return self._unsuccessful(rec, outcome, now, error)
        plan = rec.task.decompose
        if plan is not None and plan.planner:
            return self._plan_returned(rec, output, now)
        # The common case, inline: a task succeeded (``_end_attempt`` without a hold).
        run = rec.run
        att = rec.attempts[-1]
        att.finished_at = ended = now - run.started_at
        att.outcome = outcome
        att.error = error
        inst = rec.instance
        rec.instance = None
        task = rec.task
        cap = task.capability
        self._free_slot(inst, cap, task.resources, now)
        self.pool.on_success(inst)
        usage = att.usage
        if rec.avoid and inst.spec.name in rec.avoid:
            self._repeated(rec, inst.spec, True)
        seen = self.learning.record(
            inst.spec.name, cap, True, ended - att.started_at, task.complexity,
            None if usage is None else usage.cost_usd,
        )  # fmt: skip
        if seen >= self._check_at.get(cap, 1):
            self._learned(cap, seen)
        rec.output = output
        rec.error = None
        if rec.parent is None:  # ``_terminal`` of a running task, inline
            rec.state = _SUCCEEDED
            rec.finished_at = now
            run.open -= 1
            self.queued -= 1
        else:
            self._terminal(rec, _SUCCEEDED, now)
        out: list[Output] = [TaskCompleted(now, run_id, task_id)]
        if run.graph.dependents[task_id]:
            self._succeeded_below(run, task_id, now)
        if self._settle or self._outbox:
            self._drain(out, now)
        if run.open == 0:  # the common case, a task of many, costs no call
            self._complete(run, now, out)
        if self._revise or self._stale_runs:
            self._revise_ranks()
        return out

    def _succeeded_below(self, run: RunRecord, task_id: str, now: float) -> None:
        """Release the dependents of ``task_id`` left with nothing unmet. A dependent cancelled
        while it waited stays cancelled: terminal states are final."""
        tasks = run.tasks
        released = [t for t in run.graph.succeeded(task_id) if tasks[t].state is _PENDING]
        if released:
            self._release(run, released, now)

    def _plan_returned(self, rec: TaskRecord, output: object, now: float) -> list[Output]:
        """A planner's attempt succeeded: expand its plan, or fail the attempt if the plan is
        not valid (the problems go back to the planner as feedback on its next attempt)."""
        try:
            steps = parse_plan(output)
            self._check_plan(len(steps))
            expand(rec.task, steps, self.router.capabilities())
        except InvalidPlan as exc:
            rec.feedback = exc.problems
            return self._unsuccessful(rec, Outcome.ERROR, now, str(exc))
        return self._planned(rec, steps, now)

    def _planned(
        self, rec: TaskRecord, steps: Sequence[Mapping[str, object]], now: float
    ) -> list[Output]:
        """A planner's attempt returned a valid plan: close the attempt, expand the task."""
        inst = self._end_attempt(rec, _SUCCESS, now, None)
        assert inst is not None
        self.pool.on_success(inst)
        task = rec.task
        att = rec.attempts[-1]
        self.learning.record(
            inst.spec.name, task.capability, True, att.duration_s, task.complexity,
            None if att.usage is None else att.usage.cost_usd,
        )  # fmt: skip
        rec.feedback = ()
        self._expand(rec, steps, now, f"planner {inst.spec.name}")
        return self._drain([], now)

    def _unsuccessful(
        self, rec: TaskRecord, outcome: Outcome, now: float, error: str | None
    ) -> list[Output]:
        """The current attempt ended otherwise than in success: cancelled from outside, or
        failed (then retried or, out of attempts, failed for good)."""
        inst = self._end_attempt(rec, outcome, now, error)
        assert inst is not None
        out: list[Output] = []
        if outcome is Outcome.CANCELLED:
            # Stopped from outside the scheduler (say, at shutdown): not the agent's failure, and
            # the task must not stay ``running`` with no attempt behind it.
            rec.error = error or "cancelled"
            self._terminal(rec, TaskState.CANCELLED, now)
            out.append(
                CancelTask(
                    now, rec.run.id, rec.task.id, "the attempt was cancelled", False, inst.id
                )
            )
            out.extend(self._skip_downstream(rec, now))
            self._complete(rec.run, now, out)
            return out
        spec = inst.spec.name
        if outcome is Outcome.BUDGET_EXCEEDED:  # refused before it ran: not the agent's doing
            return self._drain(self._failed_attempt(rec, spec, outcome, error, now), now)
        # The breaker counts agent faults only: an error, timeout or rejected check is the
        # task's outcome, and a task that fails on every agent fails alone (``max_attempts``).
        if is_agent_fault(outcome, inst.id, rec.attempts[:-1]):
            out.extend(self.pool.on_failure(inst, now))
        att = rec.attempts[-1]
        duration = att.duration_s if outcome is Outcome.ERROR else None
        cost = None if att.usage is None else att.usage.cost_usd  # a failure is billed too
        if rec.avoid and spec in rec.avoid:
            self._repeated(rec, inst.spec, False)
        self.learning.record(spec, rec.task.capability, False, duration, rec.task.complexity, cost)
        out.extend(self._failed_attempt(rec, spec, outcome, error, now))
        return self._drain(out, now)

    def _repeated(self, rec: TaskRecord, spec: AgentSpec, success: bool) -> None:
        """An attempt on a spec that had already failed the task ended: evidence of how much
        a failure there says of the next one (``core.routing.repeat``)."""
        task = rec.task
        cap = task.capability
        learning = self.learning
        p = learning.expected_success(spec.name, cap, spec.capabilities[cap], task.complexity)
        learning.record_repeat(spec.name, cap, success, p)

    def _end_attempt(
        self,
        rec: TaskRecord,
        outcome: Outcome,
        now: float,
        error: str | None,
        *,
        hold: bool = False,
    ) -> AgentInstance | None:
        """Close the current attempt and free its slot and resources; with ``hold`` (a cancel
        of an attempt that is still working) they stay taken until ``stopped`` is told."""
        att = rec.attempts[-1]
        att.finished_at = now - rec.run.started_at
        att.outcome = outcome
        att.error = error
        inst = rec.instance
        rec.instance = None
        task = rec.task
        if hold and inst is not None:
            self.stopping[(rec.run.id, task.id, att.number)] = (
                inst,
                task.capability,
                task.resources,
            )
            return inst
        self._free_slot(inst, task.capability, task.resources, now)
        return inst

    def _free_slot(
        self,
        inst: AgentInstance | None,
        capability: str,
        resources: tuple[str, ...],
        now: float,
    ) -> None:
        if inst is not None:
            inst.running -= 1
            inst.tasks_done += 1
            inst.busy_s += now
            if inst.running == 0:
                inst.idle_since = now
            if inst.state is _AREADY and inst.running < inst.slots:
                self.router.adjust_free(inst, +1)
        self.running -= 1
        self._running_cap[capability] -= 1
        if resources:
            self._free_resources(resources)

    def stopped(self, run_id: str, task_id: str, attempt: int, now: float) -> list[Output]:
        """A cancelled attempt's work has really stopped (its thread returned, its process was
        reaped): its slot and resources are free from now. Unknown attempts change nothing."""
        held = self.stopping.pop((run_id, task_id, attempt), None)
        if held is not None:
            self._free_slot(held[0], held[1], held[2], now)
        return self._drain([], now)

    def _free_resources(self, resources: tuple[str, ...]) -> None:
        """Give back a task's resources; the entries parked on them go back to their queues."""
        held = self._held
        unpark = self.queues.unpark
        for r in resources:
            left = held[r] - 1
            if left:
                held[r] = left
            else:
                del held[r]
            unpark(r)

    def _failed_attempt(
        self,
        rec: TaskRecord,
        spec: str,
        outcome: Outcome,
        error: str | None,
        now: float,
        *,
        agent_lost: bool = False,
    ) -> list[Output]:
        task = rec.task
        out: list[Output] = []
        rec.error = error
        if outcome is Outcome.VERIFY_FAILED and error:
            rec.feedback = (error,)  # the check's output goes to the retry as feedback
        charged = sum(1 for a in rec.attempts if a.outcome is not Outcome.LOST)
        if charged < task.max_attempts and outcome is not Outcome.BUDGET_EXCEEDED:
            # When its agent was lost, the task goes to another agent after the first step of
            # the back-off however many attempts it made: the agent failed, and failover must
            # stay fast. (Attempts still count against max_attempts; restarts back off.)
            step = 1 if agent_lost else rec.attempt
            delay = compute_backoff(self.config.retry, step, self.rng)
            rec.avoid = rec.avoid | {spec}
            # Soft fallback: the failed specs pay the back-off once more in the retry's cost,
            # and their success is that of a repeat (``core.routing.repeat``): another agent
            # is preferred unless taking one back is still the cheapest.
            rec.penalty_s = delay
            rec.state = TaskState.READY
            rec.not_before = now + delay
            self.queues.delay(rec, rec.not_before)
            others = self.router.specs_for(task.capability) - rec.avoid
            phi = self.learning.repeat_factor(spec, task.capability)[0]
            where = (
                f"preferring another agent ({', '.join(sorted(others))}) unless {spec} is "
                f"still the cheapest with a repeat's success ({phi:.2f} of a first try's) and "
                f"the back-off again"
                if others
                else "no other agent offers this capability, so the same may take it"
            )
            out.append(
                RetryTask(
                    now,
                    rec.run.id,
                    task.id,
                    f"attempt {rec.attempt} on {spec} ended {outcome.value}"
                    f"{': ' + _last_line(error) if error else ''}; retry in {delay:.2f}s, {where}",
                    next_attempt=rec.attempt + 1,
                    delay_s=delay,
                    failed_agent=spec,
                    avoid=tuple(sorted(rec.avoid)),
                )
            )
            return out
        summary = "; ".join(
            f"#{a.number} {a.agent}: {a.outcome.value if a.outcome else '?'}" for a in rec.attempts
        )
        out.append(
            FailTask(
                now,
                rec.run.id,
                task.id,
                f"all {len(rec.attempts)} attempts failed ({summary})",
            )
        )
        self._terminal(rec, TaskState.FAILED, now)
        out.extend(self._skip_downstream(rec, now))
        self._complete(rec.run, now, out)
        return out

    def cancel(self, run_id: str, task_ids: Iterable[str] | None, now: float) -> list[Output]:
        """Cancel the named tasks of a run (all its open tasks when ``task_ids`` is None).

        Tasks depending on a cancelled one are skipped; a decomposed task's open sub-tasks are
        cancelled with it. Unknown ids raise ``WorkflowError``.
        """
        run = self.runs.get(run_id)
        if run is None:
            raise WorkflowError(f"unknown run {run_id!r}")
        ids = list(run.tasks) if task_ids is None else list(task_ids)
        for tid in ids:
            if tid not in run.tasks:
                raise WorkflowError(f"run {run_id!r} has no task {tid!r}")
        out: list[Output] = []
        self._cancel(run, ids, now, out)
        if ids:
            self._complete(run, now, out)
        return self._drain(out, now)

    def _cancel(self, run: RunRecord, ids: list[str], now: float, out: list[Output]) -> None:
        for tid in ids:
            rec = run.tasks[tid]
            if rec.state.terminal:
                continue
            was_running = rec.state is _RUNNING and rec.instance is not None
            instance = rec.instance.id if rec.instance is not None else None
            if was_running:
                # Its slot and resources stay taken until the runtime says its work stopped.
                self._end_attempt(rec, Outcome.CANCELLED, now, "cancelled", hold=True)
            rec.error = "cancelled"
            self._terminal(rec, TaskState.CANCELLED, now)
            out.append(CancelTask(now, run.id, tid, "cancelled on request", was_running, instance))
            out.extend(self._skip_downstream(rec, now))
            if rec.children_open:
                # A decomposed task: its open sub-tasks go with it (it is already final, so
                # their ending does not settle it again).
                self._cancel(run, [c for c in rec.children if not run.tasks[c].state.terminal],
                             now, out)  # fmt: skip


def _last_line(text: str) -> str:
    line = text.strip().splitlines()[-1] if text.strip() else ""
    return line[:200]
