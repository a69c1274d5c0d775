"""Choosing the agent for a task: earliest expected finish over every capable spec.

For a ready task, every spec that offers its capability (at or above the task's
``min_proficiency``) is a candidate, busy ones included. Each gets a *cost* in seconds, a sum
of weighted parts (``SCORE_PARTS``), and the cheapest wins; the decision's ``score`` is minus
that cost, so a higher score is better:

- ``wait``: expected start minus now: 0 with a free slot, else when its first slot frees (the
  earliest expected end of its running attempts, each started at its expected duration);
- ``run``: expected duration: learned per spec and capability, per unit of complexity
  (``duration / (0.5 + complexity)``), times ``0.5 + complexity``; the task's own
  ``estimate_s`` instead when given (times the spec's learned speed against the capability's);
- ``retry``: ``run * (1 - p) / p``, where ``p`` is the expected success (learned Beta posterior
  times the fit of a hard task to a weak agent): ``run + retry = run / p`` is the expected time
  until a success if failed attempts were repeated alike; on a task's last attempt, when a
  failure fails the task, it counts ten times;
- ``scarcity``: the delay taking this spec costs other work: ``run`` times its pressure
  (``scarcity``: over its other capabilities, its share of their slots times the
  share of the time ahead their work needs of them): the sole auditor taking code costs the
  code's duration when audits keep it busy until the pool runs out of work, half when half;
- ``penalty``: a retry on a spec that failed the task pays the back-off again, and its ``p``
  is a repeat's, ``factor * p`` (soft fallback, priced, not forbidden: ``core.routing.repeat``);
- ``success``: ``p`` itself, weight 0 by default: shown in the breakdown;
- ``cost``: the expected cost of an attempt (USD): the mean ``cost_usd`` its attempts reported,
  else the declared ``cost_per_call_usd``, else 0 (free). Weight 0 by default (shown only).

The objective ``cheapest_meeting`` orders the candidates by price among those expected to
succeed often enough (see ``core.routing.order``).

A busy spec that wins means the task *waits* for it: it stays queued, and the spec's next slot
is claimed for the round, so the next task sees the slot after. A free spec wins when it is
cheaper than waiting. Another part adds one name to ``SCORE_PARTS`` and one weight.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metaagent.core.decisions import SCORE_PARTS, Candidate
from metaagent.core.instances import AgentInstance, AgentState
from metaagent.core.learning import band_of
from metaagent.core.routing.order import banded, cheapest_first, ranked
from metaagent.core.routing.repeat import collect, reprice
from metaagent.core.routing.round import RoundScores
from metaagent.core.routing.scarcity import pressure, work_ahead
from metaagent.core.routing.weights import RoutingWeights
from metaagent.core.spec_entry import SpecEntry
from metaagent.core.tasks import TaskState

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

    from metaagent.core.learning import Learning
    from metaagent.core.routing.repeat import Repeat
    from metaagent.core.tasks import AgentTask

__all__ = ["Choice", "Chooser", "Router", "RoutingWeights", "SpecEntry"]

_MIN_SUCCESS = 0.02  # expected success is never taken below this (costs stay finite)
_FINAL = (1.0, 10.0)  # on a task's last attempt its expected retry time counts ten times
_MIN_RUN_S = 1e-6  # nor a duration below this (instant agents still differ in success)


Parts = tuple[float, float, float, float, float, float, float]


@dataclass(slots=True)
class Choice:
    """The outcome of one routing decision: the winning spec, the instance to start on now
    (``None``: the task waits for the busy winner), the runners-up it beat.

    ``affinity`` is true when the group's previous instance was taken over a slightly cheaper one.
    """

    instance: AgentInstance | None
    entry: SpecEntry
    score: float
    parts: Parts
    ranked: tuple[tuple[str, float, tuple[float, ...]], ...]  # (agent, score, parts)
    duration_s: float
    affinity: bool = False
    free_alternative: str | None = None  # cheapest free spec, when the winner is busy
    met: bool | None = None  # cheapest_meeting: whether the winner reaches the target
    repeats: tuple[Repeat, ...] = ()  # a retry's failed specs, as scored (``repeat.collect``)

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(Candidate(*c) for c in self.ranked)


Chooser = Callable[["AgentTask", "Sequence[AgentInstance]"], "AgentInstance | None"]
"""A routing policy that replaces scoring (baselines: random, round-robin, an oracle...)."""


class Router:
    """Specs by capability, scored per spec from learned statistics, then a free instance.

    Every spec offering the capability is scored (no candidate cap): specs, not instances, are
    what learning knows, and a pool has few specs even when it has many instances.
    """

    __slots__ = (
        "_all_slots", "_bands", "_by_cap", "_cheapest", "_claimed", "_entries", "_free",
        "_horizon", "_least", "_prunable", "_seq", "_slots", "_static_cache", "chooser",
        "learning", "pending", "round", "waiting", "weights",
    )  # fmt: skip

    def __init__(
        self,
        learning: Learning,
        weights: RoutingWeights | None = None,
        chooser: Chooser | None = None,
    ) -> None:
        self.chooser = chooser
        self.learning = learning
        self.weights = w = weights or RoutingWeights()
        # The bound prunes only when no part can lower a cost (every weight non-negative), and
        # not for Thompson samples.
        least = min(w.wait, w.run, w.retry, w.scarcity, w.penalty, w.success, w.cost)
        self._prunable = least >= 0 and learning.mode != "thompson"
        self._cheapest = cheapest = w.objective == "cheapest_meeting"
        self._bands = learning.bands if cheapest else None  # success per complexity band
        self._least = min(w.run, w.retry)
        self._entries: dict[str, SpecEntry] = {}
        self._by_cap: dict[str, list[SpecEntry]] = {}
        self._free: dict[str, int] = {}  # capability -> free slots of ready instances
        self._slots: dict[str, int] = {}  # capability -> slots of live instances
        self._claimed: list[SpecEntry] = []  # entries with claims this round
        self._static_cache: dict[str, tuple[int, float, list[_Static]]] = {}
        self._seq = 0
        self._horizon: float | None = None  # the work ahead per slot, once per round
        self._all_slots = 0
        self.round = RoundScores(learning)  # scores reused within a dispatch round
        # Work per capability, for scarcity: set by the scheduler to its live counters.
        self.waiting: Mapping[str, int] = {}
        self.pending: Mapping[str, int] = {}

    # --- the index ----------------------------------------------------------------------------

    def add(self, inst: AgentInstance) -> None:
        spec = inst.spec
        entry = self._entries.get(spec.name)
        if entry is None:
            entry = self._entries[spec.name] = SpecEntry(spec)
            for cap in spec.capabilities:
                self._by_cap.setdefault(cap, []).append(entry)
                self._static_cache.pop(cap, None)
        entry.instances[inst] = None
        entry.slots += inst.slots
        self._all_slots += inst.slots
        for cap in spec.capabilities:
            self._slots[cap] = self._slots.get(cap, 0) + inst.slots
            self._free[cap] = self._free.get(cap, 0)
        self.adjust_free(inst, inst.free)

    def remove(self, inst: AgentInstance) -> None:
        """Drop an instance from the index (call after its slots are no longer counted)."""
        entry = self._entries.get(inst.spec.name)
        if entry is None or entry.instances.pop(inst, False) is False:
            return
        entry.free_insts.pop(inst, None)
        entry.slots -= inst.slots
        self._all_slots -= inst.slots
        for cap in inst.spec.capabilities:
            self._slots[cap] -= inst.slots
        if entry.instances:
            return
        del self._entries[entry.name]
        for cap in inst.spec.capabilities:
            self._static_cache.pop(cap, None)
            specs = self._by_cap[cap]
            specs.remove(entry)
            if not specs:
                for index in (self._by_cap, self._free, self._slots):
                    index.pop(cap, None)

    def adjust_free(self, inst: AgentInstance, delta: int) -> None:
        """Tell the index that ``inst`` gained (+) or lost (-) free slots (call after the
        instance's state or running count changed)."""
        free = self._free
        for cap in inst.spec.capabilities:
            free[cap] += delta
        entry = self._entries.get(inst.spec.name)
        if entry is None or inst not in entry.instances:
            return
        entry.free += delta
        if inst.state is _READY and inst.running < inst.slots:
            entry.free_insts[inst] = None
        else:
            entry.free_insts.pop(inst, None)

    def started(
        self, inst: AgentInstance, rec: object, attempt: int, now: float, run_s: float
    ) -> None:
        """An attempt started on ``inst`` at ``now``, expected to take ``run_s``."""
        entry = self._entries.get(inst.spec.name)
        if entry is None:
            return
        self._seq += 1
        ends = entry.ends
        if len(ends) > 2 * entry.slots + 16:  # stale entries of ended attempts: compact
            ends[:] = [e for e in ends if e[2].state is _RUNNING and e[2].attempt == e[3]]  # type: ignore[attr-defined]
            heapq.heapify(ends)
        heapq.heappush(ends, (now + run_s, self._seq, rec, attempt, run_s))

    def begin_round(self) -> None:
        """Forget the claims of the last dispatch round."""
        for entry in self._claimed:
            entry.claims = None
        self._claimed.clear()
        self._horizon = None

    def capabilities(self) -> list[str]:
        return sorted(self._by_cap)

    def serves(self, capability: str) -> bool:
        return capability in self._by_cap

    def has_free(self, capability: str) -> bool:
        return self._free.get(capability, 0) > 0

    def free(self, capability: str) -> int:
        """Free slots of ready instances that offer ``capability``."""
        return self._free.get(capability, 0)

    def slots(self, capability: str) -> int:
        return self._slots.get(capability, 0)

    def instances(self, capability: str) -> list[AgentInstance]:
        return list(self.members(capability))

    def members(self, capability: str) -> Iterable[AgentInstance]:
        """The instances of ``capability``, spec by spec (do not change the index meanwhile)."""
        for entry in self._by_cap.get(capability, ()):
            yield from entry.instances

    def specs_for(self, capability: str) -> set[str]:
        """The specs with an instance (not lost) that offers ``capability``."""
        return {e.name for e in self._by_cap.get(capability, ())}

    def entries_for(self, capability: str) -> Sequence[SpecEntry]:
        return self._by_cap.get(capability, ())

    def entry(self, spec: str) -> SpecEntry:
        return self._entries[spec]

    # --- the choice ---------------------------------------------------------------------------

    def route(
        self,
        task: AgentTask,
        now: float,
        avoid: Collection[str] = (),
        penalty_s: float = 0.0,
        prefer: AgentInstance | None = None,
        margin: float = 0.0,
        floor: float = 0.0,
        final: bool = False,
    ) -> Choice | None:
        """The cheapest spec for ``task`` and a free instance of it (or ``None`` as instance:
        wait for the busy winner); ``None`` when no candidate can start at all.

        ``avoid`` names specs that failed this task: they cost ``penalty_s`` more. ``prefer``
        (affinity) is taken when it is free and its spec costs at most ``margin`` (a share)
        more than the best. ``floor`` is the lowest declared proficiency allowed.
        """
        cap = task.capability
        if self._free.get(cap, 0) <= 0:
            return None
        if self.chooser is not None:
            from metaagent.core.routing.chooser import chosen

            return chosen(self, task, avoid, floor)
        cheapest = self._cheapest
        prune = not avoid and not cheapest
        scored = self.round.scores(self, task, now, avoid, penalty_s, floor, prune, final)
        if avoid:
            scored = reprice(self, scored, task, avoid, penalty_s, _FINAL[final], _MIN_SUCCESS)
        repeats = collect(self.learning, scored, avoid, cap) if avoid else ()
        if not scored:
            return None
        met = None
        if cheapest:
            scored, met = cheapest_first(scored, self.weights.quality_target)
        best = scored[0]
        entry = best[2]
        if entry.free > 0:
            inst = next(iter(entry.free_insts))
            if cheapest and prefer is not None and prefer in entry.free_insts:
                inst = prefer  # the group's instance, when it is of the cheapest spec
            choice = Choice(inst, entry, best[0], best[3], self.round.ranked(scored, inst),
                            best[3][1], False, None, met, repeats)  # fmt: skip
            if prefer is not None and prefer is not inst and not cheapest:
                return self._affinity(choice, scored, prefer, margin)
            return choice
        alt = None
        if self._free.get(cap, 0) > 0:  # a free spec lost to waiting (scored or not)
            alt = next((e.name for e in self._by_cap[cap] if e.free > 0), None)
        return Choice(None, entry, best[0], best[3], ranked(scored, None), best[3][1], False, alt,
                      met, repeats)  # fmt: skip

    def claim(self, choice: Choice, now: float) -> None:
        """The task of ``choice`` waits for its (busy) winner: claim its next slot."""
        entry = choice.entry
        if entry.claims is None:
            self._claimed.append(entry)
        entry.claim(now, choice.duration_s)
        self.round.moved()

    def _affinity(
        self,
        choice: Choice,
        scored: list[tuple[float, int, SpecEntry, Parts]],
        prefer: AgentInstance,
        margin: float,
    ) -> Choice:
        if prefer.state is not _READY or prefer.running >= prefer.slots:
            return choice
        for score, _, entry, parts in scored:
            if prefer in entry.free_insts:
                best = -choice.score
                if -score <= best * (1.0 + margin) + 1e-9:
                    return Choice(prefer, entry, score, parts, choice.ranked, parts[1],
                                  entry is not choice.entry, repeats=choice.repeats)  # fmt: skip
                return choice
        return choice

    def _static(self, cap: str) -> list[_Static]:
        """The capability's specs with what learning says of them, cheapest bound first:
        ``(bound, a, b, proficiency, unit, entry)``, where ``a, b`` is the Beta posterior of
        success and ``unit`` the duration per unit of complexity. Kept between calls: when
        the capability learns, only the rows of the specs that changed are computed again
        (and those without a duration of their own when the capability's mean moved by more
        than 5%), and the nearly sorted list is sorted again."""
        learning = self.learning
        version = learning.cap_version.get(cap, 0)
        cached = self._static_cache.get(cap)
        if cached is not None and cached[0] == version:
            return cached[2]
        cap_unit = _or_one(learning.capability_unit(cap))
        names = learning.changed.pop(cap, None)
        if cached is None:
            rows = [self._row(entry, cap, cap_unit) for entry in self._by_cap.get(cap, ())]
        else:
            seen, old_unit, rows = cached[0], cached[1], cached[2]
            units = learning.units
            if abs(cap_unit - old_unit) <= 0.05 * old_unit:
                # Specs with no duration of their own keep the capability's mean until it
                # moves by more than 5%: their rows are not rebuilt at every result.
                cap_unit = old_unit
            if old_unit != cap_unit or names is None or len(names) >= 64:
                changed = learning.arm_version  # every row that may have moved
                for i, row in enumerate(rows):
                    key = (row[5].name, cap)
                    if changed.get(key, 0) > seen:
                        rows[i] = self._row(row[5], cap, cap_unit)
                    elif old_unit != cap_unit and key not in units:  # rescaled, not rebuilt
                        mine = max(cap_unit, _MIN_RUN_S)
                        rows[i] = (row[0] * mine / row[4], row[1], row[2], row[3], mine,
                                   *row[5:])  # fmt: skip
            else:  # only the specs that learned: O(changed) look-ups, then a near-sorted sort
                moved = set(names)
                for i, row in enumerate(rows):
                    if row[5].name in moved:
                        rows[i] = self._row(row[5], cap, cap_unit)
        rows.sort(key=_bound_key)
        self._static_cache[cap] = (version, cap_unit, rows)
        return rows

    def _row(self, entry: SpecEntry, cap: str, cap_unit: float) -> _Static:
        learning = self.learning
        ps = learning.prior_strength
        declared = entry.spec.capabilities[cap]
        a = 1.0 + ps * declared
        b = 1.0 + ps * (1.0 - declared)
        prof = declared
        arm = learning.arms.get((entry.name, cap))
        if arm is not None:
            ok, bad = arm.successes, arm.failures
            a += ok
            b += bad
            kp = learning.capability_prior
            prof = (kp * declared + ok) / (kp + ok + bad)
        unit = learning.units.get((entry.name, cap))
        mine = max(unit[1] if unit is not None else cap_unit, _MIN_RUN_S)
        if arm is not None and arm.costs:
            price = arm.mean_cost_usd  # learned: what its attempts reported
        else:
            price = entry.spec.cost_per_call_usd or 0.0  # declared, else taken as free
        return (mine * (a + b) / a, a, b, prof, mine, entry, a / (a + b),
                len(entry.spec.capabilities) > 1, price)  # fmt: skip

    def _score(
        self,
        task: AgentTask,
        cap: str,
        now: float,
        avoid: Collection[str],
        penalty_s: float,
        floor: float,
        prune: bool = True,
        final: bool = False,
    ) -> list[tuple[float, int, SpecEntry, Parts]]:
        """The candidate specs' scores (minus their costs) and parts, best first.

        Specs are visited cheapest bound first (duration per unit over expected success: no
        cost can be below it, since waiting, scarcity, penalties and price only add), and the
        visit stops when the bound passes the second-best cost found (the runner-up is shown):
        every spec is considered, none is scored in full once it cannot place. Thompson
        sampling and ``cheapest_meeting`` score them all.
        """
        w = self.weights
        ww, wr, wsc, wp, wsu, wc = w.wait, w.run, w.scarcity, w.penalty, w.success, w.cost
        wy = w.retry * _FINAL[final]  # on the last attempt a failure fails the task
        learning = self.learning
        sample = learning.rng.betavariate if learning.mode == "thompson" else None
        cap_unit = _or_one(learning.capability_unit(cap))
        complexity = task.complexity
        estimate = task.estimate_s
        factor = 0.5 + complexity if estimate is None else estimate / cap_unit
        prune = prune and self._prunable
        least = factor * self._least if prune else 0.0
        pressure = self._pressure
        best = second = _INF  # the two lowest costs so far: the runner-up is kept too
        scored: list[tuple[float, int, SpecEntry, Parts]] = []
        bands = self._bands
        band = band_of(complexity)
        for bound, a, b, prof, mine, entry, mean_p, multi, price in self._static(cap):
            if prune and bound * least - wsu >= second:
                break
            if floor and entry.spec.capabilities[cap] < floor:
                continue
            if entry.free > 0:
                wait = 0.0
            else:
                start = entry.next_free(now)
                if start is None:
                    continue
                wait = start - now
            run = mine * factor
            p = sample(a, b) if sample is not None else mean_p
            if complexity > prof:
                p *= 1.0 - (complexity - prof)  # the fit of a hard task to a weak agent
            if bands is not None:
                p = banded(p, bands.get((entry.name, cap)), band, learning.prior_strength,
                           sample)  # fmt: skip
            p = max(p, _MIN_SUCCESS)
            retry = run * (1.0 - p) / p
            scarce = run * pressure(entry, cap) if multi else 0.0
            penalty = 0.0  # a repeat is priced afterwards (``core.routing.repeat.reprice``)
            cost = (ww * wait + wr * run + wy * retry + wsc * scarce + wp * penalty - wsu * p
                    + wc * price)  # fmt: skip
            if cost < second:
                if cost < best:
                    best, second = cost, best
                else:
                    second = cost
            scored.append(
                (-cost, -len(scored), entry, (wait, run, retry, scarce, penalty, p, price))
            )
        if len(scored) > 1:
            scored.sort(reverse=True)  # (score, -index) are unique: entries are never compared
        return scored

    def _pressure(self, entry: SpecEntry, cap: str) -> float:
        """Scarcity's pressure on ``entry`` from its other work (``scarcity``); the
        pool's work ahead is computed once per round."""
        unit = self.learning.capability_unit
        horizon = self._horizon
        if horizon is None:
            horizon = self._horizon = work_ahead(self.waiting, self.pending, unit, self._all_slots)
        return pressure(entry, cap, self.waiting, self.pending, self._slots, unit, horizon)

    def score(self, task: AgentTask, spec: str, now: float) -> tuple[float, dict[str, float]]:
        """The score of one spec for one task, with its parts (for explanations)."""
        for s in self._score(task, task.capability, now, (), 0.0, 0.0, prune=False):
            if s[2].name == spec:
                return s[0], dict(zip(SCORE_PARTS, s[3], strict=True))
        raise KeyError(f"{spec!r} is not a candidate for {task.capability!r} now")


_Static = tuple[float, float, float, float, float, SpecEntry, float, bool, float]


def _bound_key(row: _Static) -> float:
    return row[0]


_INF = float("inf")
_READY = AgentState.READY
_RUNNING = TaskState.RUNNING


def _or_one(unit: float | None) -> float:
    """A capability's unit duration, 1 s when nothing is learned (a learned 0 stays 0)."""
    return 1.0 if unit is None else unit
