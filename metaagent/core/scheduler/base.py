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
from metaagent.core.routing import Router
from metaagent.core.scheduler.config import SchedulerConfig
from metaagent.errors import CapacityError, UnknownCapabilityError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from metaagent.core.decisions import Output
    from metaagent.core.instances import AgentInstance
    from metaagent.core.scheduler.records import RunRecord, TaskRecord
    from metaagent.core.tasks import AgentTask


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
        self.router = Router(self.learning, config.weights, config.max_candidates)
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
        self._held: dict[str, int] = {}  # resource -> holders
        self._running_cap: dict[str, int] = {}  # capability -> attempts running
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

    def _estimator(self) -> Callable[[AgentTask], float]:
        """``_estimate`` with each capability's learned duration looked up once, for ranking
        many tasks in one go."""
        durations: dict[str, float] = {}
        learned = self.learning.capability_duration

        def estimate(task: AgentTask) -> float:
            base = durations.get(task.capability)
            if base is None:
                base = durations[task.capability] = learned(task.capability) or 1.0
            return base * (0.5 + task.complexity)

        return estimate

    def _estimate(self, task: AgentTask) -> float:
        """Expected seconds of ``task``: its capability's learned duration, by complexity."""
        base = self.learning.capability_duration(task.capability) or 1.0
        return base * (0.5 + task.complexity)
