"""Instance health: the heartbeat and back-off settings and the circuit breaker's rules. Pure.

A lost instance is restarted after an exponential, jittered back-off (so a poison task cannot
cause a respawn storm); an instance with ``breaker_failures`` agent faults in a row is
quarantined, then let through for a single probe after its own back-off.

Only agent faults count (``AGENT_FAULTS``: the agent crashed or was lost; an instance that fails
its health checks is lost, removed and replaced at once). An ``error``, ``timeout`` or
``verify_failed`` is the task's outcome: a bad input or a task too long for its limit says
nothing of the agent, so three bad tasks cannot quarantine the only agent. Hung agents are
caught by the heartbeats, not by task timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from metaagent.core.instances import AgentState
from metaagent.core.tasks import Outcome

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

    from metaagent.core.instances import AgentInstance
    from metaagent.core.tasks import Attempt


AGENT_FAULTS: frozenset[Outcome] = frozenset({Outcome.CRASH, Outcome.LOST})
"""The outcomes the circuit breaker counts: the agent failed, not the task."""


_MAX_DOUBLINGS = 64  # past any maximum back-off of a real policy


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Heartbeats, circuit breaker and restart back-off. Units are in the names."""

    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 2.0  # no answer this long: the instance is lost
    breaker_failures: int = 3  # consecutive agent faults (AGENT_FAULTS) that quarantine it
    breaker_backoff_s: float = 5.0
    breaker_backoff_max_s: float = 120.0
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 30.0
    restart_jitter: float = 0.5  # fraction of a delay added at random
    start_timeout_s: float = 10.0  # a new instance must answer its first heartbeat by then


def restart_delay(health: HealthPolicy, losses: int, rng: random.Random) -> float:
    """Seconds to wait before a spec that lost ``losses`` instances in a row spawns again."""
    delay = min(health.restart_backoff_max_s, health.restart_backoff_s * _doubled(losses))
    return delay + delay * health.restart_jitter * rng.random()


def breaker_delay(health: HealthPolicy, trips: int, rng: random.Random) -> float:
    """Seconds a breaker opened for the ``trips``-th time stays open before its probe."""
    h = health
    delay = min(h.breaker_backoff_max_s, h.breaker_backoff_s * _doubled(trips))
    return delay + delay * h.restart_jitter * rng.random()


def _doubled(times: int) -> float:
    """2 ** (times - 1), bounded: a spec lost a thousand times in a row must not overflow."""
    return 2.0 ** min(times - 1, _MAX_DOUBLINGS)


def is_agent_fault(outcome: Outcome, instance_id: str, earlier: Sequence[Attempt]) -> bool:
    """True when an attempt that ended ``outcome`` on ``instance_id`` counts against that
    instance's breaker: an agent fault, and the task's first on this instance (``earlier``: the
    task's attempts before this one), so one poison task cannot trip a breaker alone."""
    if outcome not in AGENT_FAULTS:
        return False
    return not any(a.agent_instance == instance_id and a.outcome in AGENT_FAULTS for a in earlier)


def count_failure(inst: AgentInstance, health: HealthPolicy) -> bool:
    """Count an agent fault of ``inst`` (see ``is_agent_fault``); True when its breaker opens
    now.

    Only a ready instance trips (one already quarantined, throttled or draining is left as it
    is); a probing instance trips on its first failure, as a half-open breaker does.
    """
    inst.consecutive_failures += 1
    if inst.state is not AgentState.READY:
        return False
    if inst.consecutive_failures < health.breaker_failures and not inst.probing:
        return False
    inst.breaker_trips += 1
    return True


def count_success(inst: AgentInstance) -> bool:
    """Reset the failure counts of ``inst``; True when this closes a half-open breaker.

    The caller gives a closed instance its slots back (``inst.spec.concurrency``).
    """
    inst.consecutive_failures = 0
    inst.breaker_trips = 0
    if not inst.probing:
        return False
    inst.probing = False
    return True
