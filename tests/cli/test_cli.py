"""The command line as a user runs it: real subprocesses, real files, exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
from operator import attrgetter
from typing import TYPE_CHECKING

import pytest
from contract import CONTRACT  # tests/ is on the path (rootdir conftest)

if TYPE_CHECKING:
    from pathlib import Path

CLI = [sys.executable, "-m", "metaagent.cli"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_contract_example_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "contract.yaml").write_text(CONTRACT)
    done = cli("run", "contract.yaml", "--json", "out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["name"] == "contract-example"
    assert report["counts"] == {"succeeded": 3, "failed": 0, "skipped": 0, "cancelled": 0}
    tasks = {t["id"]: t for t in report["tasks"]}
    assert tasks["api"]["output"] == "done api"
    assert tasks["tests"]["agent"] == "careful-tester"
    assert tasks["tests"]["output"] == "tested"
    for t in report["tasks"]:
        assert t["state"] == "succeeded"
        (attempt,) = t["attempts"]
        assert set(attempt) >= {"agent", "started_at", "finished_at", "outcome", "error"}
        assert attempt["outcome"] == "succeeded"
        assert 0.0 <= attempt["started_at"] < attempt["finished_at"] <= report["makespan_s"] + 1e-6
    # "tests" starts only after both of its dependencies finished.
    deps_end = max(tasks[d]["attempts"][0]["finished_at"] for d in ("api", "db"))
    assert tasks["tests"]["attempts"][0]["started_at"] >= deps_end
    # api and db ran at the same time on fast-coder's two slots.
    assert report["peak_parallelism"] == 2
    routes = [d for d in report["decisions"] if d["type"] == "route_task"]
    assert {d["task_id"] for d in routes} == {"api", "db", "tests"}
    assert all({"type", "task_id", "agent", "reason"} <= set(d) for d in report["decisions"])
    assert "succeeded" in done.stdout  # the summary table


def test_a_failing_task_exits_1_and_skips_its_dependents(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "name: failing\n"
        "agents:\n"
        "  - name: a\n"
        "    capabilities: {code: 0.9}\n"
        "    runner: {type: command, argv: [sh, -c, 'echo broken >&2; exit 3']}\n"
        "tasks:\n"
        "  - {id: first, capability: code, max_attempts: 2}\n"
        "  - {id: second, capability: code, depends_on: [first]}\n"
    )
    done = cli("run", "wf.yaml", "--json", "out.json", "--no-journal", cwd=tmp_path)
    assert done.returncode == 1
    report = json.loads((tmp_path / "out.json").read_text())
    tasks = {t["id"]: t for t in report["tasks"]}
    assert tasks["first"]["state"] == "failed"
    assert len(tasks["first"]["attempts"]) == 2
    assert "exited with status 3: broken" in tasks["first"]["attempts"][0]["error"]
    assert tasks["second"]["state"] == "skipped"
    assert "first" in tasks["second"]["error"]


def test_invalid_input_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "cycle.yaml").write_text(
        "name: c\nagents:\n"
        "  - {name: a, capabilities: {code: 0.9}, runner: {type: command, argv: [echo]}}\n"
        "tasks:\n"
        "  - {id: a, capability: code, depends_on: [b]}\n"
        "  - {id: b, capability: code, depends_on: [a]}\n"
    )
    for args in (("run", "cycle.yaml"), ("validate", "cycle.yaml")):
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 2
        assert "dependency cycle: " in done.stderr
        assert "cycle.yaml" in done.stderr
    done = cli("run", "missing.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot read workflow" in done.stderr


def test_validate_and_agents(tmp_path: Path) -> None:
    (tmp_path / "contract.yaml").write_text(CONTRACT)
    done = cli("validate", "contract.yaml", cwd=tmp_path)
    assert done.returncode == 0
    assert "2 agents, 3 tasks, 2 dependency levels" in done.stdout
    done = cli("agents", cwd=tmp_path)
    assert done.returncode == 0
    assert "22 roles" in done.stdout
    assert "security_auditor" in done.stdout
    (tmp_path / "bad.yaml").write_text("roles: [{role: x}]\n")
    done = cli("agents", "--catalog", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "capabilities" in done.stderr


def test_pool_knobs_come_from_the_flags_then_the_workflow_then_the_defaults(
    tmp_path: Path,
) -> None:
    from metaagent.core.scaling import PoolPolicy
    from metaagent.workflow.build import parse_workflow
    from metaagent.workflow.settings import Overrides, orchestrator_config

    raw = {
        "name": "w",
        "settings": {"target_utilisation": 0.8, "scale_up_window_s": 2.0},
        "agents": [{"name": "a", "capabilities": {"c": 0.9},
                    "runner": {"type": "command", "argv": ["echo"]}}],
        "tasks": [{"id": "t", "capability": "c"}],
    }  # fmt: skip
    wf = parse_workflow(raw)
    n = len(wf.tasks)
    pool = orchestrator_config(wf.settings, workdir=tmp_path, task_count=n).pool
    defaults = PoolPolicy()
    assert (pool.target_utilisation, pool.scale_up_window_s) == (0.8, 2.0)
    assert pool.utilisation_window_s == defaults.utilisation_window_s
    flags = Overrides(target_utilisation=0.0, scale_up_window_s=0.0, utilisation_window_s=40.0)
    pool = orchestrator_config(wf.settings, flags, workdir=tmp_path, task_count=n).pool
    assert (pool.target_utilisation, pool.scale_up_window_s, pool.utilisation_window_s) == (
        0.0, 0.0, 40.0,
    )  # fmt: skip


# A flag given wins over the workflow's setting, which wins over the config's default; a zero
# is given, not missing. The defaults pinned here are the ones `run --help` names.
# (flag or setting name, where the config holds it, flag, setting, task count, config value)
PRECEDENCE = [
    ("max_concurrency",      "max_concurrency",           4,    8,    1,      4),
    ("max_concurrency",      "max_concurrency",           None, 8,    1,      8),
    ("max_concurrency",      "max_concurrency",           None, None, 1,      16),
    ("max_queued",           "max_queued",                7,    9,    20_000, 7),
    ("max_queued",           "max_queued",                None, 9,    20_000, 9),
    ("max_queued",           "max_queued",                None, None, 1,      10_000),
    ("max_queued",           "max_queued",                None, None, 20_000, 20_000),
    ("max_agents",           "pool.max_agents",           3,    7,    1,      3),
    ("max_agents",           "pool.max_agents",           None, 7,    1,      7),
    ("max_agents",           "pool.max_agents",           None, None, 1,      50),
    ("spawn_threshold",      "pool.spawn_threshold",      0,    4,    1,      0),
    ("spawn_threshold",      "pool.spawn_threshold",      None, 0,    1,      0),
    ("spawn_threshold",      "pool.spawn_threshold",      None, None, 1,      5),
    ("idle_timeout_s",       "pool.idle_timeout_s",       1.5,  9.0,  1,      1.5),
    ("idle_timeout_s",       "pool.idle_timeout_s",       None, 9.0,  1,      9.0),
    ("idle_timeout_s",       "pool.idle_timeout_s",       None, None, 1,      60.0),
    ("target_utilisation",   "pool.target_utilisation",   0.0,  0.8,  1,      0.0),
    ("target_utilisation",   "pool.target_utilisation",   None, 0.8,  1,      0.8),
    ("target_utilisation",   "pool.target_utilisation",   None, None, 1,      0.9),
    ("scale_up_window_s",    "pool.scale_up_window_s",    0.0,  2.0,  1,      0.0),
    ("scale_up_window_s",    "pool.scale_up_window_s",    None, None, 1,      5.0),
    ("utilisation_window_s", "pool.utilisation_window_s", 40.0, 10.0, 1,      40.0),
    ("utilisation_window_s", "pool.utilisation_window_s", None, None, 1,      20.0),
    # settings no flag overrides
    ("scale_cooldown_s",     "pool.cooldown_s",           None, 0.0,  1,      0.0),
    ("scale_cooldown_s",     "pool.cooldown_s",           None, None, 1,      5.0),
    ("heartbeat_interval_s", "health.heartbeat_interval_s", None, 0.5, 1,     0.5),
    ("heartbeat_timeout_s",  "health.heartbeat_timeout_s",  None, 4.0, 1,     4.0),
    ("breaker_failures",     "health.breaker_failures",   None, 1,    1,      1),
    ("breaker_failures",     "health.breaker_failures",   None, None, 1,      3),
    ("aging_interval_s",     "aging_interval_s",          None, 60.0, 1,      60.0),
    ("aging_interval_s",     "aging_interval_s",          None, None, 1,      300.0),
    ("default_timeout_s",    "default_timeout_s",         None, 30.0, 1,      30.0),
    ("default_timeout_s",    "default_timeout_s",         None, None, 1,      3600.0),
    ("routing",              "routing",                   None, "thompson", 1, "thompson"),
    ("routing",              "routing",                   None, None, 1,      "deterministic"),
    ("seed",                 "seed",                      None, 7,    1,      7),
    ("seed",                 "seed",                      None, None, 1,      0),
]  # fmt: skip


@pytest.mark.parametrize(("knob", "path", "flag", "setting", "task_count", "chosen"), PRECEDENCE)
def test_the_config_takes_the_flag_then_the_setting_then_the_default(
    tmp_path: Path,
    knob: str,
    path: str,
    flag: object,
    setting: object,
    task_count: int,
    chosen: object,
) -> None:
    from metaagent.workflow.schema import SettingsModel
    from metaagent.workflow.settings import Overrides, orchestrator_config

    settings = SettingsModel.model_validate({} if setting is None else {knob: setting})
    flags = Overrides(**({} if flag is None else {knob: flag}))  # type: ignore[arg-type]
    config = orchestrator_config(settings, flags, workdir=tmp_path, task_count=task_count)
    assert attrgetter(path)(config) == chosen
    assert config.workdir == str(tmp_path.resolve())


def test_the_limits_come_from_the_workflow(tmp_path: Path) -> None:
    from metaagent.workflow.schema import SettingsModel
    from metaagent.workflow.settings import orchestrator_config

    settings = SettingsModel(capability_limits={"gpu": 1}, resource_limits={"db": 2})
    config = orchestrator_config(settings, workdir=tmp_path, task_count=1)
    assert (config.capability_limits, config.resource_limits) == ({"gpu": 1}, {"db": 2})
    config = orchestrator_config(SettingsModel(), workdir=tmp_path, task_count=1)
    assert (config.capability_limits, config.resource_limits) == ({}, {})


def test_a_bad_pool_flag_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "contract.yaml").write_text(CONTRACT)
    for flag, value in (("--target-utilisation", "1.5"), ("--scale-up-window", "-1"),
                        ("--utilisation-window", "-2")):  # fmt: skip
        done = cli("run", "contract.yaml", flag, value, "--no-journal", cwd=tmp_path)
        assert done.returncode == 2
        assert flag in done.stderr
