"""What a simulation runs: the agent pool, the workload and how long (and how well) work goes.

Pure data and pure functions: a ``SimSpec`` names the pools of agents, the tasks (explicit or
generated from a ``Workload``) and the ``Profile`` of each (agent, capability) pair: a duration
distribution and a failure rate. ``metaagent.simulate`` runs it; ``metaagent.simulate_file``
reads it from YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from metaagent.agents.base import AttemptContext
    from metaagent.core.learning import ArmStats, RoutingMode
    from metaagent.core.routing.router import RoutingWeights
    from metaagent.core.specs import AgentSpec
    from metaagent.core.tasks import AgentTask
    from metaagent.sim.workload import Workload

DistKind = Literal["fixed", "lognormal", "exponential", "uniform"]
Ordering = Literal["scheduler", "fifo", "priority", "critical_path"]
"""How the ready queue is ordered: the scheduler's own (priority, then critical-path rank, then
age), or a baseline: ``fifo`` (age only), ``priority`` (priority, then age), ``critical_path``
(rank, then age; priorities ignored)."""


class SimulatedRunner:
    """The runner of simulated agents: the simulator decides outcomes, nothing is ever run."""

    kind = "simulated"

    async def run(self, ctx: AttemptContext) -> object:
        raise RuntimeError("a simulated agent cannot run real work")

    def describe(self) -> dict[str, object]:
        return {"type": self.kind}


SIMULATED = SimulatedRunner()


_FIXED, _LOGNORMAL, _EXPONENTIAL, _UNIFORM = range(4)


class Sampler(NamedTuple):
    """A ``Duration`` precomputed for ``sample``: the distribution's ``kind`` and parameters.

    fixed: ``a`` seconds; lognormal: ``exp(a + b·z)``; exponential: mean ``a``; uniform:
    ``a + b·v``.
    """

    kind: int
    a: float
    b: float


def sample(s: Sampler, z: float, v: float) -> float:
    """A duration from a ``Duration.sampler()``, a standard normal ``z`` and a uniform ``v``."""
    kind, a, b = s
    if kind == _FIXED:
        return a
    if kind == _LOGNORMAL:
        return math.exp(a + b * z)
    if kind == _EXPONENTIAL:
        return -a * math.log1p(-v)
    return a + b * v


@dataclass(frozen=True, slots=True)
class Duration:
    """A distribution of attempt durations, by its mean (seconds) and coefficient of variation.

    ``exponential`` has a cv of 1 whatever ``cv`` says; ``uniform`` spans mean ± cv·mean·√3.
    """

    dist: DistKind = "lognormal"
    mean_s: float = 1.0
    cv: float = 0.5

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.dist not in ("fixed", "lognormal", "exponential", "uniform"):
            out.append(f"dist: must be fixed, lognormal, exponential or uniform, got {self.dist}")
        if not (self.mean_s > 0 and math.isfinite(self.mean_s)):
            out.append(f"mean_s: must be a positive number of seconds, got {self.mean_s}")
        if not (self.cv >= 0 and math.isfinite(self.cv)):
            out.append(f"cv: must be zero or more, got {self.cv}")
        return out

    def sample(self, z: float, v: float) -> float:
        """A duration from a standard normal ``z`` and a uniform ``v`` in [0, 1)."""
        return sample(self.sampler(), z, v)

    def sampler(self) -> Sampler:
        """The distribution as a ``Sampler`` for ``sample`` (precomputed: it is hot)."""
        m = self.mean_s
        if self.dist == "fixed" or self.cv == 0:
            return Sampler(_FIXED, m, 0.0)
        if self.dist == "lognormal":
            s2 = math.log1p(self.cv * self.cv)
            return Sampler(_LOGNORMAL, math.log(m) - s2 / 2, math.sqrt(s2))
        if self.dist == "exponential":
            return Sampler(_EXPONENTIAL, m, 0.0)
        half = min(m, m * self.cv * math.sqrt(3.0))
        return Sampler(_UNIFORM, m - half, 2 * half)


@dataclass(frozen=True, slots=True)
class Profile:
    """How an agent does on a capability: attempt durations, the chance an attempt fails and
    what an attempt costs.

    The chance of failure grows with the task's complexity above ``failure_from``, by
    ``failure_growth`` per unit (capped at 1): ``failure_rate + failure_growth * max(0,
    complexity - failure_from)``. ``cost_usd`` is reported as each attempt's usage (success or
    not), as a real runner reports what it spent; 0 reports none.
    """

    duration: Duration = field(default_factory=Duration)
    failure_rate: float = 0.0
    failure_growth: float = 0.0
    failure_from: float = 0.0
    cost_usd: float = 0.0

    def problems(self) -> list[str]:
        out = [f"duration.{p}" for p in self.duration.problems()]
        if not (0.0 <= self.failure_rate <= 1.0):
            out.append(f"failure_rate: must be within 0..1, got {self.failure_rate}")
        if not (self.failure_growth >= 0 and math.isfinite(self.failure_growth)):
            out.append(f"failure_growth: must be zero or more, got {self.failure_growth}")
        if not (0.0 <= self.failure_from <= 1.0):
            out.append(f"failure_from: must be within 0..1, got {self.failure_from}")
        if not (self.cost_usd >= 0 and math.isfinite(self.cost_usd)):
            out.append(f"cost_usd: must be a finite number of USD >= 0, got {self.cost_usd}")
        return out

    def failure_at(self, complexity: float) -> float:
        """The chance that an attempt of a task of ``complexity`` fails."""
        extra = complexity - self.failure_from
        if extra <= 0 or self.failure_growth == 0:
            return self.failure_rate
        return min(1.0, self.failure_rate + self.failure_growth * extra)


@dataclass(frozen=True, slots=True)
class AgentPool:
    """``count`` instances of one agent spec (named ``{spec.name}#{k}`` in the simulation)."""

    spec: AgentSpec
    count: int = 1

    @property
    def slots(self) -> int:
        return self.spec.concurrency * self.count


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Scheduler knobs for a simulation; ``None`` means the default (``max_concurrency``: every
    slot of the pool; ``max_queued``: enough for every task)."""

    routing: RoutingMode = "deterministic"
    learn: bool = True
    max_concurrency: int | None = None
    max_queued: int | None = None
    affinity_margin: float = 0.05
    retry_base_s: float = 0.25
    retry_max_s: float = 30.0
    retry_jitter: float = 0.1
    weights: RoutingWeights | None = None  # None: the scheduler's default weights
    aging_interval_s: float | None = None  # None: the scheduler's default


@dataclass(frozen=True, slots=True)
class SimSpec:
    """Everything a simulation needs. ``tasks`` (one run, at time 0), ``runs`` (``(arrival
    time, tasks)`` each) or ``workload`` (generated) gives the work.

    Profiles are looked up most specific first: (agent, capability), (agent, None),
    (None, capability), then ``default``. ``durations`` fixes the duration of named tasks.
    ``scale_by_complexity``: an attempt takes ``(0.5 + complexity)`` times its sampled duration,
    so a profile's mean is that of a task of the default complexity, 0.5.
    ``ignore_groups`` routes as if tasks had no group (the no-affinity baseline); switches are
    still counted by group. ``warm_start`` seeds the routing statistics with that many
    pseudo-attempts per (agent, capability), as if learned from the profiles in earlier runs.
    ``outcome_luck`` fixes, for ``(task id, attempt)``, the uniform number the attempt's outcome
    is drawn from (it fails when below its agent's failure rate), so a reference schedule can
    meet the same luck.
    """

    pools: tuple[AgentPool, ...]
    tasks: tuple[AgentTask, ...] = ()
    workload: Workload | None = None
    runs: tuple[tuple[float, tuple[AgentTask, ...]], ...] = ()
    profiles: Mapping[tuple[str | None, str | None], Profile] = field(default_factory=dict)
    default: Profile = field(default_factory=Profile)
    settings: SimSettings = field(default_factory=SimSettings)
    seed: int = 0
    name: str = "simulation"
    durations: Mapping[str, float] = field(default_factory=dict)
    scale_by_complexity: bool = True
    ordering: Ordering = "scheduler"
    ignore_groups: bool = False
    warm_start: int = 0
    outcome_luck: Mapping[tuple[str, int], float] = field(default_factory=dict)

    @property
    def slots(self) -> int:
        return sum(p.slots for p in self.pools)

    @property
    def instances(self) -> int:
        return sum(p.count for p in self.pools)

    def profile(self, agent: str, capability: str) -> Profile:
        """The profile of ``agent`` (a spec name) on ``capability``."""
        p = self.profiles
        return (
            p.get((agent, capability))
            or p.get((agent, None))
            or p.get((None, capability))
            or self.default
        )

    def with_pools(self, pools: Iterable[AgentPool]) -> SimSpec:
        return replace(self, pools=tuple(pools))


def scale_pools(
    pools: Sequence[AgentPool], total: int, weights: Mapping[str, float] | None = None
) -> tuple[AgentPool, ...]:
    """Spread ``total`` instances over ``pools``, at least one each, the rest in proportion to
    ``weights`` by spec name (default: the pools' counts), by largest remainder.

    Raises ``ValueError`` if ``total`` is below the number of pools.
    """
    if total < len(pools):
        raise ValueError(f"{total} instances cannot cover {len(pools)} kinds of agent")
    w = [
        max(0.0, weights.get(p.spec.name, 0.0)) if weights is not None else float(p.count)
        for p in pools
    ]
    if not any(x > 0 for x in w):
        w = [1.0] * len(pools)
    scale = (total - len(pools)) / sum(w)
    shares = [x * scale for x in w]
    counts = [1 + int(s) for s in shares]
    left = total - sum(counts)
    by_remainder = sorted(range(len(pools)), key=lambda i: (-(shares[i] % 1.0), -w[i], i))
    for i in by_remainder[:left]:
        counts[i] += 1
    return tuple(replace(p, count=c) for p, c in zip(pools, counts, strict=True))


def profiles_from_stats(
    stats: Iterable[tuple[str, str, ArmStats]], cv: float = 0.5
) -> dict[tuple[str | None, str | None], Profile]:
    """Profiles learned by earlier runs (a journal's statistics): the observed mean duration
    (lognormal with ``cv``) and failure rate of each (agent, capability) seen."""
    out: dict[tuple[str | None, str | None], Profile] = {}
    for spec, cap, arm in stats:
        if not arm.attempts or not arm.durations or arm.mean_duration_s <= 0:
            continue
        out[(spec, cap)] = Profile(
            Duration("lognormal", arm.mean_duration_s, cv), arm.failures / arm.attempts
        )
    return out


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``5m``, ``1h30m``, ``2d`` or a bare number of seconds.

    Raises ``ValueError`` naming the text for anything else or a duration that is not positive.
    """
    s = text.strip().lower().replace(" ", "")
    total = 0.0
    num = ""
    try:
        if s and not any(u in s for u in _UNITS):
            s += "s"  # a bare number is seconds
        for ch in s:
            if ch.isdigit() or ch == ".":
                num += ch
            elif ch in _UNITS and num:
                total += float(num) * _UNITS[ch]
                num = ""
            else:
                raise ValueError
        if num or not s:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration: use a number of seconds or units s/m/h/d, like 30s, "
            "5m or 1h30m"
        ) from None
    if not (total > 0 and math.isfinite(total)):
        raise ValueError(f"{text!r}: a duration must be more than zero")
    return total
