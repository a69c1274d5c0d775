"""Checks on outputs: a task with ``verify`` succeeds only when its check (a command) passes."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentSpec,
    AgentTask,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    RetryPolicy,
    TaskState,
    VerificationFailed,
    VerifySpec,
)
from metaagent.runtime.verify import output_text, verify_output

if TYPE_CHECKING:
    from pathlib import Path

    from metaagent import AttemptContext

# The check records what it was given, then passes when the output's score is at least 5.
CHECK = """
import json, os, sys
stdin = sys.stdin.read()
path = sys.argv[1]
with open(path) as fh:
    from_file = fh.read()
record = {"stdin": stdin, "file": from_file, "path": path, "argv": sys.argv[2:], "cwd": os.getcwd()}
with open(os.path.join(os.getcwd(), "seen.jsonl"), "a") as fh:
    fh.write(json.dumps(record) + "\\n")
score = json.loads(stdin).get("score", 0)
if score < 5:
    print(f"score {score} is below 5")
    print("rejected by the check", file=sys.stderr)
    sys.exit(3)
print("looks good")
"""


def check(*extra: str) -> VerifySpec:
    return VerifySpec((sys.executable, "-c", CHECK, "{output_file}", *extra), timeout_s=30)


def scored(by_agent: dict[str, int]) -> FunctionRunner:
    async def work(ctx: AttemptContext) -> dict[str, object]:
        return {"score": by_agent[ctx.agent], "agent": ctx.agent}

    return FunctionRunner(work)


def orchestrator(tmp_path: Path, specs: list[AgentSpec]) -> Orchestrator:
    cfg = OrchestratorConfig(retry=RetryPolicy(base_s=0.001, jitter=0.0), workdir=str(tmp_path))
    return Orchestrator(specs, cfg)


def exists(path: str) -> bool:
    return os.path.exists(path)


def seen(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "seen.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_task_succeeds_when_its_check_exits_zero(tmp_path: Path) -> None:
    runner = scored({"alpha": 7})
    task = AgentTask("t", "code", prompt="p", verify=check("{task_id}", "{prompt}", "{workdir}"))
    async with orchestrator(tmp_path, [AgentSpec("alpha", {"code": 0.9}, runner)]) as orch:
        batch = await orch.execute_batch([task])
    res = batch.result("t")
    assert res.state is TaskState.SUCCEEDED
    assert res.output == {"score": 7, "agent": "alpha"}
    (record,) = seen(tmp_path)
    # The output reaches the check on stdin and in {output_file}, as JSON.
    assert json.loads(record["stdin"]) == {"score": 7, "agent": "alpha"}  # type: ignore[arg-type]
    assert record["file"] == record["stdin"]
    assert record["argv"] == ["t", "p", str(tmp_path)]
    assert record["cwd"] == str(tmp_path)
    # The temporary output file is gone afterwards.
    assert str(record["path"]).startswith("/")
    assert not exists(str(record["path"]))


async def test_failing_check_fails_the_attempt_and_retries_on_another_agent(
    tmp_path: Path,
) -> None:
    runner = scored({"alpha": 2, "beta": 1})
    specs = [AgentSpec("alpha", {"code": 0.9}, runner), AgentSpec("beta", {"code": 0.5}, runner)]
    task = AgentTask("t", "code", max_attempts=2, verify=check())
    async with orchestrator(tmp_path, specs) as orch:
        batch = await orch.execute_batch([task, AgentTask("after", "code", depends_on=("t",))])
    res = batch.result("t")
    assert res.state is TaskState.FAILED
    assert res.output is None  # a rejected output is not reported as the result
    assert [(a.agent, a.outcome) for a in res.attempts] == [
        ("alpha", Outcome.VERIFY_FAILED),
        ("beta", Outcome.VERIFY_FAILED),
    ]
    first = res.attempts[0].error or ""
    assert "exited 3" in first
    assert "score 2 is below 5" in first  # the check's stdout
    assert "rejected by the check" in first  # and its stderr
    assert "score 1 is below 5" in (res.error or "")
    assert batch.result("after").state is TaskState.SKIPPED
    assert len(seen(tmp_path)) == 2


async def test_a_retry_whose_output_passes_the_check_succeeds(tmp_path: Path) -> None:
    runner = scored({"alpha": 2, "beta": 9})
    specs = [AgentSpec("alpha", {"code": 0.9}, runner), AgentSpec("beta", {"code": 0.5}, runner)]
    async with orchestrator(tmp_path, specs) as orch:
        result = await orch.execute_concurrent(AgentTask("t", "code", verify=check()))
    assert result.output == {"score": 9, "agent": "beta"}
    assert [(a.agent, a.outcome) for a in result.attempts] == [
        ("alpha", Outcome.VERIFY_FAILED),
        ("beta", Outcome.SUCCEEDED),
    ]


async def test_no_check_runs_when_the_attempt_itself_failed(tmp_path: Path) -> None:
    async def broken(ctx: AttemptContext) -> object:
        raise RuntimeError("no output at all")

    spec = AgentSpec("alpha", {"code": 0.9}, FunctionRunner(broken))
    async with orchestrator(tmp_path, [spec]) as orch:
        batch = await orch.execute_batch([AgentTask("t", "code", max_attempts=1, verify=check())])
    (att,) = batch.result("t").attempts
    assert att.outcome is Outcome.ERROR
    assert seen(tmp_path) == []


# --- verify_output on its own ------------------------------------------------------------------


def test_output_text_is_text_as_is_and_json_otherwise() -> None:
    assert output_text("plain\ntext") == "plain\ntext"
    assert output_text({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert output_text(None) == "null"


async def test_text_output_reaches_the_check_unquoted(tmp_path: Path) -> None:
    code = "import sys; data = sys.stdin.read(); sys.exit(0 if data == 'hello\\nworld' else 1)"
    spec = VerifySpec((sys.executable, "-c", code))
    await verify_output(spec, AgentTask("t", "code"), "hello\nworld", str(tmp_path))
    with pytest.raises(VerificationFailed, match=r"exited 1: \(no output\)"):
        await verify_output(spec, AgentTask("t", "code"), "other", str(tmp_path))


async def test_missing_check_program_is_a_verification_failure(tmp_path: Path) -> None:
    spec = VerifySpec(("/nonexistent/checker", "{output_file}"))
    with pytest.raises(VerificationFailed, match="cannot start check '/nonexistent/checker'"):
        await verify_output(spec, AgentTask("t", "code"), "x", str(tmp_path))


async def test_a_check_past_its_time_limit_fails(tmp_path: Path) -> None:
    spec = VerifySpec(("sleep", "30"), timeout_s=0.3)
    with pytest.raises(VerificationFailed, match=r"check sleep timed out after 0.3s"):
        await verify_output(spec, AgentTask("t", "code"), "x", str(tmp_path))
