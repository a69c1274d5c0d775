"""examples/feature runs as documented, with the fake tools standing in for Claude Code (and,
edited, Codex): design -> backend + tests -> review -> docs in a sample repository, each task
in its worktree, the role checks passing, the run branch holding a feature whose tests pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from coding_support import FAKES, cli, fake_env, git, report, tasks_of, worktrees

pytestmark = pytest.mark.timeout(300)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "feature"
sys.path.insert(0, str(EXAMPLE))
from prepare import prepare  # noqa: E402


@pytest.mark.parametrize("tool", ["claude", "codex"])
def test_the_feature_example_builds_a_tested_feature(tmp_path: Path, tool: str) -> None:
    workflow = prepare(tmp_path / "feature")
    if tool != "claude":
        text = workflow.read_text()
        for turns in ("20", "40"):
            text = text.replace(f"tool: claude, max_turns: {turns}", f"tool: {tool}")
        workflow.write_text(text)
    bindir = str(Path(sys.executable).parent)  # `python` in the checks: this interpreter
    env = fake_env(FAKE_SCRIPT=str(EXAMPLE / "fake-script.json"))
    env["PATH"] = os.pathsep.join([str(FAKES), bindir, os.environ["PATH"]])
    done = cli("run", str(workflow), "--json", "out.json", cwd=tmp_path, env=env, timeout=280)
    assert done.returncode == 0, done.stderr + done.stdout
    rep = report(tmp_path / "out.json")
    tasks = tasks_of(rep)
    assert list(tasks) == ["design", "backend", "tests", "review", "docs"]
    assert {t["state"] for t in tasks.values()} == {"succeeded"}
    cost = rep["cost_usd"]
    assert isinstance(cost, float)
    assert (cost > 0) == (tool == "claude")  # codex reports tokens, not money
    repo = workflow.parent / "repo"
    assert worktrees(repo) == []
    # the run branch holds the whole feature, in dependency order, and its tests pass
    branch = f"metaagent/{rep['run_id']}"
    check = tmp_path / "check"
    git(repo, "worktree", "add", "-q", str(check), branch)
    for f in ("docs/design/csv-export.md", "stockroom/export.py", "tests/test_export.py",
              "docs/review/csv-export.md"):  # fmt: skip
        assert (check / f).is_file(), f
    assert "## CSV export" in (check / "README.md").read_text()
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=check, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout
    assert "4 passed" in ran.stdout
