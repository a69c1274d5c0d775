"""The dependency graph: validation with precise errors, cycles with their path, readiness, rank."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaagent import AgentTask, CycleError, VerifySpec, WorkflowError
from metaagent.core.graph import TaskGraph
from metaagent.testing import task

# --- validation -------------------------------------------------------------------------------


def test_duplicate_id_is_refused_naming_the_task() -> None:
    with pytest.raises(WorkflowError) as info:
        TaskGraph([task("a"), task("b"), task("a")])
    err = info.value
    assert err.where == "tasks[2] (id 'a')"
    assert "duplicate task id 'a'" in str(err)


def test_duplicate_id_across_extend_is_refused_and_graph_unchanged() -> None:
    g = TaskGraph([task("a")])
    with pytest.raises(WorkflowError, match="duplicate task id 'a'"):
        g.extend([task("b"), task("a")])
    assert list(g.tasks) == ["a"]
    assert g.topological_order() == ["a"]


def test_unknown_dependency_names_task_and_field() -> None:
    with pytest.raises(WorkflowError) as info:
        TaskGraph([task("a"), task("b", "a", "ghost")], where="flow.yaml")
    err = info.value
    assert not isinstance(err, CycleError)
    assert err.where == "flow.yaml: tasks[1] (id 'b').depends_on"
    assert "unknown task 'ghost'" in str(err)
    assert str(err).startswith("flow.yaml: tasks[1] (id 'b').depends_on: ")


def test_dependency_listed_twice_is_refused() -> None:
    with pytest.raises(WorkflowError, match="lists 'a' twice") as info:
        TaskGraph([task("a"), task("b", "a", "a")])
    assert info.value.where is not None
    assert info.value.where.endswith(".depends_on")


def test_self_dependency_is_a_cycle_of_one() -> None:
    with pytest.raises(CycleError) as info:
        TaskGraph([task("a", "a")])
    assert info.value.cycle == ("a", "a")
    assert "dependency cycle: a -> a" in str(info.value)


def test_cycle_reports_its_path_in_the_order_work_flows() -> None:
    # b depends on a, c on b, a on c: a -> b -> c -> a.
    with pytest.raises(CycleError) as info:
        TaskGraph([task("a", "c"), task("b", "a"), task("c", "b")])
    err = info.value
    assert err.cycle == ("a", "b", "c", "a")
    assert str(err) == "dependency cycle: a -> b -> c -> a"
    # A cycle is a user input error, catchable as the builtin it subclasses.
    assert isinstance(err, WorkflowError)
    assert isinstance(err, ValueError)


def test_cycle_reached_through_a_tail_reports_only_the_cycle() -> None:
    # "d" is listed first and is stuck behind the cycle, but is not part of it.
    with pytest.raises(CycleError) as info:
        TaskGraph(
            [task("d", "a"), task("root"), task("a", "c", "root"), task("b", "a"), task("c", "b")]
        )
    assert info.value.cycle == ("a", "b", "c", "a")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"complexity": 1.5}, "complexity: must be within 0..1, got 1.5"),
        ({"complexity": -0.1}, "complexity: must be within 0..1, got -0.1"),
        ({"complexity": float("nan")}, "complexity: must be within 0..1"),
        ({"max_attempts": 0}, "max_attempts: must be at least 1, got 0"),
        ({"timeout_s": 0.0}, "timeout_s: must be a positive number of seconds"),
        ({"timeout_s": float("inf")}, "timeout_s: must be a positive number of seconds"),
        ({"depends_on": "a"}, "depends_on: must be a list of task ids, not a string"),
        ({"resources": "repo"}, "resources: must be a list of names, not a string"),
        ({"verify": VerifySpec(())}, "verify.argv: must be a non-empty list of strings"),
        ({"verify": VerifySpec("ruff check")}, "verify.argv: must be a non-empty list"),  # type: ignore[arg-type]
        ({"verify": VerifySpec(("true",), timeout_s=0)}, "verify.timeout_s: must be a positive"),
    ],
)
def test_invalid_field_values_are_refused_naming_the_field(
    kwargs: dict[str, object], message: str
) -> None:
    bad = AgentTask("x", "code", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(WorkflowError) as info:
        TaskGraph([task("a"), bad])
    assert info.value.where == "tasks[1] (id 'x')"
    assert message in str(info.value)


def test_empty_id_and_capability_are_refused() -> None:
    with pytest.raises(WorkflowError) as info:
        TaskGraph([AgentTask("", "")])
    text = str(info.value)
    assert "id: must be a non-empty string" in text
    assert "capability: must be a non-empty string" in text
    assert info.value.where == "tasks[0]"


def test_every_problem_of_a_task_is_reported_at_once() -> None:
    with pytest.raises(WorkflowError) as info:
        TaskGraph([AgentTask("a", "code", complexity=2.0, max_attempts=0)])
    assert "complexity" in str(info.value)
    assert "max_attempts" in str(info.value)


# --- readiness --------------------------------------------------------------------------------


def diamond() -> TaskGraph:
    return TaskGraph([task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c"), task("e")])


def test_roots_are_released_first_in_submission_order() -> None:
    g = diamond()
    assert g.roots() == ["a", "e"]
    assert len(g) == 5


def test_a_task_is_released_only_when_all_its_dependencies_succeeded() -> None:
    g = diamond()
    assert g.succeeded("a") == ["b", "c"]
    assert g.succeeded("b") == []  # d still waits for c
    assert g.succeeded("c") == ["d"]
    assert g.succeeded("d") == []
    assert g.succeeded("e") == []


def test_downstream_is_transitive_nearest_first_each_once() -> None:
    g = diamond()
    assert g.downstream("a") == ["b", "c", "d"]
    assert g.downstream("b") == ["d"]
    assert g.downstream("d") == []
    assert g.downstream("e") == []


def test_topological_order_puts_every_task_after_its_dependencies() -> None:
    g = diamond()
    order = g.topological_order()
    assert sorted(order) == ["a", "b", "c", "d", "e"]
    pos = {t: i for i, t in enumerate(order)}
    for tid, node in g.tasks.items():
        for dep in node.depends_on:
            assert pos[dep] < pos[tid]


def test_extend_releases_tasks_whose_dependencies_are_already_done() -> None:
    g = TaskGraph([task("a"), task("b")])
    ready = g.extend([task("c", "a"), task("d", "b"), task("e")], done=["a"])
    assert ready == ["c", "e"]
    assert g.succeeded("b") == ["d"]


def test_extend_may_not_close_a_cycle_through_new_tasks() -> None:
    g = TaskGraph([task("a")])
    with pytest.raises(CycleError) as info:
        g.extend([task("x", "a", "y"), task("y", "x")])
    assert info.value.cycle in (("x", "y", "x"), ("y", "x", "y"))
    assert list(g.tasks) == ["a"]


# --- rank and critical path -------------------------------------------------------------------

DURATIONS = {"a": 1.0, "b": 2.0, "c": 5.0, "d": 1.0, "e": 4.0}


def by_table(task: AgentTask) -> float:
    return DURATIONS[task.id]


def test_upward_rank_is_own_estimate_plus_longest_path_below() -> None:
    rank = diamond().upward_rank(by_table)
    assert rank == {"d": 1.0, "b": 3.0, "c": 6.0, "a": 7.0, "e": 4.0}


def test_critical_path_follows_the_heaviest_chain() -> None:
    length, path = diamond().critical_path(by_table)
    assert length == 7.0
    assert path == ["a", "c", "d"]


def test_critical_path_of_an_empty_graph() -> None:
    assert TaskGraph([]).critical_path(by_table) == (0.0, [])


# --- properties -------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[AgentTask]:
    n = draw(st.integers(min_value=1, max_value=12))
    tasks = []
    for i in range(n):
        deps = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        tasks.append(task(f"t{i}", *(f"t{d}" for d in sorted(deps))))
    order = draw(st.permutations(range(n)))
    return [tasks[i] for i in order]


@settings(max_examples=60, deadline=None)
@given(dags())
def test_any_dag_releases_every_task_exactly_once(tasks: list[AgentTask]) -> None:
    g = TaskGraph(tasks)
    ready = list(g.roots())
    done: list[str] = []
    while ready:
        tid = ready.pop()
        done.append(tid)
        ready.extend(g.succeeded(tid))
    assert sorted(done) == sorted(t.id for t in tasks)
    pos = {t: i for i, t in enumerate(done)}
    for t in tasks:
        assert all(pos[d] < pos[t.id] for d in t.depends_on)


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_a_back_edge_is_reported_as_a_real_cycle(
    tasks: list[AgentTask], data: st.DataObject
) -> None:
    g = TaskGraph(tasks)
    order = g.topological_order()
    if len(order) < 2:
        return
    i = data.draw(st.integers(min_value=0, max_value=len(order) - 2))
    j = data.draw(st.integers(min_value=i + 1, max_value=len(order) - 1))
    early, late = order[i], order[j]
    # Make the early task depend on a later one; a cycle exists iff late reaches early... which
    # it does only when late is downstream of early. Add a chain to make sure it is.
    by_id = {t.id: t for t in tasks}
    if late not in g.downstream(early):
        by_id[late] = task(late, *by_id[late].depends_on, early)
    by_id[early] = task(early, *by_id[early].depends_on, late)
    with pytest.raises(CycleError) as info:
        TaskGraph(list(by_id.values()))
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for up, down in itertools.pairwise(cycle):
        assert up in by_id[down].depends_on  # each arrow is a real edge: down depends on up
