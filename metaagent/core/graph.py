"""The dependency graph of one run: validation, readiness and critical-path rank.

Pure and caller-driven, in the manner of ``graphlib.TopologicalSorter``: the scheduler asks which
tasks are releasable and tells the graph which succeeded. Everything is checked before anything
runs, and every error names the task and field at fault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.errors import CycleError, WorkflowError

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable, Mapping, Sequence

    from metaagent.core.tasks import AgentTask


class TaskGraph:
    """A validated DAG of tasks. Raises ``WorkflowError`` or ``CycleError`` on bad input."""

    __slots__ = ("_order", "dependents", "remaining", "tasks")

    def __init__(self, tasks: Iterable[AgentTask], *, where: str | None = None) -> None:
        self.tasks: dict[str, AgentTask] = {}
        self.dependents: dict[str, list[str]] = {}
        self.remaining: dict[str, int] = {}
        self._order: list[str] | None = []  # topological; None: to be found when asked for
        self.extend(tasks, where=where)

    def extend(
        self,
        tasks: Iterable[AgentTask],
        *,
        where: str | None = None,
        done: Iterable[str] = (),
    ) -> list[str]:
        """Add tasks (all or none) and return the ids releasable at once.

        New tasks may depend on tasks already in the graph; ``done`` names those that already
        succeeded, so dependents on them are not held back. (A run read back from its journal
        is rebuilt by ``restore``.)
        """
        new = list(tasks)
        ids = {task.id: i for i, task in enumerate(new)}
        self._validate(new, ids, where)
        tasks_map, dependents, remaining = self.tasks, self.dependents, self.remaining
        if not any(task.depends_on for task in new):  # a flat batch: every task is ready
            for task in new:
                tid = task.id
                tasks_map[tid] = task
                dependents[tid] = []
                remaining[tid] = 0
            if self._order is not None:
                self._order.extend(reversed(ids))  # the order Kahn's stack gives
            return list(ids)
        for task in new:
            tasks_map[task.id] = task
            dependents[task.id] = []
        finished = set(done)
        ready: list[str] = []
        inner: dict[str, int] = {}  # dependencies among the new tasks, for Kahn's algorithm
        for task in new:
            tid = task.id
            unmet = within = 0
            for dep in task.depends_on:
                dependents[dep].append(tid)
                if dep not in finished:
                    unmet += 1
                if dep in ids:
                    within += 1
            remaining[tid] = unmet
            inner[tid] = within
            if unmet == 0:
                ready.append(tid)
        order = _kahn(inner, dependents)
        if len(order) != len(new):
            stuck = {tid for tid, n in inner.items() if n > 0}
            self._forget(new, ids)
            raise CycleError(_find_cycle(new, ids, stuck), where=where)
        if self._order is not None:
            self._order.extend(order)
        return ready

    def restore(
        self,
        tasks: Sequence[AgentTask],
        done: Container[str],
        estimate: Callable[[AgentTask], float],
        skip: Container[str] = (),
    ) -> dict[str, float]:
        """Build the graph of tasks read back from a journal and return their upward ranks
        (``upward_rank``). The tasks passed every check when they were submitted, so only the
        links are built.

        ``done`` holds the ids that succeeded, among ``tasks`` or not. A dependency on a task
        outside the graph must be in ``done``: it is not linked (nothing waits on it any more),
        and ``add_settled`` may add that task later. Raises ``WorkflowError`` for a dependency
        that is neither (a journal that does not hold together). The graph must be empty.
        """
        if self.tasks:
            raise ValueError("restore() builds a graph from nothing: this one has tasks")
        tasks_map, dependents, remaining = self.tasks, self.dependents, self.remaining
        for task in tasks:
            tasks_map[task.id] = task
        get = dependents.get
        late: list[tuple[str, str]] = []  # links to a dependency listed after its dependent
        for task in tasks:
            tid = task.id
            dependents[tid] = []
            unmet = 0
            for dep in task.depends_on:
                below = get(dep)
                if below is not None:
                    below.append(tid)
                elif dep in tasks_map:
                    late.append((dep, tid))
                if dep not in done:
                    if dep not in tasks_map:
                        raise WorkflowError(
                            f"restored task {tid!r} depends on {dep!r}, which is neither in "
                            "the run nor recorded as succeeded"
                        )
                    unmet += 1
            remaining[tid] = unmet
        for dep, tid in late:
            dependents[dep].append(tid)
        # Listed in an order that respects the dependencies (as most runs are), the tasks
        # need no search for an order.
        self._order = _kahn_all(tasks_map, dependents) if late else [t.id for t in tasks]
        if len(self._order) != len(tasks_map):
            placed = set(self._order)
            stuck = {tid for tid in tasks_map if tid not in placed}
            new = list(tasks)
            raise CycleError(_find_cycle(new, {t.id: i for i, t in enumerate(new)}, stuck))
        return self.upward_rank(estimate, skip)

    def add_settled(self, tasks: Sequence[AgentTask]) -> None:
        """Add tasks that succeeded before ``restore`` was given the rest of their run: they
        release nothing (their dependents were told they are done) and rank nowhere; their
        links are kept for the record, and the order is found again when next asked for."""
        tasks_map, dependents, remaining = self.tasks, self.dependents, self.remaining
        before = list(tasks_map.values())
        added: set[str] = set()
        for task in tasks:
            tasks_map[task.id] = task
            dependents.setdefault(task.id, [])
            remaining[task.id] = 0
            added.add(task.id)
        # The links ``restore`` left out (from a settled task to what depends on it), then
        # the settled tasks' own.
        for task in before:
            for dep in task.depends_on:
                if dep in added:
                    dependents[dep].append(task.id)
        for task in tasks:
            for dep in task.depends_on:
                dependents[dep].append(task.id)
        self._order = None

    def _forget(self, new: list[AgentTask], ids: dict[str, int]) -> None:
        """Undo the part of ``extend`` done before it found a cycle: all or nothing."""
        for task in new:
            for dep in task.depends_on:
                if dep not in ids:
                    self.dependents[dep].remove(task.id)
        for task in new:
            del self.tasks[task.id], self.dependents[task.id], self.remaining[task.id]

    def _validate(self, new: list[AgentTask], ids: dict[str, int], where: str | None) -> None:
        if len(ids) != len(new):
            seen: set[str] = set()
            for i, task in enumerate(new):
                if task.id in seen:
                    raise WorkflowError(
                        f"duplicate task id {task.id!r}", where=_place(where, i, task)
                    )
                seen.add(task.id)
        for i, task in enumerate(new):
            problems = task.problems()
            if problems:
                raise WorkflowError("; ".join(problems), where=_place(where, i, task))
            if task.id in self.tasks:
                raise WorkflowError(f"duplicate task id {task.id!r}", where=_place(where, i, task))
            deps = task.depends_on
            if not deps:
                continue
            if len(set(deps)) != len(deps):
                dup = next(d for k, d in enumerate(deps) if d in deps[:k])
                raise WorkflowError(
                    f"depends_on lists {dup!r} twice", where=_place(where, i, task) + ".depends_on"
                )
            for dep in deps:
                if dep == task.id:
                    raise CycleError((task.id, task.id), where=_place(where, i, task))
                if dep not in ids and dep not in self.tasks:
                    raise WorkflowError(
                        f"depends_on names unknown task {dep!r}",
                        where=_place(where, i, task) + ".depends_on",
                    )

    def __len__(self) -> int:
        return len(self.tasks)

    def roots(self) -> list[str]:
        """Ids of tasks with no dependencies, in submission order."""
        return [tid for tid, task in self.tasks.items() if not task.depends_on]

    def succeeded(self, task_id: str) -> list[str]:
        """Record that ``task_id`` succeeded; return the dependents it leaves with nothing unmet."""
        released: list[str] = []
        remaining = self.remaining
        for dep in self.dependents[task_id]:
            left = remaining[dep] - 1
            remaining[dep] = left
            if left == 0:
                released.append(dep)
        return released

    def downstream(self, task_id: str) -> list[str]:
        """Every task that transitively depends on ``task_id``, each once, nearest first."""
        out: list[str] = []
        seen = {task_id}
        frontier = [task_id]
        while frontier:
            nxt: list[str] = []
            for tid in frontier:
                for dep in self.dependents[tid]:
                    if dep not in seen:
                        seen.add(dep)
                        out.append(dep)
                        nxt.append(dep)
            frontier = nxt
        return out

    def topological_order(self) -> list[str]:
        """Every task id, each after all of its dependencies."""
        return list(self._topological())

    def _topological(self) -> list[str]:
        if self._order is None:
            self._order = _kahn_all(self.tasks, self.dependents)
        return self._order

    def upward_rank(
        self,
        estimate: Callable[[AgentTask], float],
        skip: Container[str] = (),
        known: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """HEFT upward rank: a task's estimated duration plus the longest path below it.

        Ordering ready work by this rank runs the critical path first. Tasks in ``skip``
        (finished ones) get rank 0 without an estimate; ``known`` holds estimates made already
        (by task id; a task missing there, or known as 0, is estimated).
        """
        rank: dict[str, float] = {}
        dependents = self.dependents
        tasks = self.tasks
        get = (known or {}).get
        for tid in reversed(self._topological()):
            if tid in skip:
                rank[tid] = 0.0
                continue
            below = 0.0
            for d in dependents[tid]:
                r = rank[d]
                if r > below:
                    below = r
            rank[tid] = (get(tid) or estimate(tasks[tid])) + below
        return rank

    def critical_path(self, estimate: Callable[[AgentTask], float]) -> tuple[float, list[str]]:
        """The longest chain by estimated duration: its length and its task ids, first to last."""
        if not self.tasks:
            return 0.0, []
        rank = self.upward_rank(estimate)
        start = max(self.roots(), key=lambda t: rank[t])
        path = [start]
        while self.dependents[path[-1]]:
            path.append(max(self.dependents[path[-1]], key=lambda t: rank[t]))
        return rank[start], path


def _kahn(inner: dict[str, int], dependents: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm over the tasks of ``inner`` (each with its count of dependencies among
    them; every dependent of one of them is one of them). Counts left above 0: a cycle."""
    queue = [tid for tid, n in inner.items() if n == 0]
    order: list[str] = []
    while queue:
        tid = queue.pop()
        order.append(tid)
        for child in dependents[tid]:
            left = inner[child] - 1
            inner[child] = left
            if left == 0:
                queue.append(child)
    return order


def _kahn_all(tasks: dict[str, AgentTask], dependents: dict[str, list[str]]) -> list[str]:
    """A topological order of a whole (acyclic) graph."""
    inner = dict.fromkeys(tasks, 0)
    for below in dependents.values():
        for child in below:
            inner[child] += 1
    return _kahn(inner, dependents)


def _place(where: str | None, index: int, task: AgentTask) -> str:
    label = f"tasks[{index}]"
    if isinstance(task.id, str) and task.id:
        label += f" (id {task.id!r})"
    return f"{where}: {label}" if where else label


def _find_cycle(new: Sequence[AgentTask], ids: dict[str, int], stuck: set[str]) -> list[str]:
    """Walk dependency edges among tasks left by Kahn's algorithm until a node repeats."""
    by_id = {t.id: t for t in new}
    start = min(stuck, key=lambda t: ids[t])
    path: list[str] = [start]
    position = {start: 0}
    node = start
    while True:
        # Every stuck node has at least one stuck dependency, so this walk cannot dead-end.
        node = next(d for d in by_id[node].depends_on if d in stuck)
        if node in position:
            cycle = [*path[position[node] :], node]
            # The walk followed depends_on edges (backwards in time); reversed, the cycle reads
            # in the order work would flow: a -> b means b depends on a.
            cycle.reverse()
            return cycle
        position[node] = len(path)
        path.append(node)
