"""The ready queues on their own: order, stale entries, parking on a resource, back-off."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from metaagent.core.graph import TaskGraph
from metaagent.core.queues import K_RECORD, K_SEQ, QueueKey, ReadyQueues
from metaagent.core.scheduler.records import RunRecord, TaskRecord
from metaagent.core.tasks import AgentTask, TaskState

if TYPE_CHECKING:
    from collections.abc import Iterable

AGING_S = 100.0


def run(order: int = 1) -> RunRecord:
    r = RunRecord(f"run{order}", f"run{order}", TaskGraph(()), 0.0)
    r.order = order
    return r


def ready(
    tid: str, r: RunRecord, *, priority: int = 0, rank: float = 0.0, cap: str = "x"
) -> TaskRecord:
    """A ready record of a new task (its queue entries take their own sequence numbers)."""
    task = AgentTask(tid, cap, priority=priority)
    return TaskRecord(task, r, 0, state=TaskState.READY, rank=rank)


def ids(keys: Iterable[QueueKey]) -> list[str]:
    return [k[K_RECORD].task.id for k in keys]


def drain(q: ReadyQueues, cap: str = "x") -> list[str]:
    out: list[str] = []
    while (key := q.pop(cap)) is not None:
        out.append(key[K_RECORD].task.id)
    return out


def test_pop_order_is_priority_then_run_then_rank_then_arrival() -> None:
    q = ReadyQueues(AGING_S)
    early, late = run(1), run(2)
    for rec in [
        ready("late-run", late, priority=1, rank=9.0),
        ready("low", early, priority=0, rank=9.0),
        ready("short-path", early, priority=1, rank=1.0),
        ready("first", early, priority=1, rank=5.0),
        ready("second", early, priority=1, rank=5.0),
        ready("urgent", late, priority=2),
    ]:
        q.push(rec, 0.0)
    assert drain(q) == ["urgent", "first", "second", "short-path", "late-run", "low"]
    assert q.pop("x") is None
    assert q.pop("never-queued") is None


def test_push_hands_out_sequence_numbers_and_counts_waiting_tasks() -> None:
    q = ReadyQueues(AGING_S)
    q.seq = 10  # records took numbers from the same counter before
    a, b, c = ready("a", run()), ready("b", run()), ready("c", run(), cap="y")
    for rec in (a, b, c):
        q.push(rec, 0.0)
    assert (a.queued, b.queued, c.queued, q.seq) == (11, 12, 13, 13)
    assert q.depth() == {"x": 2, "y": 1}
    q.waiting["y"] -= 1  # what the scheduler does when a task starts
    assert q.depth() == {"x": 2}


def test_a_task_that_waited_longer_ranks_as_if_its_priority_were_higher() -> None:
    q = ReadyQueues(AGING_S)
    q.push(ready("old-low", run(), priority=0), 0.0)
    q.push(ready("new-high", run(), priority=1), 2 * AGING_S)  # two intervals later
    assert drain(q) == ["old-low", "new-high"]


def test_stale_entries_are_dropped_off_the_top() -> None:
    q = ReadyQueues(AGING_S)
    gone, requeued, kept = ready("gone", run()), ready("requeued", run()), ready("kept", run())
    for rec in (gone, requeued, kept):
        q.push(rec, 0.0)
    gone.state = TaskState.CANCELLED
    q.push(requeued, 2 * AGING_S)  # a new entry, behind ``kept``; the old one is stale
    head = q.head("x")
    assert head is not None
    assert head[K_RECORD] is kept
    assert drain(q) == ["kept", "requeued"]
    assert q.head("x") is None


def test_a_parked_entry_returns_to_its_old_place_when_the_resource_is_released() -> None:
    q = ReadyQueues(AGING_S)
    for tid in ("a", "b", "c"):
        q.push(ready(tid, run()), 0.0)
    key = q.pop("x")
    assert key is not None
    q.park("db", key)
    q.push(ready("d", run()), 0.0)
    q.unpark("file")  # nothing waits on it
    assert q.parked == {"db": [key]}
    q.unpark("db")
    assert q.parked == {}
    assert drain(q) == ["a", "b", "c", "d"]


def test_unpark_drops_entries_whose_task_ended_or_was_queued_again() -> None:
    q = ReadyQueues(AGING_S)
    ended, again = ready("ended", run()), ready("again", run())
    q.push(ended, 0.0)
    q.push(again, 0.0)
    for key in (q.pop("x"), q.pop("x")):
        assert key is not None
        q.park("db", key)
    ended.state = TaskState.SKIPPED
    q.push(again, 0.0)
    q.unpark("db")
    assert ids(q.heaps["x"]) == ["again"]
    assert q.heaps["x"][0][K_SEQ] == again.queued


def test_put_back_keeps_place_and_prune_forgets_empty_queues() -> None:
    q = ReadyQueues(AGING_S)
    q.push(ready("a", run()), 0.0)
    q.push(ready("b", run()), 0.0)
    q.push(ready("y1", run(), cap="y"), 0.0)
    taken = [q.pop("x"), q.pop("y")]
    q.prune()
    assert list(q.heaps) == ["x"]
    q.put_back(k for k in taken if k is not None)
    assert (drain(q, "x"), drain(q, "y")) == (["a", "b"], ["y1"])


def test_heads_is_a_heap_of_the_live_heads_of_the_queues_that_can_be_served() -> None:
    q = ReadyQueues(AGING_S)
    stale = ready("stale", run(), priority=9, cap="z")
    for rec in (
        ready("x1", run(), priority=1, cap="x"),
        ready("y1", run(), priority=2, cap="y"),
        ready("w1", run(), priority=3, cap="w"),
        stale,
    ):
        q.push(rec, 0.0)
    stale.state = TaskState.CANCELLED
    heads = q.heads(lambda cap: cap != "w")  # no free agent offers ``w``
    assert [(k[K_RECORD].task.id, cap) for k, cap in heads] == [("y1", "y"), ("x1", "x")]
    assert q.heaps["z"] == []


def test_delayed_tasks_are_queued_once_due_if_still_ready() -> None:
    q = ReadyQueues(AGING_S)
    soon, later, ended = ready("soon", run()), ready("later", run()), ready("ended", run())
    assert q.next_delayed() is None
    q.delay(later, 20.0)
    q.delay(soon, 10.0)
    q.delay(ended, 10.0)
    assert (soon.queued, q.next_delayed(), q.depth()) == (0, 10.0, {})
    ended.state = TaskState.CANCELLED
    q.promote(9.0)
    assert q.heaps == {}
    q.promote(10.0)
    assert (drain(q), q.next_delayed()) == (["soon"], 20.0)
    q.promote(25.0)
    assert (drain(q), q.next_delayed(), q.depth()) == (["later"], None, {"x": 2})


def test_the_aging_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="aging_interval_s"):
        ReadyQueues(0.0)
