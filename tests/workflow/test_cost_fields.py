"""Cost-aware routing in files: an agent's ``cost_per_call_usd`` and ``settings.routing`` in a
workflow and a simulation file, what loads and the errors that name the place; a simulation
whose attempts report a cost and fail more on hard tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from metaagent.core.routing.weights import RoutingWeights
from metaagent.errors import WorkflowError
from metaagent.sim.driver import Simulation
from metaagent.sim.loading import parse_simulation
from metaagent.sim.spec import Profile
from metaagent.workflow.settings import orchestrator_config
from tests.workflow.test_budget_fields import load

if TYPE_CHECKING:
    from pathlib import Path


def test_a_declared_cost_and_the_routing_objective_load(tmp_path: Path) -> None:
    routing = {"mode": "thompson", "objective": "cheapest_meeting", "quality_target": 0.9,
               "cost_weight": 50}  # fmt: skip
    wf = load(agent={"cost_per_call_usd": 0.02}, settings={"routing": routing})
    assert wf.agents[0].cost_per_call_usd == 0.02
    config = orchestrator_config(wf.settings, workdir=tmp_path, task_count=1)
    assert config.routing == "thompson"
    assert config.weights == RoutingWeights(
        objective="cheapest_meeting", quality_target=0.9, cost=50.0
    )
    assert config.scheduler_config().weights is config.weights


# settings.routing -> (mode, weights)
ROUTING = [
    (None, "deterministic", RoutingWeights()),
    ("thompson", "thompson", RoutingWeights()),  # a mode alone, as before
    ({"objective": "cheapest_meeting"}, "deterministic",
     RoutingWeights(objective="cheapest_meeting")),  # quality_target 0.95 by default
    ({"cost_weight": 0}, "deterministic", RoutingWeights()),
]  # fmt: skip


@pytest.mark.parametrize(("routing", "mode", "weights"), ROUTING)
def test_routing_defaults_to_earliest_finish_and_a_mode_alone_still_loads(
    tmp_path: Path, routing: object, mode: str, weights: RoutingWeights
) -> None:
    wf = load(settings={} if routing is None else {"routing": routing})
    config = orchestrator_config(wf.settings, workdir=tmp_path, task_count=1)
    assert (config.routing, config.weights) == (mode, weights)
    assert config.weights.objective == weights.objective


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"agent": {"cost_per_call_usd": -1}}, "agents[0] (name 'a').cost_per_call_usd"),
        ({"agent": {"cost_per_call_usd": float("inf")}}, "agents[0] (name 'a').cost_per_call_usd"),
        ({"agent": {"cost_per_call_usd": "cheap"}}, "agents[0] (name 'a').cost_per_call_usd"),
        ({"settings": {"routing": "fastest"}}, "settings.routing.mode"),
        ({"settings": {"routing": {"objective": "cheapest"}}}, "settings.routing.objective"),
        ({"settings": {"routing": {"quality_target": 0}}}, "settings.routing.quality_target"),
        ({"settings": {"routing": {"quality_target": 1.01}}}, "settings.routing.quality_target"),
        ({"settings": {"routing": {"cost_weight": -2}}}, "settings.routing.cost_weight"),
        ({"settings": {"routing": {"target": 0.9}}}, "settings.routing.target"),
    ],
)
def test_bad_costs_and_routing_settings_are_named(parts: dict[str, object], message: str) -> None:
    with pytest.raises(WorkflowError) as err:
        load(**parts)
    assert message in str(err.value)


def test_a_declared_price_is_part_of_the_workflows_identity_only_when_given() -> None:
    from dataclasses import replace

    from metaagent.workflow.identity import _canon, batch_key

    spec = load().agents[0]
    assert "cost_per_call_usd" not in _canon(spec)  # type: ignore[operator]  # keys of older runs
    priced = replace(spec, cost_per_call_usd=0.01)
    assert _canon(priced)["cost_per_call_usd"] == 0.01  # type: ignore[index]
    assert batch_key("w", [], "/w", [spec]) != batch_key("w", [], "/w", [priced])


# --- the simulator ------------------------------------------------------------------------------

# (complexity, failure_rate, failure_growth, failure_from) -> chance of failure
FAILURE = [
    (0.2, 0.01, 2.0, 0.4, 0.01),  # below the knee: the base rate
    (0.5, 0.01, 2.0, 0.4, 0.21),
    (0.9, 0.01, 2.0, 0.4, 1.0),  # capped at 1
    (0.9, 0.05, 0.0, 0.0, 0.05),  # no growth: flat
]


@pytest.mark.parametrize(("c", "rate", "growth", "knee", "failure"), FAILURE)
def test_a_profile_fails_more_on_harder_tasks(
    c: float, rate: float, growth: float, knee: float, failure: float
) -> None:
    assert Profile(failure_rate=rate, failure_growth=growth, failure_from=knee).failure_at(
        c
    ) == pytest.approx(failure)


SIM = {
    "name": "tiers",
    "settings": {"routing": {"objective": "cheapest_meeting", "quality_target": 0.9}},
    "agents": [
        {"name": "cheap", "capabilities": {"x": 0.9}, "cost_per_call_usd": 0.001},
        {"name": "strong", "capabilities": {"x": 0.9}, "cost_per_call_usd": 0.02},
    ],
    "profiles": [
        {"agent": "cheap", "cost_usd": 0.001, "failure_growth": 10.0, "failure_from": 0.5},
        {"agent": "strong", "cost_usd": 0.02},
    ],
    "tasks": [{"id": f"t{i}", "capability": "x", "complexity": c}
              for i, c in enumerate([0.1] * 6 + [0.9] * 6)],
}  # fmt: skip


def test_a_simulation_reports_each_attempts_cost_and_routing_learns_it(tmp_path: Path) -> None:
    spec = parse_simulation(SIM, base_dir=tmp_path)
    assert spec.settings.weights == RoutingWeights(objective="cheapest_meeting", quality_target=0.9)
    assert spec.profile("cheap", "x").failure_at(0.9) == 1.0
    sim = Simulation(spec)
    result = sim.run()
    attempts = [a for rec in sim.scheduler.runs["sim"].tasks.values() for a in rec.attempts]
    billed = sum(a.usage.cost_usd for a in attempts if a.usage and a.usage.cost_usd)
    assert result.cost_usd == pytest.approx(billed)
    assert all(a.usage is not None for a in attempts)
    by_agent = {a.agent: a.usage.cost_usd for a in attempts if a.usage}
    assert by_agent == {"cheap": 0.001, "strong": 0.02}
    learning = sim.scheduler.learning
    assert learning.cost("cheap", "x") == pytest.approx(0.001)
    assert result.to_json()["cost_usd"] == round(result.cost_usd, 6)
    assert result.success_rate == 1.0  # the hard tasks' failures on cheap are retried elsewhere


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"settings": {"routing": {"quality_target": 2}}}, "settings.routing.quality_target"),
        ({"profiles": [{"agent": "cheap", "cost_usd": -1}]}, "profiles.0.cost_usd"),
        ({"profiles": [{"agent": "cheap", "failure_from": 1.5}]}, "profiles.0.failure_from"),
    ],
)
def test_bad_simulation_costs_are_named(
    tmp_path: Path, patch: dict[str, object], message: str
) -> None:
    with pytest.raises(WorkflowError) as err:
        parse_simulation({**SIM, **patch}, base_dir=tmp_path)
    assert message in str(err.value).replace("[", ".").replace("]", "")
