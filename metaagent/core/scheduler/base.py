"""The scheduler's shared state, created once, and the checks and estimates its parts use.

``Scheduler`` is one object built as a chain of parts, each a subclass of the one below and
calling only what is defined in itself or below it: ``SchedulerBase`` (this state),
``Dispatching``, ``Decomposing`` (release, expansion, ends of tasks and runs), ``Outcomes``,
``Restoring``, then ``Scheduler`` (the public events).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from metaagent.core.learning import Learning
from metaagent.core.planner import InvalidPlan
from metaagent.core.pool import Pool
from metaagent.core.queues import ReadyQueues
from metaagent.core.routing.router import Router
from metaagent.core.scheduler.config import SchedulerConfig
from metaagent.core.tasks import TaskState
from metaagent.errors import CapacityError, UnknownCapabilityError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    from metaagent.core.decisions import Output
    from metaagent.core.instances import AgentInstance
    from metaagent.core.scheduler.records import RunRecord, TaskRecord
    from metaagent.core.tasks import AgentTask


_READY = TaskState.READY


class SchedulerBase:
    """The state every part of the scheduler reads and changes."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config = config or SchedulerConfig()
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.rng = random.Random(config.seed)
        self.learning = Learning(
            mode=config.routing, rng=random.Random(config.seed + 1), frozen=not config.learn
        )
        self.router = Router(self.learning, config.weights)
        self.pool = Pool(
            self.router,
            config.pool,
            config.health,
            self.rng,
            max_concurrency=config.max_concurrency,
            capability_limits=config.capability_limits,
        )
        self.agents: dict[str, AgentInstance] = self.pool.instances
        self.runs: dict[str, RunRecord] = {}
        self.running = 0
        self.peak_running = 0
        self.queued = 0  # accepted, unfinished tasks
        self.stale_results = 0  # results rejected by fencing
        self.queues = ReadyQueues(config.aging_interval_s)
        self._pending_cap: dict[str, int] = {}  # capability -> tasks waiting on dependencies
        self.router.waiting = self.queues.waiting
        self.router.pending = self._pending_cap
        self._basis: dict[str, float] = {}  # capability -> learned unit duration ranks assume
        self._check_at: dict[str, int] = {}  # capability -> samples at which to check again
        self._revise: set[str] = set()  # capabilities whose estimate moved materially
        self._stale_runs: dict[str, RunRecord] = {}  # runs whose ranks wait for a revision
        self._results = 0  # results that revised ranks (the clock of ``revised_at``)
        self.revisions = 0  # rank revisions made (runs re-ranked)
        self.decisions = 0  # routing decisions made: to start a task now, or to let it wait
        self._held: dict[str, int] = {}  # resource -> holders
        self._running_cap: dict[str, int] = {}  # capability -> attempts running
        # Cancelled attempts whose work has not stopped yet, by (run, task, attempt): each
        # keeps its slot, its capability's count and its resources until ``stopped``.
        self.stopping: dict[tuple[str, str, int], tuple[AgentInstance, str, tuple[str, ...]]] = {}
        self._runs_seen = 0
        self._settle: list[TaskRecord] = []  # decomposed tasks whose sub-tasks all ended
        self._outbox: list[Output] = []  # decisions made deep inside a call, returned by it

    @staticmethod
    def _check_capability(
        task: AgentTask, index: int, known: Collection[str], where: str | None
    ) -> None:
        """Raise ``UnknownCapabilityError`` for a task no spec can serve (a task decomposed by
        a template is never routed itself: its sub-tasks are)."""
        if task.capability in known or (task.decompose is not None and task.decompose.template):
            return
        place = f"tasks[{index}] (id {task.id!r}).capability"
        raise UnknownCapabilityError(
            task.capability, sorted(known), where=f"{where}: {place}" if where else place
        )

    def _check_room(self, open_tasks: int) -> None:
        """Raise ``CapacityError`` if ``open_tasks`` more would pass the queue bound."""
        bound = self.config.max_queued
        if self.queued + open_tasks > bound:
            raise CapacityError(
                f"queue full: {self.queued} tasks are queued and the bound is {bound}; "
                f"a batch of {open_tasks} was refused (nothing accepted was dropped)",
                bound=bound,
            )

    def _check_plan(self, size: int) -> None:
        """Raise ``InvalidPlan`` if a plan of ``size`` sub-tasks may not be expanded now: it
        is larger than ``max_plan_tasks``, or its sub-tasks would pass the queue bound (they
        count against ``max_queued`` as submitted tasks do)."""
        cfg = self.config
        if size > cfg.max_plan_tasks:
            raise InvalidPlan(
                [f"the plan has {size} sub-tasks; at most {cfg.max_plan_tasks} are allowed "
                 "(max_plan_tasks)"]
            )  # fmt: skip
        if self.queued + size > cfg.max_queued:
            raise InvalidPlan(
                [f"queue full: {self.queued} tasks are queued and the bound is "
                 f"{cfg.max_queued} (max_queued); a plan of {size} sub-tasks would pass it"]
            )  # fmt: skip

    def _estimator(
        self, history: Mapping[str, float] | None = None
    ) -> Callable[[AgentTask], float]:
        """``_estimate`` with each capability's learned duration looked up once, for ranking
        many tasks in one go."""
        units: dict[str, float] = {}
        learned = self.learning.capability_unit

        def estimate(task: AgentTask) -> float:
            if task.estimate_s is not None:
                return task.estimate_s
            if history:
                seen = history.get(task.id)
                if seen is not None:
                    return seen
            base = units.get(task.capability)
            if base is None:
                base = units[task.capability] = learned(task.capability) or 1.0
            return base * (0.5 + task.complexity)

        return estimate

    def _estimate(self, task: AgentTask, history: Mapping[str, float] | None = None) -> float:
        """Expected seconds of ``task``, in order: its ``estimate_s``; its duration in earlier
        runs of the same workflow (``history``); its capability's learned duration per unit
        of complexity times ``0.5 + complexity`` (1 s per unit when nothing is learned)."""
        return self._estimator(history)(task)

    def _rank(
        self, run: RunRecord, estimate: Callable[[AgentTask], float], fresh: bool = False
    ) -> dict[str, float]:
        """Upward ranks of the run's open tasks and its horizon (critical path plus work over
        the slots); notes which capabilities' learned durations the ranks rest on. ``fresh``:
        no task of the run has ended yet (one pass less)."""
        graph = run.graph
        tasks = run.tasks
        ests: dict[str, float] = {}
        learned: set[str] = set()
        fixed = False
        history = run.history
        work = 0.0
        for tid, rec in tasks.items():
            t = rec.task
            e = ests[tid] = rec.est = estimate(t)
            work += e
            if t.estimate_s is not None or (history and tid in history):
                fixed = True
            else:
                learned.add(t.capability)
        done = () if fresh else [tid for tid, rec in tasks.items() if rec.state.terminal]
        rank = graph.upward_rank(estimate, done, ests)
        run.learned = frozenset(learned)
        run.fixed = fixed
        run.horizon = max(rank.values(), default=0.0) + work / self.router_slots()
        return rank

    def router_slots(self) -> int:
        """Slots the pool offers now (at least 1), capped by the concurrency limit."""
        total = sum(i.slots for i in self.pool.instances.values())
        return max(1, min(total, self.config.max_concurrency))

    def _learned(self, capability: str, samples: int) -> None:
        """``capability`` has seen ``samples`` durations, twice as many as when this was last
        checked: ranks resting on its learned duration are revised when it moved by more than
        a quarter from what they assume. Checked at each doubling of the evidence only, so
        O(log n) checks and revisions per capability."""
        self._check_at[capability] = 2 * samples
        new = self.learning.capability_unit(capability)
        if new is None:
            return
        basis = self._basis.get(capability, 1.0)
        if basis * 0.8 <= new <= basis * 1.25:
            return
        self._basis[capability] = new
        self._revise.add(capability)

    def _revise_ranks(self) -> None:
        """Re-rank the open runs whose order the moved estimates change: those that mix two
        capabilities' learned durations, or learned ones with given ones (a run of one
        capability keeps its order when that capability's estimate scales). Queued tasks get
        new entries (the old ones go stale); O(tasks + links) per run re-ranked."""
        moved = self._revise
        self._revise = set()
        self._results += 1
        for run in self.runs.values():
            if not run.open or not run.ranked or run.unread is not None:
                continue
            if run.learned & moved and (len(run.learned) > 1 or run.fixed):
                self._stale_runs[run.id] = run
        for rid, run in list(self._stale_runs.items()):
            if not run.open or run.unread is not None:
                del self._stale_runs[rid]
            elif (self._results - run.revised_at) * 8 >= run.open:
                # A run is re-ranked after at least an eighth as many results as it has open
                # tasks since its last ranking: the O(tasks) cost is spread over them.
                del self._stale_runs[rid]
                self._rerank(run)

    def _rerank(self, run: RunRecord) -> None:
        rank = self._rank(run, self._estimator(run.history))
        run.revised_at = self._results
        self.revisions += 1
        for tid, rec in run.tasks.items():
            if not rec.state.terminal:
                rec.rank = rank.get(tid, rec.rank)
        self.queues.rekey(run)
