"""The ready queues on their own: order within a run, fair share between runs, continuous
aging, stale entries, parking on a resource, back-off. Literal tables on virtual time."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from metaagent.core.graph import TaskGraph
from metaagent.core.queues import K_RECORD, K_SEQ, K_URGENCY, QueueKey, ReadyQueues
from metaagent.core.scheduler.records import RunRecord, TaskRecord
from metaagent.core.tasks import AgentTask, TaskState

if TYPE_CHECKING:
    from collections.abc import Iterable

AGING_S = 100.0


def run(name: str = "r", *, horizon: float = 50.0, weight: float = 1.0) -> RunRecord:
    r = RunRecord(name, name, TaskGraph(()), 0.0, horizon=horizon, weight=weight)
    return r


def ready(
    tid: str,
    r: RunRecord,
    *,
    priority: int = 0,
    rank: float = 0.0,
    cap: str = "x",
    at: float = 0.0,
) -> TaskRecord:
    """A ready record of a new task, ready since ``at``."""
    task = AgentTask(tid, cap, priority=priority)
    return TaskRecord(task, r, 0, state=TaskState.READY, rank=rank, ready_at=at)


def ids(keys: Iterable[QueueKey]) -> list[str]:
    return [k[K_RECORD].task.id for k in keys]


def drain(q: ReadyQueues, cap: str = "x", cost_s: float = 1.0) -> list[str]:
    """Pop everything, charging each task's run ``cost_s`` as a start would."""
    out: list[str] = []
    while (key := q.pop(cap)) is not None:
        rec = key[K_RECORD]
        rec.state = TaskState.RUNNING
        q.served(rec.run, cost_s)
        out.append(rec.task.id)
    return out


# (task, priority, rank, ready at) -> the order within one run (horizon 50, aging 100 s):
# latest start = 50 - rank; urgency = max(ready, latest start) - 100 * priority.
WITHIN_RUN = [
    ("leaf", 0, 1.0, 0.0),  # latest start 49
    ("critical", 0, 40.0, 0.0),  # latest start 10: the critical path goes first
    ("middle", 0, 20.0, 0.0),  # 30
    ("late", 0, 45.0, 38.0),  # ready at 38 after its latest start (5): ranks by readiness, 38
    ("urgent", 1, 1.0, 0.0),  # 49 - 100 = -51
]
WITHIN_ORDER = ["urgent", "critical", "middle", "late", "leaf"]


def test_within_a_run_the_key_is_latest_start_or_readiness_less_aging_for_priority() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    for tid, prio, rank, at in WITHIN_RUN:
        q.push(ready(tid, r, priority=prio, rank=rank, at=at), at)
    assert drain(q) == WITHIN_ORDER
    assert q.pop("x") is None
    assert q.pop("never-queued") is None


def test_aging_is_continuous_no_bucket_boundary() -> None:
    # Two tasks of equal priority made ready 0.1 s apart, across what would have been a
    # bucket boundary: the earlier one is more urgent by exactly 0.1 s, no more.
    q = ReadyQueues(AGING_S)
    r = run(horizon=0.0)
    a = ready("a", r, at=99.95)
    b = ready("b", r, at=100.05)
    q.push(b, 100.05)
    q.push(a, 99.95)
    ka, kb = q.key(a), q.key(b)
    assert kb[K_URGENCY] - ka[K_URGENCY] == pytest.approx(0.1)
    # A priority level is worth exactly aging_interval_s of waiting.
    hi = ready("hi", r, priority=1, at=199.9)
    assert q.key(hi)[K_URGENCY] == pytest.approx(99.9)


def test_push_hands_out_sequence_numbers_and_counts_waiting_tasks() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    a, b = ready("a", r), ready("b", r, cap="y")
    q.push(a, 0.0)
    q.push(b, 0.0)
    assert (a.queued, b.queued) == (1, 2)
    assert q.waiting == {"x": 1, "y": 1}
    assert q.depth() == {"x": 1, "y": 1}
    assert r.ready_n == 2


# Fair share: a huge run queued first, a small one later; each start charges 1 s / weight.
def test_a_small_run_submitted_later_is_served_at_once_not_after_the_huge_one() -> None:
    q = ReadyQueues(AGING_S)
    big, small = run("big"), run("small")
    for i in range(100):
        q.push(ready(f"b{i}", big), 0.0)
    assert drain_n(q, 10) == [f"b{i}" for i in range(10)]
    small.vt = q.vnow  # what accept does for a new run
    for i in range(3):
        q.push(ready(f"s{i}", small), 10.0)
    # Alternating from here: the small run is never more than one start behind.
    assert drain_n(q, 6) == ["s0", "b10", "s1", "b11", "s2", "b12"]


def test_fair_share_is_weighted_by_run_priority() -> None:
    q = ReadyQueues(AGING_S)
    light, heavy = run("light"), run("heavy", weight=2.0)
    for i in range(20):
        q.push(ready(f"l{i}", light), 0.0)
        q.push(ready(f"h{i}", heavy), 0.0)
    order = drain_n(q, 12)
    assert sum(t.startswith("h") for t in order) == 8  # twice the share
    assert sum(t.startswith("l") for t in order) == 4


def test_a_run_back_from_idle_gets_no_credit_for_the_time_it_had_nothing_queued() -> None:
    q = ReadyQueues(AGING_S)
    busy, idle = run("busy"), run("idle")
    for i in range(50):
        q.push(ready(f"b{i}", busy), 0.0)
    drain_n(q, 30)
    q.push(ready("i0", idle), 30.0)  # idle had vt 0, the system is at 29
    assert idle.vt == q.vnow
    assert drain_n(q, 4) == ["i0", "b30", "b31", "b32"]


def drain_n(q: ReadyQueues, n: int) -> list[str]:
    out: list[str] = []
    for _ in range(n):
        key = q.pop("x")
        assert key is not None
        rec = key[K_RECORD]
        rec.state = TaskState.RUNNING
        q.served(rec.run, 1.0)
        out.append(rec.task.id)
    return out


def test_stale_entries_are_dropped_off_the_top() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    gone, kept = ready("gone", r, rank=40.0), ready("kept", r)
    q.push(gone, 0.0)
    q.push(kept, 0.0)
    gone.state = TaskState.CANCELLED
    q.discard(gone)
    head = q.head("x")
    assert head is not None
    assert head[K_RECORD] is kept
    assert q.waiting["x"] == 1


def test_a_parked_entry_returns_to_its_old_place_when_the_resource_is_released() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    first, second = ready("first", r, rank=30.0), ready("second", r, rank=10.0)
    q.push(first, 0.0)
    q.push(second, 0.0)
    key = q.pop("x")
    assert key is not None
    assert key[K_RECORD] is first
    q.park("db", key)
    assert ids([k for k in [q.head("x")] if k is not None]) == ["second"]
    q.unpark("db")
    assert drain(q) == ["first", "second"]
    assert q.parked == {}


def test_unpark_drops_entries_whose_task_ended_or_was_queued_again() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    ended, again = ready("ended", r), ready("again", r)
    for rec in (ended, again):
        q.push(rec, 0.0)
        key = q.pop("x")
        assert key is not None
        q.park("db", key)
    assert q.parked_count() == {"x": 2}
    ended.state = TaskState.CANCELLED
    q.push(again, 1.0)  # a new entry: the parked one is stale now
    q.unpark("db")
    lanes = q.lanes["x"]["r"]
    assert ids(lanes.heap) == ["again"]
    assert lanes.heap[0][K_SEQ] == again.queued


def test_put_back_keeps_place_and_prune_forgets_empty_lanes() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    rec = ready("a", r, cap="z")
    q.push(rec, 0.0)
    key = q.pop("z")
    assert key is not None
    q.put_back([key])
    assert q.head("z") == key
    assert q.pop("z") == key
    q.prune()
    assert q.lanes == {}
    assert r.lanes == {}


def test_heads_is_a_heap_of_the_live_heads_of_the_lanes_that_can_be_served() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    for tid, cap, rank in (("x1", "x", 5.0), ("y1", "y", 40.0), ("z1", "z", 45.0)):
        q.push(ready(tid, r, cap=cap, rank=rank), 0.0)
    heads = q.heads(lambda cap: cap != "z")
    assert sorted(lane.cap for _, lane in heads) == ["x", "y"]
    assert heads[0][1].cap == "y"  # the most urgent head on top


def test_rekey_rebuilds_a_runs_lanes_in_the_new_order() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    a, b = ready("a", r, rank=30.0), ready("b", r, rank=10.0)
    q.push(a, 0.0)
    q.push(b, 0.0)
    a.rank, b.rank = 5.0, 45.0  # estimates moved
    q.rekey(r)
    assert drain(q) == ["b", "a"]


def test_delayed_tasks_are_queued_once_due_if_still_ready() -> None:
    q = ReadyQueues(AGING_S)
    r = run()
    due, cancelled = ready("due", r), ready("cancelled", r)
    q.delay(due, 5.0)
    q.delay(cancelled, 3.0)
    cancelled.state = TaskState.CANCELLED
    assert q.next_delayed() == 3.0
    q.promote(4.0)
    assert q.head("x") is None
    q.promote(5.0)
    assert ids([k for k in [q.head("x")] if k is not None]) == ["due"]
    assert q.next_delayed() is None


def test_the_aging_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="aging_interval_s"):
        ReadyQueues(0.0)
