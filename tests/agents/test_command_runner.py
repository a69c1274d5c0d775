"""Command agents, with real subprocesses: arguments, stdin/stdout, failures, limits, clean-up."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentCrash,
    AgentFailure,
    AgentSpec,
    AgentTask,
    AttemptContext,
    CommandRunner,
    Orchestrator,
    OrchestratorConfig,
    Outcome,
    ProcessLimits,
    RetryPolicy,
    RunFailed,
    TaskState,
)
from metaagent.agents.command import expand, parse_output
from metaagent.testing import wait_until

if TYPE_CHECKING:
    from pathlib import Path

WaitDead = Callable[[int], Awaitable[bool]]
WaitGone = Callable[[str], Awaitable[bool]]


def ctx(
    workdir: str = ".",
    *,
    tid: str = "t1",
    prompt: str = "do it",
    upstream: dict[str, object] | None = None,
    **kw: object,
) -> AttemptContext:
    task = AgentTask(tid, "code", prompt=prompt, **kw)  # type: ignore[arg-type]
    return AttemptContext(task, "run-9", 2, "coder", "coder-1", upstream or {}, workdir)


def script(python: str, code: str, *args: str) -> list[str]:
    return [python, "-c", code, *args]


def orchestrator(runner: CommandRunner, workdir: Path) -> Orchestrator:
    cfg = OrchestratorConfig(retry=RetryPolicy(base_s=0.001, jitter=0.0), workdir=str(workdir))
    return Orchestrator([AgentSpec("cmd", {"code": 0.9}, runner)], cfg)


# --- arguments, stdin and stdout --------------------------------------------------------------


async def test_placeholders_are_expanded_and_unknown_braces_left_alone(python: str) -> None:
    runner = CommandRunner(
        script(
            python,
            "import json, sys; print(json.dumps(sys.argv[1:]))",
            "{task_id}",
            "{capability}",
            "{prompt}",
            "{run_id}",
            "{attempt}",
            "{workdir}",
            "x-{task_id}-y",
            "{unknown}",
            "{not a placeholder}",
            "{}",
            '{"json": 1}',
        )
    )
    out = await runner.run(ctx("/tmp", prompt="fix {task_id} now"))
    assert out == [
        "t1",
        "code",
        "fix {task_id} now",  # a prompt is not expanded a second time
        "run-9",
        "2",
        "/tmp",
        "x-t1-y",
        "{unknown}",
        "{not a placeholder}",
        "{}",
        '{"json": 1}',
    ]


def test_expand_is_one_pass() -> None:
    assert expand("{a}{b}{c}", {"a": "{b}", "b": "B"}) == "{b}B{c}"


async def test_stdin_carries_the_attempt_as_json_with_upstream_outputs(python: str) -> None:
    runner = CommandRunner(script(python, "import sys; sys.stdout.write(sys.stdin.read())"))
    out = await runner.run(ctx(upstream={"lint": {"errors": 0}, "plan": "steps"}, input=[1, 2]))
    assert isinstance(out, dict)
    assert out["upstream"] == {"lint": {"errors": 0}, "plan": "steps"}
    assert (out["id"], out["run_id"], out["attempt"], out["agent"]) == ("t1", "run-9", 2, "coder")
    assert (out["prompt"], out["input"], out["capability"]) == ("do it", [1, 2], "code")


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ('{"ok": true, "n": 3}', {"ok": True, "n": 3}),
        ("[1, 2]", [1, 2]),
        ('"quoted"', "quoted"),
        ("  plain text\n\n", "plain text"),
        ("[1, 2", "[1, 2"),  # looks like JSON, is not: kept as text
        ("42", "42"),  # only objects, arrays and strings are parsed
        ("", ""),
    ],
)
async def test_stdout_is_parsed_as_json_when_it_is_json(
    python: str, stdout: str, expected: object
) -> None:
    runner = CommandRunner(script(python, "import sys; sys.stdout.write(sys.argv[1])", stdout))
    assert await runner.run(ctx()) == expected
    assert parse_output(stdout.encode()) == expected


def test_argv_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        CommandRunner("echo hi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty list"):
        CommandRunner([])
    assert CommandRunner(["echo"]).describe() == {
        "type": "command",
        "argv": ["echo"],
        "cwd": None,
        "memory_limit_mb": 500,
    }


# --- failures ---------------------------------------------------------------------------------


async def test_nonzero_exit_fails_with_the_tail_of_stderr(python: str) -> None:
    code = "import sys; sys.stderr.write('x' * 5000 + 'the real reason'); sys.exit(3)"
    runner = CommandRunner(script(python, code))
    with pytest.raises(AgentFailure) as info:
        await runner.run(ctx())
    err = info.value
    assert not isinstance(err, AgentCrash)
    text = str(err)
    assert "exited with status 3" in text
    assert text.endswith("the real reason")
    assert "..." in text
    assert len(text) < 2300  # the tail, not the whole stream


async def test_nonzero_exit_without_stderr_says_so(python: str) -> None:
    runner = CommandRunner(script(python, "raise SystemExit(1)"))
    with pytest.raises(AgentFailure, match=r"exited with status 1: \(no stderr\)"):
        await runner.run(ctx())


async def test_death_by_signal_is_a_crash(python: str, tmp_path: Path) -> None:
    code = "import os, signal, sys; sys.stderr.write('dying'); sys.stderr.flush(); " \
           "os.kill(os.getpid(), signal.SIGKILL)"  # fmt: skip
    runner = CommandRunner(script(python, code))
    with pytest.raises(AgentCrash, match="killed by SIGKILL: dying"):
        await runner.run(ctx())
    async with orchestrator(runner, tmp_path) as orch:
        batch = await orch.execute_batch([AgentTask("t", "code", max_attempts=2)])
    res = batch.result("t")
    assert res.state is TaskState.FAILED
    assert [a.outcome for a in res.attempts] == [Outcome.CRASH, Outcome.CRASH]
    assert "killed by SIGKILL" in (res.error or "")


async def test_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    runner = CommandRunner(["/nonexistent/agent-cli", "--go"])
    with pytest.raises(AgentFailure, match="cannot start '/nonexistent/agent-cli'"):
        await runner.run(ctx())
    async with orchestrator(runner, tmp_path) as orch:
        batch = await orch.execute_batch([AgentTask("t", "code", max_attempts=1)])
    (att,) = batch.result("t").attempts
    assert att.outcome is Outcome.ERROR
    assert "cannot start '/nonexistent/agent-cli'" in (att.error or "")
    assert "No such file" in (att.error or "")


# --- environment ------------------------------------------------------------------------------


async def test_cwd_and_env_are_honoured(python: str, tmp_path: Path) -> None:
    code = "import json, os; print(json.dumps([os.getcwd(), os.environ.get('AGENT_MODE'), " \
           "'PATH' in os.environ]))"  # fmt: skip
    sub = tmp_path / "sub"
    sub.mkdir()
    runner = CommandRunner(script(python, code), cwd=str(sub), env={"AGENT_MODE": "strict"})
    assert await runner.run(ctx()) == [str(sub), "strict", True]
    # Without cwd the attempt runs in the run's workdir; "{workdir}" may be used in cwd.
    plain = CommandRunner(script(python, code))
    assert await plain.run(ctx(str(tmp_path))) == [str(tmp_path), None, True]
    templated = CommandRunner(script(python, code), cwd="{workdir}/sub")
    assert (await templated.run(ctx(str(tmp_path))))[0] == str(sub)  # type: ignore[index]
    assert "AGENT_MODE" not in os.environ


async def test_memory_limit_stops_a_greedy_child(python: str) -> None:
    greedy = "b = bytearray(1024 ** 3); print(len(b))"
    runner = CommandRunner(script(python, greedy), limits=ProcessLimits(memory_mb=200))
    with pytest.raises(AgentFailure, match="MemoryError"):
        await runner.run(ctx())
    # The same limit leaves room for a modest allocation.
    modest = CommandRunner(
        script(python, "b = bytearray(50 * 1024 ** 2); print(len(b))"),
        limits=ProcessLimits(memory_mb=200),
    )
    assert await modest.run(ctx()) == str(50 * 1024**2)


async def test_cpu_limit_stops_a_spinning_child(python: str) -> None:
    runner = CommandRunner(script(python, "while True: pass"), limits=ProcessLimits(cpu_s=1))
    with pytest.raises(AgentCrash, match=r"killed by (SIGXCPU|SIGKILL)"):
        await asyncio.wait_for(runner.run(ctx()), 30)


# --- clean-up ---------------------------------------------------------------------------------


def read_pid(path: Path) -> int:
    assert path.exists(), f"{path.name} was not written: the command did not get that far"
    return int(path.read_text().strip())


async def test_timeout_kills_the_whole_process_group(tmp_path: Path, wait_dead: WaitDead) -> None:
    ready = tmp_path / "ready"
    # The command starts a grandchild, records both pids, then waits on it.
    sh = (
        f"echo $$ > {tmp_path}/child.pid; sleep 60 & echo $! > {tmp_path}/grandchild.pid; "
        f"touch {ready}; wait"
    )
    runner = CommandRunner(["sh", "-c", sh])
    async with orchestrator(runner, tmp_path) as orch:
        batch = await orch.execute_batch([AgentTask("t", "code", timeout_s=0.5, max_attempts=1)])
    (att,) = batch.result("t").attempts
    assert att.outcome is Outcome.TIMEOUT
    assert batch.result("t").error == "timed out after 0.5s; the attempt was stopped"
    assert ready.exists()
    child, grandchild = read_pid(tmp_path / "child.pid"), read_pid(tmp_path / "grandchild.pid")
    assert await wait_dead(child)
    assert await wait_dead(grandchild)


async def test_cancelling_an_attempt_kills_its_process_group(
    tmp_path: Path, wait_dead: WaitDead
) -> None:
    pidfile = tmp_path / "gc.pid"
    runner = CommandRunner(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"])
    attempt = asyncio.ensure_future(runner.run(ctx(str(tmp_path))))
    await wait_until(
        lambda: pidfile.exists() and bool(pidfile.read_text().strip()), what="the pid file"
    )
    assert not attempt.done()
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    assert await wait_dead(read_pid(pidfile))


async def test_leftover_background_process_dies_with_the_attempt(
    tmp_path: Path, wait_dead: WaitDead
) -> None:
    pidfile = tmp_path / "gc.pid"
    # The command exits at once, leaving a background child that still holds its stdout.
    runner = CommandRunner(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo done"])
    out = await asyncio.wait_for(runner.run(ctx(str(tmp_path))), 10)
    assert out == "done"
    assert await wait_dead(read_pid(pidfile))


async def test_leftover_with_its_output_redirected_dies_too(
    tmp_path: Path, wait_dead: WaitDead
) -> None:
    pidfile = tmp_path / "gc.pid"
    runner = CommandRunner(
        ["sh", "-c", f"sleep 60 >/dev/null 2>&1 </dev/null & echo $! > {pidfile}; echo done"]
    )
    assert await asyncio.wait_for(runner.run(ctx(str(tmp_path))), 10) == "done"
    assert await wait_dead(read_pid(pidfile))


@pytest.mark.parametrize("turns", [1, 2, 3, 5, 8])
async def test_cancel_while_the_command_starts_leaves_nothing_behind(
    tmp_path: Path, wait_gone: WaitGone, turns: int
) -> None:
    # Cancelled a few loop turns in: before, while or after its pipes are connected.
    token = f"60.{os.getpid()}{turns}"
    runner = CommandRunner(["sh", "-c", f"sleep {token} & wait"])
    attempt = asyncio.ensure_future(runner.run(ctx(str(tmp_path))))
    for _ in range(turns):
        await asyncio.sleep(0)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(attempt, 5)
    assert await wait_gone(token)


async def test_closing_the_orchestrator_kills_running_commands(
    tmp_path: Path, wait_dead: WaitDead
) -> None:
    pidfile = tmp_path / "gc.pid"
    runner = CommandRunner(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"])
    async with orchestrator(runner, tmp_path) as orch:
        handle = await orch.submit([AgentTask("t", "code")])
        await wait_until(
            lambda: pidfile.exists() and bool(pidfile.read_text().strip()), what="the pid file"
        )
    assert await wait_dead(read_pid(pidfile))
    with pytest.raises(RunFailed, match="closed before run"):
        await handle.result()
