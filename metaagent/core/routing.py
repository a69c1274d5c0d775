"""Choosing the agent for a task: a candidate index by capability and a scored choice.

The score adds weighted parts, each in 0..1, so a decision can show why its winner won:
``capability`` (declared proficiency), ``fit`` (hard tasks need strong agents), ``load`` (free
share of the instance's slots), ``success`` (learned success probability) and ``speed`` (learned
duration against the capability's mean).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

from metaagent.core.decisions import SCORE_PARTS, Candidate
from metaagent.core.instances import AgentInstance, AgentState

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from metaagent.core.learning import Learning
    from metaagent.core.tasks import AgentTask


@dataclass(frozen=True, slots=True)
class RoutingWeights:
    """Weights of the score's parts; they need not sum to one."""

    capability: float = 0.35
    fit: float = 0.15
    load: float = 0.20
    success: float = 0.20
    speed: float = 0.10


@dataclass(slots=True)
class Choice:
    """The winner of one routing decision and the runners-up it beat.

    ``affinity`` is true when the winner was preferred for its group over a slightly better one.
    """

    instance: AgentInstance
    score: float
    parts: tuple[float, float, float, float, float]
    ranked: tuple[tuple[str, float, tuple[float, ...]], ...]  # (agent, score, parts)
    affinity: bool = False

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(Candidate(*c) for c in self.ranked)


Chooser = Callable[["AgentTask", "Sequence[AgentInstance]"], "AgentInstance | None"]
"""A routing policy that replaces scoring (baselines: random, round-robin, an oracle...)."""


class Router:
    """Index of agent instances by capability, and the scoring that picks one.

    Per capability, instances are kept in order of declared proficiency; a decision scores at
    most ``max_candidates`` instances that have a free slot, strongest first, so its cost does not
    grow with the size of the pool.
    """

    __slots__ = (
        "_by_cap", "_free", "_levels", "_round", "_round_version", "_specs", "chooser",
        "learning", "max_candidates", "weights",
    )  # fmt: skip

    def __init__(
        self,
        learning: Learning,
        weights: RoutingWeights | None = None,
        max_candidates: int = 32,
        chooser: Chooser | None = None,
    ) -> None:
        self.chooser = chooser
        self._round: dict[tuple[AgentInstance, str, float], tuple[float, float, float, float]] = {}
        self._round_version = -1
        self.learning = learning
        self.weights = weights or RoutingWeights()
        self.max_candidates = max_candidates
        # Per capability, the instances in buckets of equal declared proficiency (a dict keeps
        # their order of arrival), the proficiencies strongest first: adding and removing an
        # instance costs O(1) however large the pool, and the order is the one a stable sort
        # by proficiency would give.
        self._by_cap: dict[str, dict[float, dict[AgentInstance, None]]] = {}
        self._levels: dict[str, list[float]] = {}  # the buckets' proficiencies, descending
        self._specs: dict[str, dict[str, int]] = {}  # capability -> spec -> instances
        self._free: dict[str, int] = {}

    # --- the index ----------------------------------------------------------------------------

    def add(self, inst: AgentInstance) -> None:
        spec = inst.spec
        for cap, prof in spec.capabilities.items():
            buckets = self._by_cap.setdefault(cap, {})
            bucket = buckets.get(prof)
            if bucket is None:
                bucket = buckets[prof] = {}
                levels = self._levels.setdefault(cap, [])
                insort(levels, -prof)
            bucket[inst] = None
            specs = self._specs.setdefault(cap, {})
            specs[spec.name] = specs.get(spec.name, 0) + 1
            self._free[cap] = self._free.get(cap, 0) + inst.free

    def remove(self, inst: AgentInstance) -> None:
        """Drop an instance from the index (call after its slots are no longer counted)."""
        self._round.clear()  # it holds the instance: a retired one must not be kept alive
        spec = inst.spec
        for cap, prof in spec.capabilities.items():
            buckets = self._by_cap.get(cap)
            bucket = buckets.get(prof) if buckets is not None else None
            if bucket is None or bucket.pop(inst, False) is False:
                continue
            specs = self._specs[cap]
            specs[spec.name] -= 1
            if not specs[spec.name]:
                del specs[spec.name]
            if bucket:
                continue
            del buckets[prof]  # type: ignore[union-attr]
            self._levels[cap].remove(-prof)
            if not buckets:
                for index in (self._by_cap, self._levels, self._specs, self._free):
                    index.pop(cap, None)

    def adjust_free(self, inst: AgentInstance, delta: int) -> None:
        """Tell the index that ``inst`` gained (+) or lost (-) free slots."""
        free = self._free
        for cap in inst.spec.capabilities:
            free[cap] += delta

    def capabilities(self) -> list[str]:
        return sorted(self._by_cap)

    def serves(self, capability: str) -> bool:
        return capability in self._by_cap

    def has_free(self, capability: str) -> bool:
        return self._free.get(capability, 0) > 0

    def free(self, capability: str) -> int:
        """Free slots of ready instances that offer ``capability``."""
        return self._free.get(capability, 0)

    def instances(self, capability: str) -> list[AgentInstance]:
        """The instances that offer ``capability``, strongest declared proficiency first."""
        return list(self.members(capability))

    def members(self, capability: str) -> Iterable[AgentInstance]:
        """The instances of ``capability`` in routing order, without copying them (do not
        change the index while iterating)."""
        buckets = self._by_cap.get(capability)
        if not buckets:
            return ()
        if len(buckets) == 1:
            return next(iter(buckets.values()))
        return chain.from_iterable(buckets[-p] for p in self._levels[capability])

    def _may_prefer(
        self, inst: AgentInstance, best: Choice, cap: str, avoid: Collection[str]
    ) -> bool:
        """Whether affinity may pick ``inst`` over ``best`` for ``cap``: a free candidate (in
        the index under ``cap``, not avoided)."""
        if inst is best.instance or inst.state is not _READY or inst.running >= inst.slots:
            return False
        prof = inst.spec.capabilities.get(cap)
        bucket = self._by_cap.get(cap, {}).get(prof) if prof is not None else None
        return bucket is not None and inst in bucket and inst.spec.name not in avoid

    def specs_for(self, capability: str) -> set[str]:
        """The specs with an instance (not lost) that offers ``capability``."""
        # Lost instances leave the index as they are lost (``Pool.lost``): every one counted
        # here is live.
        return set(self._specs.get(capability, ()))

    # --- the choice ---------------------------------------------------------------------------

    def route(
        self,
        task: AgentTask,
        avoid: Collection[str] = (),
        prefer: AgentInstance | None = None,
        margin: float = 0.0,
    ) -> Choice | None:
        """Best free instance for ``task``, or ``None`` if none is free now.

        ``avoid`` names specs that already failed this task: they are passed over while another
        spec offers the capability, so a retry goes to a different agent when one exists.
        ``prefer`` (affinity) wins over the best when it has a free slot and, leaving the load
        part aside, scores within ``margin`` of it.
        """
        cap = task.capability
        if self._free.get(cap, 0) <= 0:
            return None
        pool: Iterable[AgentInstance] = self.members(cap)
        if not avoid or all(name in avoid for name in self._specs.get(cap, ())):
            avoid = ()  # nobody else offers it: the avoided specs may serve it again
        else:
            # Filtered lazily: scoring stops after ``max_candidates`` free ones.
            pool = (i for i in pool if i.spec.name not in avoid and i.state is not _LOST)
        if self.chooser is not None:
            return self._chosen(task, cap, pool)
        choice = self._best(task, cap, pool)
        if (
            choice is not None
            and prefer is not None
            and self._may_prefer(prefer, choice, cap, avoid)
        ):
            parts = self._parts(task, cap, prefer)
            total = self._total(parts)
            # Compared without the load part: the group's agent is busy with a sibling by
            # nature, and one busy slot alone must not cost it its group.
            wl = self.weights.load
            if total - wl * parts[2] >= choice.score - wl * choice.parts[2] - margin:
                return Choice(prefer, total, parts, choice.ranked, affinity=True)
        return choice

    def _total(self, p: tuple[float, float, float, float, float]) -> float:
        w = self.weights
        return (
            w.capability * p[0] + w.fit * p[1] + w.load * p[2] + w.success * p[3] + w.speed * p[4]
        )

    def _chosen(self, task: AgentTask, cap: str, pool: Iterable[AgentInstance]) -> Choice | None:
        """Let the pluggable ``chooser`` (a baseline policy) pick among the free instances."""
        assert self.chooser is not None
        free = [i for i in pool if i.state is _READY and i.running < i.slots]
        if not free:
            return None
        inst = self.chooser(task, free)
        if inst is None:
            return None
        parts = self._parts(task, cap, inst)
        total = self._total(parts)
        return Choice(inst, total, parts, ((inst.id, total, parts),))

    def score(self, task: AgentTask, inst: AgentInstance) -> tuple[float, dict[str, float]]:
        """The score of one instance for one task, with its parts (for explanations)."""
        parts = self._parts(task, task.capability, inst)
        w = self.weights
        total = (
            w.capability * parts[0]
            + w.fit * parts[1]
            + w.load * parts[2]
            + w.success * parts[3]
            + w.speed * parts[4]
        )
        return total, dict(zip(SCORE_PARTS, parts, strict=True))

    def _parts(
        self, task: AgentTask, cap: str, inst: AgentInstance, ref: float | None = None
    ) -> tuple[float, float, float, float, float]:
        """The score's parts for one instance; ``ref`` is the capability's mean duration."""
        spec = inst.spec
        prof = self.learning.proficiency(spec.name, cap, spec.capabilities[cap])
        fit = 1.0 - (task.complexity - prof if task.complexity > prof else 0.0)
        load = 1.0 - inst.running / inst.slots
        success, mine = self.learning.estimate(spec.name, cap, spec.capabilities[cap])
        if mine is None:
            speed = 0.5
        else:
            if ref is None:
                ref = self.learning.capability_duration(cap) or mine
            speed = ref / (ref + mine) if ref + mine > 0 else 0.5
        return prof, fit, load, success, speed

    def _round_cache(
        self, version: int
    ) -> dict[tuple[AgentInstance, str, float], tuple[float, float, float, float]]:
        """The score parts cached for this round of estimates (``version``: the learning's).

        Cleared when the estimates move, and past a size: with learning frozen they never move,
        and task complexities are any floats, so the cache must not grow for ever.
        """
        cache = self._round
        if self._round_version != version or len(cache) > _ROUND_KEPT:
            cache.clear()
            self._round_version = version
        return cache

    def _best(self, task: AgentTask, cap: str, pool: Iterable[AgentInstance]) -> Choice | None:
        # The hot path of every decision: the parts of ``_parts`` are computed inline here
        # (same formulas), since a call per candidate costs more than the arithmetic.
        w = self.weights
        wc, wf, wl, ws, wv = w.capability, w.fit, w.load, w.success, w.speed
        learning = self.learning
        arms = learning.arms
        ps = learning.prior_strength
        kp = learning.capability_prior
        sample = learning.rng.betavariate if learning.mode == "thompson" else None
        ref = learning.capability_duration(cap)
        complexity = task.complexity
        limit = self.max_candidates
        # Between two outcomes the learned estimates do not change, so the parts that do not
        # depend on load are computed once per (instance, capability, complexity) and reused.
        cache = self._round_cache(learning.version) if sample is None else None
        scored: list[tuple[float, int, AgentInstance, tuple[float, float, float, float, float]]]
        scored = []
        for inst in pool:
            running = inst.running
            slots = inst.slots
            if inst.state is not _READY or running >= slots:
                continue
            load = 1.0 - running / slots
            key = (inst, cap, complexity)
            known = cache.get(key) if cache is not None else None
            if known is None:
                spec = inst.spec
                declared = prof = spec.capabilities[cap]
                a = 1.0 + ps * declared
                b = 1.0 + ps * (1.0 - declared)
                speed = 0.5
                arm = arms.get((spec.name, cap))
                if arm is not None:
                    ok, bad = arm.successes, arm.failures
                    a += ok
                    b += bad
                    # Evidence moves the proficiency too: a declared 0.95 that fails half
                    # the time stops outranking an honest 0.7 (see Learning.proficiency).
                    prof = (kp * declared + ok) / (kp + ok + bad)
                    if arm.durations:
                        mine = arm.mean_duration_s
                        r = ref or mine
                        speed = r / (r + mine) if r + mine > 0 else 0.5
                fit = 1.0 - (complexity - prof) if complexity > prof else 1.0
                success = sample(a, b) if sample is not None else a / (a + b)
                if cache is not None:
                    cache[key] = (prof, fit, success, speed)
            else:
                prof, fit, success, speed = known
            total = wc * prof + wf * fit + wl * load + ws * success + wv * speed
            scored.append((total, -len(scored), inst, (prof, fit, load, success, speed)))
            if len(scored) >= limit:
                break
        if not scored:
            return None
        if len(scored) > 1:
            scored.sort(key=_score_key, reverse=True)
        top = scored[0]
        cands = tuple([(s[2].id, s[0], s[3]) for s in scored[:3]])
        return Choice(top[2], top[0], top[3], cands)


def _score_key(s: tuple[float, int, AgentInstance, tuple[float, ...]]) -> tuple[float, int]:
    return s[0], s[1]


_READY = AgentState.READY
_LOST = AgentState.LOST
_ROUND_KEPT = 4096  # cached score parts of (instance, capability, complexity) at most
