"""Routing statistics learned from history, per (agent spec, capability).

Success is a Beta posterior whose prior comes from the declared proficiency; duration is a
running mean, and so is the cost (USD) of an attempt, from the usage its agent reported.
Success is also counted per complexity band (fifths of 0..1, in memory only), for the routing
objective that must know whether an agent is good enough for *this* task (``band``).
``success_estimate`` is the posterior mean (deterministic routing) or a Thompson
sample from a seeded ``random.Random`` (exploring routing).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from metaagent.core.repeats import PRIOR_FACTOR, expected_success, factor

RoutingMode = Literal["deterministic", "thompson"]


@dataclass(slots=True)
class ArmStats:
    """What has been seen of one (spec, capability) pair."""

    successes: int = 0
    failures: int = 0
    durations: int = 0
    mean_duration_s: float = 0.0
    costs: int = 0  # attempts that reported a cost
    mean_cost_usd: float = 0.0
    # Repeats: attempts on a task this spec had already failed (``core.routing.repeat``), their
    # successes, and the successes first tries would have had (the sum of their expected ``p``).
    repeats: int = 0
    repeat_successes: int = 0
    repeat_expected: float = 0.0

    @property
    def attempts(self) -> int:
        return self.successes + self.failures


class Learning:
    """Per (spec, capability) statistics; pure, fed by the scheduler after every attempt.

    ``prior_strength`` is how many pseudo-attempts the declared proficiency is worth.
    """

    __slots__ = (
        "_cap_duration", "_cap_unit", "_dirty", "_failed_units", "_repeats", "arm_version",
        "arms", "bands", "cap_version", "capability_prior", "changed",
        "frozen", "mode", "prior_strength", "rng", "units", "version",
    )  # fmt: skip

    def __init__(
        self,
        *,
        mode: RoutingMode = "deterministic",
        prior_strength: float = 2.0,
        rng: random.Random | None = None,
        frozen: bool = False,
        capability_prior: float = 4.0,
    ) -> None:
        if mode not in ("deterministic", "thompson"):
            raise ValueError(f"routing mode must be 'deterministic' or 'thompson', got {mode!r}")
        self.mode: RoutingMode = mode
        self.frozen = frozen  # a frozen model keeps its priors: routing that never learns
        self.prior_strength = prior_strength
        self.capability_prior = capability_prior
        self.rng = rng if rng is not None else random.Random(0)
        self.arms: dict[tuple[str, str], ArmStats] = {}
        self._cap_duration: dict[str, ArmStats] = {}
        self._dirty: set[tuple[str, str]] = set()
        # Durations per unit of complexity (``duration / (0.5 + complexity)``), as (count, mean):
        # what routing and ranking scale by a task's complexity. Kept in memory only; seeded
        # from the plain means of loaded statistics (taken as of complexity 0.5).
        self.units: dict[tuple[str, str], tuple[int, float]] = {}
        self._cap_unit: dict[str, tuple[int, float]] = {}
        self.cap_version: dict[str, int] = {}  # capability -> changes of its statistics
        self.arm_version: dict[tuple[str, str], int] = {}  # its capability's, at its last change
        # capability -> specs whose statistics changed, until the router takes them
        self.changed: dict[str, list[str]] = {}
        # (spec, capability) -> successes then failures per complexity band (2 * BANDS counts)
        self.bands: dict[tuple[str, str], list[int]] = {}
        self.version = 0  # bumped by every change, so caches of estimates know they are stale
        self._repeats = [0.0, 0.0]  # every spec's repeats: successes, expected successes
        # The failed attempts' share of ``units`` (and of the capability's, under key (cap, "")):
        # recorded on failures only, so the success-only mean costs a success nothing.
        self._failed_units: dict[tuple[str, str], tuple[int, float]] = {}

    def record(
        self,
        spec: str,
        capability: str,
        success: bool,
        duration_s: float | None,
        complexity: float = 0.5,
        cost_usd: float | None = None,
    ) -> int:
        """Add one attempt's outcome (``duration_s`` only for attempts that ran to an answer,
        of a task of ``complexity``; ``cost_usd`` when its agent reported what it cost); return
        how many durations the capability has seen."""
        if self.frozen:
            return 0
        self.version += 1
        key = (spec, capability)
        versions = self.cap_version
        self.arm_version[key] = versions[capability] = versions.get(capability, 0) + 1
        changed = self.changed.get(capability)
        if changed is None:
            self.changed[capability] = [spec]
        elif len(changed) < 64:
            changed.append(spec)
        self._dirty.add(key)
        arm = self.arms.get(key)
        if arm is None:
            arm = self.arms[key] = ArmStats()
        bands = self.bands.get(key)
        if bands is None:
            bands = self.bands[key] = [0] * (2 * BANDS)
        band = int(complexity * BANDS)  # ``band_of``, inline: this runs once per attempt
        band = BANDS - 1 if band >= BANDS else band if band > 0 else 0
        if success:
            arm.successes += 1
            bands[band] += 1
        else:
            arm.failures += 1
            bands[BANDS + band] += 1
        if cost_usd is not None and cost_usd >= 0 and math.isfinite(cost_usd):
            arm.costs += 1
            arm.mean_cost_usd += (cost_usd - arm.mean_cost_usd) / arm.costs
        if duration_s is not None:
            # Both running means, inline: this runs once per attempt.
            arm.durations = k = arm.durations + 1
            arm.mean_duration_s += (duration_s - arm.mean_duration_s) / k
            cap = self._cap_duration.get(capability)
            if cap is None:
                cap = self._cap_duration[capability] = ArmStats()
            cap.durations = k = cap.durations + 1
            cap.mean_duration_s += (duration_s - cap.mean_duration_s) / k
            unit = duration_s / (0.5 + complexity)
            if not success:
                failed = self._failed_units
                failed[key] = _add_unit(failed.get(key), unit)
                failed[(capability, "")] = _add_unit(failed.get((capability, "")), unit)
            units = self.units
            old = units.get(key)
            if old is None:
                units[key] = (1, unit)
            else:
                n = old[0] + 1
                units[key] = (n, old[1] + (unit - old[1]) / n)
            old = self._cap_unit.get(capability)
            if old is None:
                self._cap_unit[capability] = (1, unit)
                return 1
            n = old[0] + 1
            self._cap_unit[capability] = (n, old[1] + (unit - old[1]) / n)
            return n
        return 0

    def expected_success(
        self, spec: str, capability: str, declared: float, complexity: float
    ) -> float:
        """The success a first try of ``spec`` on a task of ``complexity`` is expected to have
        now (the router's ``p``, deterministic): what a repeat is measured against."""
        arm = self.arms.get((spec, capability))
        ok, bad = (0, 0) if arm is None else (arm.successes, arm.failures)
        prof = self.proficiency(spec, capability, declared)
        return expected_success(ok, bad, declared, self.prior_strength, complexity, prof)

    def success_unit(self, spec: str, capability: str) -> float | None:
        """The mean duration per unit of complexity of ``spec``'s *successful* attempts on
        ``capability``, else of the capability's, if any was seen: what a repeat is expected
        to take (an attempt that failed at once says nothing of how long a success takes)."""
        failed = self._failed_units
        for all_, bad in (
            (self.units.get((spec, capability)), failed.get((spec, capability))),
            (self._cap_unit.get(capability), failed.get((capability, ""))),
        ):
            if all_ is None:
                continue
            if bad is None:
                return all_[1]
            n = all_[0] - bad[0]
            if n > 0:
                return max((all_[0] * all_[1] - bad[0] * bad[1]) / n, 0.0)
        return None

    def record_repeat(self, spec: str, capability: str, success: bool, expected: float) -> None:
        """Add the outcome of a repeat (an attempt on a task ``spec`` had already failed) that
        a first try would have passed with probability ``expected`` (call with ``record``)."""
        if self.frozen:
            return
        key = (spec, capability)
        arm = self.arms.get(key)
        if arm is None:
            arm = self.arms[key] = ArmStats()
        arm.repeats += 1
        arm.repeat_successes += success
        arm.repeat_expected += expected
        pool = self._repeats
        pool[0] += success
        pool[1] += expected
        self._dirty.add(key)

    def repeat_factor(self, spec: str, capability: str) -> tuple[float, int]:
        """How much less often a repeat of ``spec`` succeeds than a first try (``factor`` of
        ``core.routing.repeat``; shrunk towards the pool's), and how many repeats it rests on."""
        ok, expected = self._repeats
        prior = factor(ok, expected, PRIOR_FACTOR)
        arm = self.arms.get((spec, capability))
        if arm is None or not arm.repeats:
            return prior, 0
        return factor(arm.repeat_successes, arm.repeat_expected, prior), arm.repeats

    def drain_dirty(self) -> set[tuple[str, str]]:
        """The (spec, capability) pairs updated since the last call (to persist them)."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def load(self, spec: str, capability: str, stats: ArmStats) -> None:
        """Seed statistics (for example from a journal of earlier runs)."""
        self.version += 1
        self.arm_version[(spec, capability)] = self.cap_version[capability] = (
            self.cap_version.get(capability, 0) + 1
        )
        self.arms[(spec, capability)] = stats
        if stats.repeats:
            self._repeats[0] += stats.repeat_successes
            self._repeats[1] += stats.repeat_expected
        if stats.durations:
            self.units[(spec, capability)] = (stats.durations, stats.mean_duration_s)
            self._cap_unit[capability] = _add_unit(
                self._cap_unit.get(capability), stats.mean_duration_s, stats.durations
            )
            cap = self._cap_duration.setdefault(capability, ArmStats())
            total = cap.mean_duration_s * cap.durations + stats.mean_duration_s * stats.durations
            cap.durations += stats.durations
            cap.mean_duration_s = total / cap.durations

    def proficiency(self, spec: str, capability: str, declared: float) -> float:
        """The declared proficiency moved by evidence: ``capability_prior`` pseudo-attempts at
        the declared level, plus every attempt seen (a success counts 1, a failure 0)."""
        arm = self.arms.get((spec, capability))
        if arm is None:
            return declared
        k = self.capability_prior
        return (k * declared + arm.successes) / (k + arm.successes + arm.failures)

    def success_estimate(self, spec: str, capability: str, proficiency: float) -> float:
        """Expected success probability (or a posterior sample in Thompson mode)."""
        a = 1.0 + self.prior_strength * proficiency
        b = 1.0 + self.prior_strength * (1.0 - proficiency)
        arm = self.arms.get((spec, capability))
        if arm is not None:
            a += arm.successes
            b += arm.failures
        if self.mode == "thompson":
            return self.rng.betavariate(a, b)
        return a / (a + b)

    def estimate(
        self, spec: str, capability: str, proficiency: float
    ) -> tuple[float, float | None]:
        """Success estimate (as ``success_estimate``) and mean duration, in one look-up."""
        ps = self.prior_strength
        a = 1.0 + ps * proficiency
        b = 1.0 + ps * (1.0 - proficiency)
        arm = self.arms.get((spec, capability))
        mean = None
        if arm is not None:
            a += arm.successes
            b += arm.failures
            if arm.durations:
                mean = arm.mean_duration_s
        if self.mode == "thompson":
            return self.rng.betavariate(a, b), mean
        return a / (a + b), mean

    def duration(self, spec: str, capability: str) -> float | None:
        """Mean observed duration of this spec on this capability, if any was seen."""
        arm = self.arms.get((spec, capability))
        return arm.mean_duration_s if arm is not None and arm.durations else None

    def capability_duration(self, capability: str) -> float | None:
        """Mean observed duration of any agent on this capability, if any was seen."""
        cap = self._cap_duration.get(capability)
        return cap.mean_duration_s if cap is not None and cap.durations else None

    def unit_duration(self, spec: str, capability: str) -> float | None:
        """Mean duration per unit of complexity of this spec on this capability, if seen."""
        unit = self.units.get((spec, capability))
        return unit[1] if unit is not None else None

    def cost(self, spec: str, capability: str) -> float | None:
        """Mean cost (USD) of an attempt of this spec on this capability, if any was reported."""
        arm = self.arms.get((spec, capability))
        return arm.mean_cost_usd if arm is not None and arm.costs else None

    def band(self, spec: str, capability: str, complexity: float) -> tuple[float, float] | None:
        """The successes and failures of this spec on tasks of about this ``complexity`` (its
        band, and the bands beside it at half weight), if any attempt was seen."""
        counts = self.bands.get((spec, capability))
        return None if counts is None else band_counts(counts, band_of(complexity))

    def capability_samples(self, capability: str) -> int:
        """How many durations of ``capability`` its unit duration rests on."""
        unit = self._cap_unit.get(capability)
        return unit[0] if unit is not None else 0

    def capability_unit(self, capability: str) -> float | None:
        """Mean duration per unit of complexity of any agent on this capability, if seen:
        a task of complexity ``c`` is expected to take ``(0.5 + c)`` times this."""
        unit = self._cap_unit.get(capability)
        return unit[1] if unit is not None else None


BANDS = 10  # complexity bands: [0, 0.1), [0.1, 0.2), ... [0.9, 1]


def band_of(complexity: float) -> int:
    """The complexity band of a task (``BANDS`` of them over 0..1)."""
    k = int(complexity * BANDS)
    return BANDS - 1 if k >= BANDS else max(k, 0)


def band_counts(counts: list[int], band: int) -> tuple[float, float]:
    """The successes and failures of ``band``, with those of the bands beside it at half
    weight (see ``band``)."""
    ok = float(counts[band])
    bad = float(counts[BANDS + band])
    for k in (band - 1, band + 1):
        if 0 <= k < BANDS:
            ok += 0.5 * counts[k]
            bad += 0.5 * counts[BANDS + k]
    return ok, bad


def _add_unit(old: tuple[int, float] | None, value: float, weight: int = 1) -> tuple[int, float]:
    if old is None:
        return weight, value
    n, mean = old
    total = n + weight
    return total, mean + (value - mean) * weight / total
