"""Learning: success posteriors seeded by proficiency, seeded exploration, duration means."""

from __future__ import annotations

import random

import pytest

from metaagent.core.learning import ArmStats, Learning


def test_prior_mean_comes_from_the_declared_proficiency() -> None:
    ln = Learning(prior_strength=2.0)
    # Beta(1 + 2 * 0.8, 1 + 2 * 0.2) has mean 2.6 / 4.
    assert ln.success_estimate("a", "code", 0.8) == pytest.approx(0.65)
    assert ln.success_estimate("a", "code", 0.0) == pytest.approx(0.25)


def test_posterior_mean_moves_with_successes_and_failures() -> None:
    ln = Learning(prior_strength=2.0)
    prior = ln.success_estimate("a", "code", 0.5)
    assert prior == 0.5
    ln.record("a", "code", True, 1.0)
    up = ln.success_estimate("a", "code", 0.5)
    assert up == pytest.approx(3 / 5)
    ln.record("a", "code", False, None)
    ln.record("a", "code", False, None)
    down = ln.success_estimate("a", "code", 0.5)
    assert down == pytest.approx(3 / 7)
    assert down < prior < up
    assert ln.arms[("a", "code")].attempts == 3
    # Statistics are per (spec, capability).
    assert ln.success_estimate("a", "test", 0.5) == 0.5
    assert ln.success_estimate("b", "code", 0.5) == 0.5


def test_many_outcomes_outweigh_the_prior() -> None:
    ln = Learning()
    for _ in range(98):
        ln.record("a", "code", False, None)
    assert ln.success_estimate("a", "code", 1.0) < 0.05


def test_thompson_mode_is_deterministic_for_a_seed() -> None:
    def samples(seed: int) -> list[float]:
        ln = Learning(mode="thompson", rng=random.Random(seed))
        ln.record("a", "code", True, None)
        return [ln.success_estimate("a", "code", 0.6) for _ in range(20)]

    first = samples(7)
    assert first == samples(7)
    assert first != samples(8)
    assert all(0.0 < x < 1.0 for x in first)
    assert len(set(first)) > 1  # it explores: samples differ


def test_thompson_samples_centre_on_the_posterior_mean() -> None:
    ln = Learning(mode="thompson", rng=random.Random(1))
    for _ in range(30):
        ln.record("a", "code", True, None)
    for _ in range(10):
        ln.record("a", "code", False, None)
    mean = Learning().success_estimate("a", "code", 0.5)  # prior only, for contrast
    draws = [ln.success_estimate("a", "code", 0.5) for _ in range(2000)]
    expected = 31 / 42
    assert sum(draws) / len(draws) == pytest.approx(expected, abs=0.01)
    assert mean == 0.5


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="routing mode must be"):
        Learning(mode="greedy")  # type: ignore[arg-type]


def test_durations_are_running_means_per_agent_and_per_capability() -> None:
    ln = Learning()
    assert ln.duration("a", "code") is None
    assert ln.capability_duration("code") is None
    for d in (1.0, 2.0, 6.0):
        ln.record("a", "code", True, d)
    ln.record("a", "code", False, None)  # no answer: no duration
    ln.record("b", "code", True, 13.0)
    assert ln.duration("a", "code") == pytest.approx(3.0)
    assert ln.duration("b", "code") == pytest.approx(13.0)
    assert ln.capability_duration("code") == pytest.approx(5.5)  # (1 + 2 + 6 + 13) / 4
    assert ln.duration("a", "test") is None
    arm = ln.arms[("a", "code")]
    assert (arm.successes, arm.failures, arm.durations) == (3, 1, 3)


def test_loaded_statistics_seed_estimates_and_capability_means() -> None:
    ln = Learning()
    ln.record("a", "code", True, 2.0)
    ln.load("b", "code", ArmStats(successes=8, failures=2, durations=3, mean_duration_s=6.0))
    assert ln.success_estimate("b", "code", 0.5) == pytest.approx(10 / 14)  # Beta(1+1+8, 1+1+2)
    assert ln.duration("b", "code") == 6.0
    assert ln.capability_duration("code") == pytest.approx(5.0)  # (2 + 3 * 6) / 4
