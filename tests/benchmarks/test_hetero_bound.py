"""The hetero benchmark's tighter bound is a lower bound: never above an exhaustively searched
optimum on tiny DAGs, nor above any list schedule the reference search finds; never below the
issue's bound."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

import pytest

from metaagent.core.tasks import AgentTask

Duration = Callable[[AgentTask, str], float | None]

pytestmark = [pytest.mark.usefixtures("bench_on_path"), pytest.mark.timeout(120)]


def _optimum(tasks: list[AgentTask], slots: list[str], duration: Duration) -> float:
    """The optimal makespan by branch and bound. Every semi-active schedule (each task as
    early as its predecessors and its slot's previous task allow; an optimal one is among
    them) is produced by taking the tasks in order of start time and appending each to its
    slot, so searching every (ready task, slot) choice in turn finds the optimum."""
    below: dict[str, list[str]] = {t.id: [] for t in tasks}
    for t in tasks:
        for d in t.depends_on:
            below[d].append(t.id)
    by_id = {t.id: t for t in tasks}
    best = [float("inf")]

    def search(done: dict[str, float], free: list[float], span: float) -> None:
        if span >= best[0]:
            return
        if len(done) == len(tasks):
            best[0] = span
            return
        for t in tasks:
            if t.id in done or any(d not in done for d in t.depends_on):
                continue
            ready = max((done[d] for d in t.depends_on), default=0.0)
            tried: set[tuple[str, float]] = set()
            for k, agent in enumerate(slots):
                took = duration(by_id[t.id], agent)
                if took is None or (agent, free[k]) in tried:  # identical slots: try one
                    continue
                tried.add((agent, free[k]))
                end = max(ready, free[k]) + took
                old = free[k]
                free[k] = end
                done[t.id] = end
                search(done, free, max(span, end))
                del done[t.id]
                free[k] = old

    search({}, [0.0] * len(slots), 0.0)
    return best[0]


def _tiny_dag(n: int, rng: random.Random) -> list[AgentTask]:
    from bench import hetero

    tasks = []
    for i in range(n):
        deps = tuple(f"t{j}" for j in range(i) if rng.random() < 0.3)
        cap = rng.choices([c for c, _ in hetero.MIX], [w for _, w in hetero.MIX])[0]
        tasks.append(AgentTask(f"t{i}", cap, depends_on=deps, complexity=round(rng.random(), 2)))
    return tasks


def test_tight_bound_never_above_the_optimum_on_tiny_dags() -> None:
    from bench import hetero

    slots = [s.name for s in hetero.POOL for _ in range(s.concurrency)]
    rng = random.Random(11)
    gaps = []
    for _ in range(25):
        tasks = _tiny_dag(rng.randint(5, 7), rng)
        best = _optimum(tasks, slots, hetero.duration)
        tight = hetero.tighter_bound(tasks)
        assert hetero.lower_bound(tasks) <= tight + 1e-9
        assert tight <= best + 1e-9, (tight, best, tasks)
        gaps.append(best / tight)
    assert min(gaps) >= 1.0 - 1e-9


def test_tight_bound_never_above_a_searched_list_schedule() -> None:
    from bench import hetero
    from bench._listsched import list_schedule, upward_rank

    slots = [s.name for s in hetero.POOL for _ in range(s.concurrency)]
    rng = random.Random(5)
    for _ in range(6):
        tasks = hetero.random_dag(rng.randint(24, 120), rng)
        tight = hetero.tighter_bound(tasks)
        assert hetero.lower_bound(tasks) <= tight + 1e-9
        rank = upward_rank(
            tasks,
            lambda t: statistics.mean(
                d for s in hetero.POOL if (d := hetero.duration(t, s.name)) is not None
            ),
        )
        for _ in range(10):
            noisy = {tid: r * rng.uniform(0.5, 1.5) for tid, r in rank.items()}
            assert tight <= list_schedule(tasks, slots, hetero.duration, noisy) + 1e-9


def test_dual_vertices_give_the_assignment_lp() -> None:
    """On two agents of one capability (speeds 1 and 3, one slot each) the LP splits the
    work so both end together: W / 4."""
    from bench._bounds import dual_vertices, load

    vertices = dual_vertices({"slow": (1, {"x": 1.0}), "fast": (1, {"x": 3.0})})
    assert load({"x": 8.0}, vertices) == pytest.approx(2.0)
    # an agent serving two capabilities: all of y must go to it, x to the other
    vertices = dual_vertices({"a": (1, {"x": 1.0, "y": 1.0}), "b": (1, {"x": 1.0})})
    assert load({"x": 2.0, "y": 4.0}, vertices) == pytest.approx(4.0)
    assert load({"x": 6.0, "y": 2.0}, vertices) == pytest.approx(4.0)


def test_expected_bound_is_below_the_mean_makespan_with_failures() -> None:
    """The bound with failures holds for the expected makespan of a policy that does not see
    outcomes ahead: the reference list schedule's mean over many draws of luck stays above."""
    from bench import hetero
    from bench._failing import draw_luck, expected_bound, failing_schedule
    from bench._listsched import upward_rank

    slots = [s.name for s in hetero.POOL for _ in range(s.concurrency)]
    rng = random.Random(8)
    for _ in range(3):
        tasks = hetero.random_dag(rng.randint(24, 60), rng)
        bound = expected_bound(tasks, hetero.base_work, hetero.fastest, hetero.FAIL_VERTICES)
        assert bound >= hetero.lower_bound(tasks) - 1e-9  # failures only add work
        rank = upward_rank(tasks, hetero.fastest)
        spans = [
            failing_schedule(tasks, slots, hetero.duration, hetero.fails, rank,
                             draw_luck(tasks, rng))
            for _ in range(100)
        ]  # fmt: skip
        assert statistics.mean(spans) >= bound


def test_the_reference_with_failures_chooses_its_order_without_seeing_the_luck() -> None:
    """The order is picked by its mean over draws of its own (``choose_order`` never sees the
    bench's luck); the reference is that order's makespan on the bench's luck, and the
    clairvoyant figure is the least over the orders."""
    from bench import hetero
    from bench._failing import (
        choose_order,
        chosen_failing,
        draw_luck,
        failing_schedule,
        orders,
    )

    slots = [s.name for s in hetero.POOL for _ in range(s.concurrency)]
    tasks = hetero.random_dag(40, random.Random(5))
    common = (tasks, slots, hetero.duration, hetero.fails)
    candidates = orders(tasks, hetero._expected_mean, 6, random.Random(1))
    pick = choose_order(*common, candidates, 4, random.Random(9))
    rng = random.Random(11)
    lucky_picks = set()
    for _ in range(4):
        luck = draw_luck(tasks, rng)
        ref, seer = chosen_failing(*common, hetero._expected_mean, 6, random.Random(1), luck,
                                   4, random.Random(9))  # fmt: skip
        assert ref == failing_schedule(*common, candidates[pick], luck)
        on_luck = [failing_schedule(*common, o, luck) for o in candidates]
        assert seer == min(on_luck)
        assert ref >= seer
        lucky_picks.add(on_luck.index(seer))
    # the clairvoyant search's pick moves with the luck; the reference's order does not
    assert len(lucky_picks) > 1
