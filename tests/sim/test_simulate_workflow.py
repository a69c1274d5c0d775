"""``metaagent simulate`` on workflow files, simulation-file semantics of duration_s and
estimate_s, and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metaagent.cli.app import app
from metaagent.sim.driver import simulate
from metaagent.sim.from_workflow import is_workflow, load_any
from metaagent.sim.loading import parse_simulation

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml"))


def test_there_are_example_workflows_and_simulations() -> None:
    kinds = {is_workflow(__import__("yaml").safe_load(p.read_text())) for p in EXAMPLES}
    assert kinds == {True, False}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_simulate_runs_every_example_file_of_the_repository(path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["tasks"] > 0
    assert data["makespan_s"] > 0
    assert data["states"].get("succeeded", 0) + data["states"].get("failed", 0) > 0


WORKFLOW = """
name: wf
agents:
  - name: coder
    capabilities: {code: 0.9}
    runner: {type: command, argv: ["false"]}
tasks:
  - id: a
    capability: code
    prompt: "write it"
    input: {x: 1}
    estimate_s: 7
  - id: b
    capability: code
    prompt: "test it"
    depends_on: [a]
"""

PROFILE = """
default_profile:
  duration: {dist: fixed, mean_s: 3}
"""


def test_a_workflow_simulates_with_estimate_s_and_the_profile(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WORKFLOW)
    prof = tmp_path / "profile.yaml"
    prof.write_text(PROFILE)
    spec = load_any(wf, profile_file=prof)
    assert spec.durations == {"a": 7.0}  # runners, prompts and inputs are ignored
    result = simulate(spec)
    assert result.makespan_s == pytest.approx(7.0 + 3.0)
    out = runner.invoke(app, ["simulate", str(wf), "--profile", str(prof), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["makespan_s"] == pytest.approx(10.0)


def test_a_bad_profile_names_the_file(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(WORKFLOW)
    prof = tmp_path / "p.yaml"
    prof.write_text("default_profile: {duration: {mean_s: -1}}\n")
    out = runner.invoke(app, ["simulate", str(wf), "--profile", str(prof)])
    assert out.exit_code == 2
    assert "p.yaml" in out.output


SIM = {
    "name": "s",
    "agents": [{"name": "w", "capabilities": {"code": 0.9}}],
    "default_profile": {"duration": {"dist": "fixed", "mean_s": 1.0}},
    "tasks": [
        {"id": "long", "capability": "code", "duration_s": 10.0},
        {"id": "told", "capability": "code", "duration_s": 10.0, "estimate_s": 10.0},
        {"id": "short", "capability": "code", "duration_s": 1.0},
    ],
}


def test_in_a_simulation_file_duration_s_is_taken_and_estimate_s_is_told(tmp_path: Path) -> None:
    spec = parse_simulation(SIM, source="s.yaml", base_dir=tmp_path)
    tasks = {t.id: t for t in spec.tasks}
    assert tasks["long"].estimate_s is None  # not told unless given
    assert tasks["told"].estimate_s == 10.0
    assert spec.durations == {"long": 10.0, "told": 10.0, "short": 1.0}
    a, b = simulate(spec), simulate(spec)
    assert a.to_json() == b.to_json()  # deterministic
    assert a.makespan_s == pytest.approx(21.0)
