"""Lazy restore: a resumed run dispatches before its settled tasks are read back.

A run is stopped mid-way by copying its SQLite journal (file and WAL) while some bodies are
blocked: the copy is exactly what a crash at that instant leaves. A new orchestrator resumes
from the copy. The settled tasks (succeeded, outside decompositions) are left out of the first
read and come back after the first dispatch turn; the run must end exactly as a full restore
would have it: every task once, in submission order, with its attempts and outputs.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import time
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    CycleError,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    RunFailed,
    Scheduler,
    TaskState,
    VerifySpec,
    WorkflowError,
)
from metaagent.core.decisions import RunCompleted
from metaagent.core.graph import TaskGraph
from metaagent.core.tasks import Attempt, Decompose, Outcome
from metaagent.journal import LEASE_TTL_S, MemoryJournal, SqliteJournal
from metaagent.journal.codec import tasks_doc, tasks_from_doc

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent.agents.base import AttemptContext
    from metaagent.journal import Journal, StoredRun

TEMPLATE = (
    AgentTask("x", "code", prompt="sub x"),
    AgentTask("y", "code", prompt="sub y", depends_on=("x",)),
)


def _workflow() -> list[AgentTask]:
    """a (fails once, then succeeds) -> b; c fails for good -> d is skipped; e and f wait on
    b; p is decomposed into p/x (succeeds) -> p/y (in flight at the crash); q after p."""
    return [
        AgentTask("a", "code", prompt="a", max_attempts=3),
        AgentTask("b", "code", prompt="b", depends_on=("a",)),
        AgentTask("c", "code", prompt="c", max_attempts=1),
        AgentTask("d", "code", prompt="d", depends_on=("c",)),
        AgentTask("e", "code", prompt="e", depends_on=("b",)),
        AgentTask("f", "code", prompt="f", depends_on=("a", "b")),
        AgentTask("p", "code", prompt="p", decompose=Decompose(template=TEMPLATE)),
        AgentTask("q", "code", prompt="q", depends_on=("p",)),
    ]


class FirstLife:
    """The bodies of the run before the crash: some finish, ``e`` and ``p/y`` block."""

    def __init__(self) -> None:
        self.blocked = 0
        self.both_blocked = asyncio.Event()
        self.release = asyncio.Event()
        self.tries: dict[str, int] = {}

    async def __call__(self, ctx: AttemptContext) -> object:
        tid = ctx.task.id
        self.tries[tid] = self.tries.get(tid, 0) + 1
        if tid == "a" and self.tries[tid] == 1:
            raise RuntimeError("flaky the first time")
        if tid == "c":
            raise RuntimeError("c always fails")
        if tid in ("e", "p/y", "f"):
            self.blocked += 1
            if self.blocked == 3:
                self.both_blocked.set()
            await self.release.wait()
        return {"from": tid, "upstream": sorted(ctx.upstream)}


class SecondLife:
    """The bodies after the restart: record what each attempt saw, finish at once."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.upstream: dict[str, dict[str, object]] = {}

    async def __call__(self, ctx: AttemptContext) -> object:
        self.ran.append(ctx.task.id)
        self.upstream[ctx.task.id] = dict(ctx.upstream)
        return {"again": ctx.task.id}


def _agents(body: object) -> list[AgentSpec]:
    runner = FunctionRunner(body)  # type: ignore[arg-type]
    return [
        AgentSpec("one", {"code": 0.9}, runner, concurrency=4),
        AgentSpec("two", {"code": 0.8}, runner, concurrency=4),
    ]


def _after_the_crash(copy: Path) -> SqliteJournal:
    """The copied journal, opened as if the lease of the "crashed" orchestrator (this very
    process, so not known to be dead) had expired."""
    return SqliteJournal(copy, wall=lambda: time.time() + LEASE_TTL_S + 1)


async def _crash_copy(tmp: Path) -> tuple[Path, str]:
    """Run the workflow until e, f and p/y are in flight; copy the journal as a crash would
    leave it; then let the first orchestrator go (its file is not used again)."""
    live, copy = tmp / "live.db", tmp / "crashed.db"
    journal = SqliteJournal(live)
    body = FirstLife()
    config = OrchestratorConfig(max_concurrency=8)
    async with Orchestrator(_agents(body), config, journal=journal) as orch:
        handle = await orch.submit(_workflow(), name="lazy", run_id="r1")
        await asyncio.wait_for(body.both_blocked.wait(), 30)
        journal.flush()  # what the last dispatch turn committed, and nothing after
        for suffix in ("", "-wal"):
            if (live.parent / (live.name + suffix)).exists():
                shutil.copyfile(f"{live}{suffix}", f"{copy}{suffix}")
        await orch.cancel(handle.run_id)
    journal.close()
    return copy, handle.run_id


async def test_a_resumed_run_dispatches_first_and_reads_its_settled_tasks_after(
    tmp_path: Path,
) -> None:
    copy, run_id = await _crash_copy(tmp_path)
    first = SqliteJournal(copy).load_run(run_id, lazy=True)
    part = first.deferred
    assert part is not None
    # a and b succeeded plainly: left out. p/x succeeded but is a sub-task: kept, as are the
    # failed c, the open tasks and the decomposed p.
    assert set(part.outputs) == {"a", "b"}
    assert part.outputs["b"] == {"from": "b", "upstream": ["a"]}
    assert {t.id for t in first.tasks} == {"c", "d", "e", "f", "p", "q", "p/x", "p/y"}
    assert part.order == ["a", "b", "c", "d", "e", "f", "p", "q", "p/x", "p/y"]
    assert first.results["c"].state is TaskState.FAILED
    assert first.results["p/x"].state is TaskState.SUCCEEDED
    assert [a.outcome for a in first.attempts["e"]] == [None]  # in flight at the crash
    assert "a" not in first.attempts
    rest = part.read()
    assert [t.id for t in rest.tasks] == ["a", "b"]
    assert [a.outcome for a in rest.attempts["a"]] == [Outcome.ERROR, Outcome.SUCCEEDED]

    journal = _after_the_crash(copy)
    body = SecondLife()
    async with Orchestrator(_agents(body), OrchestratorConfig(), journal=journal) as orch:
        handle = await orch.resume(run_id)
        # Before the first dispatch turn the run holds only what can still change.
        assert orch.scheduler.runs[run_id].unread is not None
        assert "a" not in orch.scheduler.runs[run_id].tasks
        # ... but the run's states are whole, for progress views.
        states = orch.task_states(run_id)
        assert list(states) == part.order
        assert states["a"] is TaskState.SUCCEEDED
        assert states["e"] is TaskState.READY
        assert gc.get_freeze_count() > 0  # the restored records are out of the collector's way
        batch = await asyncio.wait_for(handle.result(), 30)
        assert gc.get_freeze_count() == 0  # ... until the run is over
    journal.close()

    # Finished work is not run again; work in flight at the crash and work not started is.
    assert sorted(body.ran) == ["e", "f", "p/y", "q"]
    # A dependent of a settled task gets its recorded output, read before the rest was.
    assert body.upstream["e"] == {"b": {"from": "b", "upstream": ["a"]}}
    assert body.upstream["f"]["a"] == {"from": "a", "upstream": []}
    # The report is whole and in submission order (sub-tasks after the tasks submitted).
    assert [r.task_id for r in batch.results] == part.order
    states = {r.task_id: r.state for r in batch.results}
    assert states == {
        "a": TaskState.SUCCEEDED, "b": TaskState.SUCCEEDED, "c": TaskState.FAILED,
        "d": TaskState.SKIPPED, "e": TaskState.SUCCEEDED, "f": TaskState.SUCCEEDED,
        "p": TaskState.SUCCEEDED, "q": TaskState.SUCCEEDED, "p/x": TaskState.SUCCEEDED,
        "p/y": TaskState.SUCCEEDED,
    }  # fmt: skip
    a = batch.result("a")
    assert [x.outcome for x in a.attempts] == [Outcome.ERROR, Outcome.SUCCEEDED]
    assert a.output == {"from": "a", "upstream": []}
    # The decomposed parent aggregates its sub-tasks, one from each life.
    assert batch.result("p").output == {
        "p/x": {"from": "p/x", "upstream": []},
        "p/y": {"again": "p/y"},
    }
    e = batch.result("e")
    assert [(x.number, x.outcome) for x in e.attempts] == [
        (1, Outcome.LOST),
        (2, Outcome.SUCCEEDED),
    ]
    # Every task has exactly one terminal state in the journal; the run is finished.
    stored = SqliteJournal(copy).load_run(run_id)
    assert set(stored.results) == set(part.order)
    assert stored.info.finished


def _scripted(j: Journal) -> None:
    """A run stopped with a and b succeeded, c in flight (attempt 2 after a failure)."""
    tasks = [
        AgentTask("a", "code"),
        AgentTask("b", "code", depends_on=("a",)),
        AgentTask("c", "code", depends_on=("b",)),
        AgentTask("d", "code", depends_on=("a", "c")),
    ]
    j.open_run("r1", "script", tasks)
    j.attempt_started("r1", "a", Attempt(1, "one", "one#1", 0.0))
    j.attempt_finished("r1", "a", Attempt(1, "one", "one#1", 0.0, 1.0, Outcome.SUCCEEDED))
    j.task_finished("r1", "a", TaskState.SUCCEEDED, {"out": "a"}, None, 1.0)
    j.attempt_started("r1", "b", Attempt(1, "one", "one#1", 1.0))
    j.attempt_finished("r1", "b", Attempt(1, "one", "one#1", 1.0, 2.5, Outcome.SUCCEEDED))
    j.task_finished("r1", "b", TaskState.SUCCEEDED, ["b"], None, 2.5)
    j.attempt_started("r1", "c", Attempt(1, "one", "one#1", 2.5))
    j.attempt_finished("r1", "c", Attempt(1, "one", "one#1", 2.5, 3.0, Outcome.ERROR, "no"))
    j.attempt_started("r1", "c", Attempt(2, "two", "two#1", 3.25))
    j.flush()


def _brief(stored: StoredRun) -> tuple[object, ...]:
    part = stored.deferred
    assert part is not None
    rest = part.read()
    return (
        [t.id for t in stored.tasks], stored.results, stored.attempts,
        dict(part.outputs), part.order, part.last_at,
        rest.tasks, rest.results, rest.attempts,
    )  # fmt: skip


def test_memory_and_sqlite_journals_read_lazily_the_same(tmp_path: Path) -> None:
    mem, lite = MemoryJournal(), SqliteJournal(tmp_path / "j.db")
    for j in (mem, lite):
        _scripted(j)
    m, s = _brief(mem.load_run("r1", lazy=True)), _brief(lite.load_run("r1", lazy=True))
    assert m == s
    kept, _, attempts, outputs, order, last_at, rest, results, _ = m
    assert kept == ["c", "d"]
    assert outputs == {"a": {"out": "a"}, "b": ["b"]}
    assert order == ["a", "b", "c", "d"]
    assert last_at == 3.25  # the start of c's attempt in flight
    assert [a.number for a in attempts["c"]] == [1, 2]  # type: ignore[index]
    assert [t.id for t in rest] == ["a", "b"]  # type: ignore[attr-defined]
    assert results["b"].output == ["b"]  # type: ignore[index]
    # A full read is unchanged by all this.
    full = lite.load_run("r1")
    assert full.deferred is None
    assert [t.id for t in full.tasks] == order
    lite.close()


def _restored(journal: Journal) -> tuple[Scheduler, list[object]]:
    s = Scheduler()
    s.add_agent(AgentSpec("one", {"code": 0.9}, FunctionRunner(_noop), concurrency=4), 0.0)
    stored = journal.load_run("r1", lazy=True)
    part = stored.deferred
    assert part is not None
    run = s.restore(
        "r1", stored.tasks, 10.0,
        results={t: (r.state, r.output, r.error, r.finished_at) for t, r in stored.results.items()},
        attempts=stored.attempts, settled=part.outputs, order=part.order, last_at=part.last_at,
    )  # fmt: skip
    outs: list[object] = list(s.accept(run, 10.0))
    return s, [*outs, part]


async def _noop(ctx: AttemptContext) -> None:
    return None


def test_the_run_cannot_complete_before_its_settled_tasks_are_read_back() -> None:
    journal = MemoryJournal()
    _scripted(journal)
    s, outs = _restored(journal)
    part = outs.pop()
    run = s.runs["r1"]
    assert run.output_of("b") == ["b"]  # a settled task's output, before its record exists
    with pytest.raises(KeyError):
        run.output_of("nope")
    (route,) = [o for o in s.dispatch(10.0) if getattr(o, "task_id", None) == "c"]
    assert route.attempt == 3  # numbers go on after the attempt lost in the crash
    s.finish("r1", "c", 3, Outcome.SUCCEEDED, 11.0, output="c")
    (route,) = s.dispatch(11.0)
    done = s.finish("r1", "d", 1, Outcome.SUCCEEDED, 12.0, output="d")
    # Nothing is open, but a and b are not back yet: no completion.
    assert not [o for o in done if isinstance(o, RunCompleted)]
    assert run.finished_at is None
    with pytest.raises(WorkflowError, match="still being read back"):
        s.forget("r1")
    rest = part.read()  # type: ignore[attr-defined]
    results = {t: (r.state, r.output, r.error, r.finished_at) for t, r in rest.results.items()}
    # What is read back must be what was left out: a mismatch changes nothing.
    with pytest.raises(WorkflowError, match="do not match"):
        s.restore_rest("r1", rest.tasks[:1], 12.0, results=results, attempts=rest.attempts)
    assert run.unread is not None
    outs_rest = s.restore_rest("r1", rest.tasks, 12.5, results=results, attempts=rest.attempts)
    assert [type(o) for o in outs_rest] == [RunCompleted]
    assert list(run.tasks) == ["a", "b", "c", "d"]
    seqs = [rec.seq for rec in run.tasks.values()]
    assert len(set(seqs)) == 4
    # Recorded times keep their places relative to the run's start.
    assert run.tasks["b"].finished_at == pytest.approx(run.started_at + 2.5)
    assert run.started_at == pytest.approx(10.0 - 3.25)
    assert [r.state for r in s.results("r1")] == [TaskState.SUCCEEDED] * 4
    with pytest.raises(WorkflowError, match="no settled tasks"):
        s.restore_rest("r1", [], 13.0, results={}, attempts={})


def test_graph_restore_ranks_as_a_full_build_does_and_orders_after_settling() -> None:
    tasks = [
        AgentTask("a", "code"),
        AgentTask("b", "code", depends_on=("a",), complexity=0.9),
        AgentTask("c", "code", depends_on=("a",)),
        AgentTask("d", "code", depends_on=("b", "c")),
        AgentTask("e", "code", depends_on=("d",), complexity=0.1),
    ]
    full = TaskGraph(tasks)

    def est(t: AgentTask) -> float:
        return 1.0 + t.complexity

    expected = full.upward_rank(est, skip={"a"})
    lazy = TaskGraph(())
    rank = lazy.restore(tasks[1:], {"a"}, est)
    assert rank == {k: v for k, v in expected.items() if k != "a"}
    assert lazy.remaining == {"b": 0, "c": 0, "d": 2, "e": 1}
    lazy.add_settled(tasks[:1])
    order = lazy.topological_order()
    assert sorted(order) == ["a", "b", "c", "d", "e"]
    for t in tasks:
        assert all(order.index(dep) < order.index(t.id) for dep in t.depends_on)
    assert sorted(lazy.dependents["a"]) == ["b", "c"]
    assert lazy.dependents == {k: sorted(v) for k, v in full.dependents.items()}
    # A dependency that is neither in the run nor succeeded: the journal does not hold together.
    with pytest.raises(WorkflowError, match="neither in the run nor recorded as succeeded"):
        TaskGraph(()).restore(tasks[1:], set(), est)
    with pytest.raises(ValueError, match="from nothing"):
        full.restore(tasks, set(), est)


def test_graph_restore_finds_the_order_when_tasks_come_before_their_dependencies() -> None:
    # Listed with dependents first: the ranks still come out as a full build gives them.
    tasks = [
        AgentTask("d", "code", depends_on=("b", "c")),
        AgentTask("c", "code", depends_on=("a",), complexity=0.2),
        AgentTask("b", "code", depends_on=("a",), complexity=0.9),
        AgentTask("a", "code"),
    ]

    def est(t: AgentTask) -> float:
        return 1.0 + t.complexity

    expected = TaskGraph(tasks).upward_rank(est)
    graph = TaskGraph(())
    assert graph.restore(tasks, set(), est) == expected
    order = graph.topological_order()
    for t in tasks:
        assert all(order.index(dep) < order.index(t.id) for dep in t.depends_on)
    assert graph.remaining == {"a": 0, "b": 1, "c": 1, "d": 2}
    # A cycle in a journal (it cannot pass submission, but a file can be edited) is named.
    looped = [AgentTask("x", "code", depends_on=("y",)), AgentTask("y", "code", depends_on=("x",))]
    with pytest.raises(CycleError):
        TaskGraph(()).restore(looped, set(), est)


def test_task_documents_read_back_every_field() -> None:
    tasks = [
        AgentTask("a", "code"),
        AgentTask("b", "code", depends_on=("a",)),
        AgentTask("r", "code", resources=("repo",)),
        AgentTask(
            "e", "test", prompt="p", input={"x": [1]}, priority=3, depends_on=("a", "b"),
            complexity=0.7, timeout_s=3.0, max_attempts=2, resources=("repo", "db"),
            verify=VerifySpec(("true",), 5.0), metadata={"team": "x"}, key="k", group="g",
        ),
        AgentTask(
            "t", "code", decompose=Decompose(template=(AgentTask("s", "c", resources=("q",)),))
        ),
        AgentTask("w", "code", decompose=Decompose(planner=True), depends_on=("t",)),
    ]  # fmt: skip
    back = tasks_from_doc(tasks_doc(tasks))
    assert back == tasks
    assert all(type(t.depends_on) is tuple and type(t.resources) is tuple for t in back)


async def test_closing_before_the_first_dispatch_reports_every_task() -> None:
    journal = MemoryJournal()
    _scripted(journal)
    orch = Orchestrator(_agents(SecondLife()), journal=journal)
    handle = await orch.resume("r1")
    await orch.aclose()  # before any loop turn: nothing dispatched, nothing read back yet
    with pytest.raises(RunFailed) as failed:
        await handle.result()
    partial = failed.value.result
    assert partial is not None
    assert [(r.task_id, r.state) for r in partial.results] == [
        ("a", TaskState.SUCCEEDED), ("b", TaskState.SUCCEEDED),
        ("c", TaskState.READY), ("d", TaskState.PENDING),
    ]  # fmt: skip
    assert partial.result("b").output == ["b"]
    assert gc.get_freeze_count() == 0


class PlannerLife:
    """A planner plans x -> y; y blocks until released (or, after a restart, runs at once)."""

    def __init__(self, *, block: bool) -> None:
        self.block = block
        self.ran: list[str] = []
        self.blocked = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, ctx: AttemptContext) -> object:
        tid = ctx.task.id
        self.ran.append(tid)
        if tid == "plan":
            steps = [{"id": "x", "capability": "code"}, {"id": "y", "capability": "code",
                     "depends_on": ["x"]}]  # fmt: skip
            return {"tasks": steps}
        if tid == "plan/y" and self.block:
            self.blocked.set()
            await self.release.wait()
        return f"did {tid}"


async def test_a_planned_decomposition_resumes_without_planning_again(tmp_path: Path) -> None:
    live, copy = tmp_path / "live.db", tmp_path / "crashed.db"
    tasks = [
        AgentTask("a", "code"),
        AgentTask("plan", "code", depends_on=("a",), decompose=Decompose(planner=True)),
        AgentTask("after", "code", depends_on=("plan",)),
    ]
    first = PlannerLife(block=True)
    journal = SqliteJournal(live)
    async with Orchestrator(_agents(first), journal=journal) as orch:
        handle = await orch.submit(tasks, run_id="r1")
        await asyncio.wait_for(first.blocked.wait(), 30)
        journal.flush()
        for suffix in ("", "-wal"):
            if (live.parent / (live.name + suffix)).exists():
                shutil.copyfile(f"{live}{suffix}", f"{copy}{suffix}")
        await orch.cancel(handle.run_id)
    journal.close()

    stored = SqliteJournal(copy).load_run("r1", lazy=True)
    assert stored.deferred is not None
    assert set(stored.deferred.outputs) == {"a"}  # the planner and its sub-tasks are kept
    # The planner's own attempt succeeded (it planned) while the task still waits on its plan.
    assert [a.outcome for a in stored.attempts["plan"]] == [Outcome.SUCCEEDED]
    second = PlannerLife(block=False)
    journal = _after_the_crash(copy)
    async with Orchestrator(_agents(second), journal=journal) as orch:
        batch = await asyncio.wait_for((await orch.resume("r1")).result(), 30)
    journal.close()
    assert sorted(second.ran) == ["after", "plan/y"]  # not planned again, x not redone
    assert batch.result("plan").output == {"plan/x": "did plan/x", "plan/y": "did plan/y"}
    assert [a.outcome for a in batch.result("plan").attempts] == [Outcome.SUCCEEDED]
    assert [r.task_id for r in batch.results] == ["a", "plan", "after", "plan/x", "plan/y"]
    assert all(r.state is TaskState.SUCCEEDED for r in batch.results)
