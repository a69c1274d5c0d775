"""Helpers for testing your own agents and workflows.

- building tasks and agents: ``task``, ``agent_spec``, ``FAST_RETRY``, ``NO_JITTER_RETRY``;
- fake runners: ``noop_runner``, ``echo_runner``, ``flaky_runner``, ``CallLog``;
- the pure core on virtual time: ``make_scheduler``, ``run_until_idle``, ``decisions_of``,
  ``routed_task_ids``, ``ManualClock``;
- the whole runtime on virtual time: ``run_virtual`` (an event loop on a ``ManualClock`` that
  jumps to the next timer when nothing is ready; give the orchestrator the same clock);
- waiting on state, not on time: ``EventLog``, ``ConcurrencyMeter``, ``wait_until``.

Nothing here imports a test framework, so pytest and unittest suites use it alike. Failures to
reach a state raise ``StateNotReached``, an ``AssertionError``: both frameworks report it as a
test failure, not an error.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter, deque
from typing import TYPE_CHECKING, TypedDict, TypeVar

from metaagent.agents.function import FunctionRunner
from metaagent.clock import ManualClock
from metaagent.core.decisions import RouteTask
from metaagent.core.retry import RetryPolicy
from metaagent.core.scheduler.config import SchedulerConfig
from metaagent.core.scheduler.scheduler import Scheduler
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask, Outcome
from metaagent.errors import MetaAgentError
from metaagent.runtime.virtual import VirtualTimeLoop, run_virtual

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping
    from typing import Unpack

    from metaagent.agents.base import AttemptContext, Runner
    from metaagent.agents.function import AgentFunction
    from metaagent.core.decisions import Output
    from metaagent.core.placement import Placement
    from metaagent.core.tasks import Decompose, VerifySpec
    from metaagent.runtime.events import Event

__all__ = [
    "FAST_RETRY",
    "NO_JITTER_RETRY",
    "CallLog",
    "ConcurrencyMeter",
    "EventLog",
    "ManualClock",
    "SpecFields",
    "StateNotReached",
    "TaskFields",
    "VirtualTimeLoop",
    "agent_spec",
    "decisions_of",
    "echo_runner",
    "flaky_runner",
    "make_scheduler",
    "noop_runner",
    "routed_task_ids",
    "run_until_idle",
    "run_virtual",
    "task",
    "wait_until",
]

_T = TypeVar("_T")

DEFAULT_TIMEOUT_S = 5.0
"""How long the waiting helpers wait for a state before they fail."""

FAST_RETRY = RetryPolicy(base_s=0.001, max_s=0.01, jitter=0.0)
"""Retries after a millisecond or so and without jitter: for orchestrator tests on real time."""

NO_JITTER_RETRY = RetryPolicy(base_s=1.0, max_s=30.0, jitter=0.0)
"""Back-off of exactly 1, 2, 4, ... seconds: retry times are predictable on virtual time."""


class StateNotReached(MetaAgentError, AssertionError):
    """A state a test waited for did not come about in time.

    ``what`` names the state; ``timeout_s`` is how long it was waited for (``None`` when the
    bound was a number of steps, not a time).
    """

    def __init__(self, what: str, timeout_s: float | None = None) -> None:
        self.what = what
        self.timeout_s = timeout_s
        within = "" if timeout_s is None else f" within {timeout_s:g} s"
        super().__init__(f"not reached{within}: {what}")


# --- building tasks and agents ------------------------------------------------------------------


class TaskFields(TypedDict, total=False):
    """The fields of ``AgentTask`` that ``task()`` takes by keyword."""

    prompt: str
    input: object
    priority: int
    complexity: float
    timeout_s: float | None
    max_attempts: int
    resources: tuple[str, ...]
    verify: VerifySpec | None
    metadata: dict[str, object]
    key: str | None
    group: str | None
    decompose: Decompose | None
    estimate_s: float | None
    min_proficiency: float | None


class SpecFields(TypedDict, total=False):
    """The fields of ``AgentSpec`` that ``agent_spec()`` takes by keyword."""

    role: str | None
    concurrency: int
    description: str
    min_instances: int
    max_instances: int
    rate_per_min: float | None
    placement: Placement | None
    cost_per_call_usd: float | None


def task(
    task_id: str, *depends_on: str, capability: str = "code", **fields: Unpack[TaskFields]
) -> AgentTask:
    """A task in one line: ``task("tests", "api", "db", priority=2)`` depends on ``api`` and ``db``.

    The capability defaults to ``"code"``. The task is not validated here; the scheduler does
    that when it is submitted, as it would for any task.
    """
    return AgentTask(task_id, capability, depends_on=depends_on, **fields)


def agent_spec(
    name: str,
    capabilities: Mapping[str, float],
    runner: Runner | None = None,
    **fields: Unpack[SpecFields],
) -> AgentSpec:
    """An ``AgentSpec`` whose runner defaults to ``noop_runner()``.

    The pure scheduler never calls a runner, so tests of it need not write one.
    """
    return AgentSpec(name, dict(capabilities), runner or noop_runner(), **fields)


# --- fake runners -------------------------------------------------------------------------------


def _nothing(ctx: AttemptContext) -> None:
    return None


async def _task_id(ctx: AttemptContext) -> str:
    return ctx.task.id


def noop_runner() -> FunctionRunner:
    """A runner whose every attempt succeeds with ``None``."""
    return FunctionRunner(_nothing, name="noop")


def echo_runner() -> FunctionRunner:
    """A runner whose every attempt succeeds with the task's id, so outputs tell tasks apart."""
    return FunctionRunner(_task_id, name="echo")


def flaky_runner(fail_times: int = 1, *, error: type[Exception] = RuntimeError) -> FunctionRunner:
    """A runner that fails the first ``fail_times`` attempts of each task, then echoes its id.

    It goes by the attempt number the runtime passes in (``ctx.attempt``), so it holds no state
    and fails the same way on every agent. Each failure raises ``error`` with a message naming
    the task and attempt. With ``fail_times`` at or above the task's ``max_attempts`` the task
    ends ``failed``.
    """
    if fail_times < 0:
        raise ValueError(f"fail_times must be at least 0, got {fail_times}")

    async def flaky(ctx: AttemptContext) -> str:
        if ctx.attempt <= fail_times:
            raise error(f"attempt {ctx.attempt} of {ctx.task.id} fails on purpose")
        return ctx.task.id

    return FunctionRunner(flaky, name=f"flaky({fail_times})")


class CallLog:
    """An agent body that records every attempt it is given, then answers with ``body(ctx)``.

    Without ``body`` it answers with the task's id. ``body`` may be a plain or an ``async``
    function; a plain one runs on the event loop, so keep it quick. Use it as
    ``FunctionRunner(log)`` or ``log.runner()``.
    """

    def __init__(self, body: AgentFunction | None = None) -> None:
        self.body = body
        self.contexts: list[AttemptContext] = []

    async def __call__(self, ctx: AttemptContext) -> object:
        self.contexts.append(ctx)
        if self.body is None:
            return ctx.task.id
        out = self.body(ctx)
        if inspect.isawaitable(out):
            out = await out
        return out

    def runner(self, name: str = "call-log") -> FunctionRunner:
        return FunctionRunner(self, name=name)

    @property
    def ran(self) -> list[str]:
        """Task ids in the order their attempts started, one entry per attempt."""
        return [ctx.task.id for ctx in self.contexts]

    @property
    def calls(self) -> Counter[str]:
        """Attempts per task id."""
        return Counter(self.ran)


# --- the pure core on virtual time --------------------------------------------------------------


def make_scheduler(
    *specs: AgentSpec, config: SchedulerConfig | None = None, now: float = 0.0
) -> Scheduler:
    """A ``Scheduler`` with one ready instance of each spec.

    Without ``config`` retries use ``NO_JITTER_RETRY``, so their times are exact.
    """
    scheduler = Scheduler(config or SchedulerConfig(retry=NO_JITTER_RETRY))
    for spec in specs:
        scheduler.add_agent(spec, now)
    return scheduler


def decisions_of(outputs: Iterable[object], kind: type[_T]) -> list[_T]:
    """The outputs that are ``kind`` (``RouteTask``, ``RetryTask``, ...), in their order."""
    return [o for o in outputs if isinstance(o, kind)]


def routed_task_ids(outputs: Iterable[object]) -> list[str]:
    """The ids of the tasks routed by ``outputs``, in routing order."""
    return [d.task_id for d in decisions_of(outputs, RouteTask) if d.task_id is not None]


def run_until_idle(
    scheduler: Scheduler,
    now: float = 0.0,
    *,
    outputs: Mapping[str, object] | None = None,
    failing: Collection[str] = (),
    step_s: float = 1.0,
    max_steps: int = 100_000,
) -> list[Output]:
    """Play the runtime for ``scheduler`` on virtual time until it has nothing left to do.

    Call it after ``submit`` and before dispatching yourself: it finishes only the attempts it
    routed.

    Every routed attempt ends ``step_s`` after the previous one, in routing order: it succeeds
    with ``outputs[task_id]`` (the task id when not given), or fails with an error when its task
    is in ``failing``. When nothing runs, the clock jumps to ``scheduler.next_wakeup()`` (a retry's
    back-off, a pool timer). Returns every output the scheduler answered, in order. Raises
    ``StateNotReached`` if it is still busy after ``max_steps`` steps.
    """
    seen: list[Output] = []
    running: deque[RouteTask] = deque()
    for _ in range(max_steps):
        answered = scheduler.tick(now)
        seen.extend(answered)
        running.extend(decisions_of(answered, RouteTask))
        if not running:
            wake = scheduler.next_wakeup()
            if wake is None:
                return seen
            now = max(now, wake)
            continue
        route = running.popleft()
        now += step_s
        task_id, run_id = route.task_id or "", route.run_id or ""
        if task_id in failing:
            ended = scheduler.finish(
                run_id, task_id, route.attempt, Outcome.ERROR, now, error="fails on purpose"
            )
        else:
            output = (outputs or {}).get(task_id, task_id)
            ended = scheduler.finish(
                run_id, task_id, route.attempt, Outcome.SUCCEEDED, now, output=output
            )
        seen.extend(ended)
    raise StateNotReached(f"an idle scheduler in {max_steps} steps (virtual time {now:g} s)")


# --- waiting on state, not on time --------------------------------------------------------------

_YIELDS_BEFORE_BACKOFF = 50
_POLL_S = 0.005


async def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    what: str | None = None,
) -> None:
    """Return as soon as ``predicate()`` holds; raise ``StateNotReached`` after ``timeout_s``.

    It first only yields to the event loop, so state that other coroutines change is seen the
    moment it changes; after that it checks every few milliseconds, for state changed by
    threads or processes (a killed process being gone). Prefer ``EventLog.wait_for`` or
    ``ConcurrencyMeter.reached`` when the state has an event of its own.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    yields = 0
    while not predicate():
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise StateNotReached(what or _describe(predicate), timeout_s)
        if yields < _YIELDS_BEFORE_BACKOFF:
            yields += 1
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(min(_POLL_S, remaining))


def _describe(predicate: Callable[..., object]) -> str:
    return getattr(predicate, "__qualname__", None) or repr(predicate)


class EventLog:
    """Collects a run's events and waits for one: pass it as ``submit(..., on_event=log)``.

    Waiting looks at the events already seen first, so it cannot miss one that came before
    the wait began.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._waiters: list[tuple[Callable[[Event], bool], asyncio.Future[Event]]] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        for predicate, future in self._waiters:
            if future.done():
                continue
            try:
                if predicate(event):
                    future.set_result(event)
            except Exception as exc:
                # The waiter's own check broke: it is told, the run that published is not.
                future.set_exception(exc)

    def states(self, task_id: str) -> list[str]:
        """The states a task was reported in, in order."""
        return [
            e.state for e in self.events if e.kind == "task" and e.task_id == task_id and e.state
        ]

    async def wait_for(
        self,
        predicate: Callable[[Event], bool],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        what: str | None = None,
    ) -> Event:
        """The first event, seen or to come, for which ``predicate`` holds.

        Raises ``StateNotReached`` if none comes within ``timeout_s``.
        """
        for event in self.events:
            if predicate(event):
                return event
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            raise StateNotReached(what or _describe(predicate), timeout_s) from None
        finally:
            self._waiters.remove(waiter)

    async def wait_for_task(
        self, task_id: str, state: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> Event:
        """The event of ``task_id`` entering ``state`` (``"running"``, ``"succeeded"``, ...)."""
        return await self.wait_for(
            lambda e: e.kind == "task" and e.task_id == task_id and e.state == state,
            timeout_s=timeout_s,
            what=f"task {task_id!r} {state}",
        )


class ConcurrencyMeter:
    """Counts the agent bodies running at once and remembers the peak.

    Wrap a body in ``async with meter:``; ``await meter.reached(n)`` returns once ``n`` ran at
    the same time. A body that waits for ``reached(n)`` proves that ``n`` attempts overlap,
    with no sleep. For async bodies on the event loop (it uses ``asyncio.Event``).
    """

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self._levels: dict[int, asyncio.Event] = {}

    def _level(self, n: int) -> asyncio.Event:
        level = self._levels.get(n)
        if level is None:
            level = self._levels[n] = asyncio.Event()
            if self.peak >= n:
                level.set()
        return level

    def enter(self) -> None:
        self.active += 1
        if self.active > self.peak:
            self.peak = self.active
            self._level(self.peak).set()

    def leave(self) -> None:
        if self.active == 0:
            raise RuntimeError("leave() without a matching enter()")
        self.active -= 1

    async def __aenter__(self) -> ConcurrencyMeter:
        self.enter()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.leave()

    async def reached(self, n: int, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Return once ``n`` bodies have run at the same time (now or earlier)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._level(n).wait()
        except TimeoutError:
            raise StateNotReached(
                f"{n} at once (peak {self.peak}, {self.active} now)", timeout_s
            ) from None
