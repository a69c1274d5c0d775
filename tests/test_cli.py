"""The command line as a user runs it: real subprocesses, real files, exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

from test_workflow import CONTRACT  # tests/ is on the path (rootdir conftest)

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
    from metaagent.cli.app import _config
    from metaagent.core.scaling import PoolPolicy
    from metaagent.workflow.build import parse_workflow

    raw = {
        "name": "w",
        "settings": {"target_utilisation": 0.8, "scale_up_window_s": 2.0},
        "agents": [{"name": "a", "capabilities": {"c": 0.9},
                    "runner": {"type": "command", "argv": ["echo"]}}],
        "tasks": [{"id": "t", "capability": "c"}],
    }  # fmt: skip
    wf = parse_workflow(raw)
    pool = _config(wf, None, tmp_path).pool
    defaults = PoolPolicy()
    assert (pool.target_utilisation, pool.scale_up_window_s) == (0.8, 2.0)
    assert pool.utilisation_window_s == defaults.utilisation_window_s
    pool = _config(
        wf, None, tmp_path, target_utilisation=0.0, scale_up_window_s=0.0,
        utilisation_window_s=40.0,
    ).pool  # fmt: skip
    assert (pool.target_utilisation, pool.scale_up_window_s, pool.utilisation_window_s) == (
        0.0, 0.0, 40.0,
    )  # fmt: skip


def test_a_bad_pool_flag_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "contract.yaml").write_text(CONTRACT)
    for flag, value in (("--target-utilisation", "1.5"), ("--scale-up-window", "-1"),
                        ("--utilisation-window", "-2")):  # fmt: skip
        done = cli("run", "contract.yaml", flag, value, "--no-journal", cwd=tmp_path)
        assert done.returncode == 2
        assert flag in done.stderr
