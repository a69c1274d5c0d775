"""Every tool through the SDK's in-memory client against the server object (an embedded service on
a real journal): the contract run submitted, waited for with progress, read and explained; every
error path a structured result (bad YAML, cycle, unknown capability, unknown run or task)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from contract import CONTRACT  # tests/ is on the path (rootdir conftest)
from mcp_helpers import FAILING, doc, error, in_memory, sleeper

from metaagent.mcp.tools import MAX_WAIT_S, TOOL_NAMES
from metaagent.mcp.views import OUTPUT_CHARS

if TYPE_CHECKING:
    from pathlib import Path

    from mcp import Client

pytestmark = pytest.mark.timeout(90)


async def submit(client: Client, yaml_text: str, **extra: object) -> str:
    answer = doc(await client.call_tool("submit_run", {"workflow_yaml": yaml_text, **extra}))
    run_id: str = answer["run_id"]
    return run_id


async def wait(client: Client, run_id: str) -> dict[str, object]:
    answer = doc(await client.call_tool("wait_run", {"run_id": run_id, "timeout_s": MAX_WAIT_S}))
    assert answer["still_running"] is False, answer
    return answer


async def test_the_tool_list_is_short_and_described(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        tools = (await client.list_tools()).tools
        assert tuple(t.name for t in tools) == TOOL_NAMES
        for t in tools:
            assert t.description, t.name
            assert len(t.description) < 1_000, t.name
        wait_schema = next(t for t in tools if t.name == "wait_run").input_schema
        assert wait_schema["properties"]["timeout_s"]["maximum"] == MAX_WAIT_S
        assert "ctx" not in wait_schema["properties"]


async def test_contract_run_submitted_waited_with_progress_read_and_explained(
    tmp_path: Path,
) -> None:
    async with in_memory(tmp_path) as client:
        run_id = await submit(client, CONTRACT, labels={"team": "mcp"})
        seen: list[tuple[float, float | None, str | None]] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            seen.append((done, total, message))

        result = await client.call_tool(
            "wait_run", {"run_id": run_id, "timeout_s": MAX_WAIT_S}, progress_callback=progress
        )
        final = doc(result)
        assert final["state"] == "succeeded"
        assert final["still_running"] is False
        assert final["counts"] == {"succeeded": 3}
        assert final["failures"] == []
        assert final["labels"] == {"team": "mcp"}
        assert seen, "no progress notification while waiting"
        values = [p for p, _, _ in seen]
        assert values == sorted(set(values)), "progress must increase"
        assert seen[-1][:2] == (3, 3)
        assert {t for _, _, m in seen for t in ("api", "db", "tests") if m and t in m} == {
            "api", "db", "tests",
        }  # fmt: skip

        run = doc(await client.call_tool("get_run", {"run_id": run_id, "include_tasks": True}))
        by_id = {t["id"]: t for t in run["task_list"]}
        assert by_id["tests"]["agent"] == "careful-tester"
        assert by_id["tests"]["depends_on"] == ["api", "db"]

        task = doc(await client.call_tool("get_task", {"run_id": run_id, "task_id": "tests"}))
        assert task["agent"] == "careful-tester"
        assert task["output"] == "tested"
        assert [a["outcome"] for a in task["attempts"]] == ["succeeded"]

        why = doc(await client.call_tool("explain_task", {"run_id": run_id, "task_id": "tests"}))
        route = why["decisions"][0]["route"]
        assert route["spec"] == "careful-tester"
        assert route["runner_up"] == "fast-coder"
        # It won on expected retry time: the tester fails less often than the coder.
        assert route["contributions"][0]["part"] == "retry"


async def test_wait_run_returns_still_running_at_its_timeout(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        run_id = await submit(client, sleeper(30))
        answer = doc(await client.call_tool("wait_run", {"run_id": run_id, "timeout_s": 0}))
        assert answer["still_running"] is True
        assert answer["state"] == "running"
        assert "wait_run again" in answer["hint"]
        doc(await client.call_tool("cancel_run", {"run_id": run_id}))
        cancelled = await wait(client, run_id)
        assert cancelled["state"] == "cancelled"
        assert cancelled["failures"][0]["task_id"] == "nap"


async def test_wait_run_past_50_seconds_is_refused_by_its_schema(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        result = await client.call_tool("wait_run", {"run_id": "r", "timeout_s": 120})
        assert result.is_error
        assert "less than or equal to 50" in str(result.content)


async def test_list_runs_filters_by_state_and_label_and_pages(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        first = await submit(client, CONTRACT, labels={"team": "a"})
        second = await submit(client, CONTRACT, labels={"team": "b"})
        await wait(client, first)
        await wait(client, second)
        only_b = doc(await client.call_tool("list_runs", {"label": "team:b"}))
        assert [r["run_id"] for r in only_b["runs"]] == [second]
        done = doc(await client.call_tool("list_runs", {"state": "succeeded"}))
        assert {r["run_id"] for r in done["runs"]} == {first, second}
        page = doc(await client.call_tool("list_runs", {"limit": 1}))
        assert [r["run_id"] for r in page["runs"]] == [second]
        rest = doc(await client.call_tool("list_runs", {"limit": 1, "cursor": page["next_cursor"]}))
        assert [r["run_id"] for r in rest["runs"]] == [first]
        bad = error(await client.call_tool("list_runs", {"label": "nocolon"}))
        assert bad["code"] == "invalid"
        assert "key:value" in bad["message"]


async def test_submit_by_tasks_with_idempotency_and_priority(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        args = {
            "name": "by-tasks",
            "agents": [{"name": "echo", "capabilities": {"shell": 0.9},
                        "runner": {"type": "command", "argv": ["python3", "-c", "print('hi')"]}}],
            "tasks": [{"id": "one", "capability": "shell", "prompt": "p"}],
            "idempotency_key": "k-1",
            "priority": 5,
        }  # fmt: skip
        first = doc(await client.call_tool("submit_run", args))
        again = doc(await client.call_tool("submit_run", args))
        assert again["run_id"] == first["run_id"]
        final = await wait(client, first["run_id"])
        assert final["name"] == "by-tasks"
        assert final["priority"] == 5
        task = doc(
            await client.call_tool("get_task", {"run_id": first["run_id"], "task_id": "one"})
        )
        assert task["output"] == "hi"


async def test_failures_with_errors_log_tail_retry_and_conflicts(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        run_id = await submit(client, FAILING)
        final = await wait(client, run_id)
        assert final["state"] == "failed"
        failures = {f["task_id"]: f for f in final["failures"]}
        assert failures["build"]["state"] == "failed"
        assert failures["ship"]["state"] == "skipped"
        task = doc(await client.call_tool("get_task", {"run_id": run_id, "task_id": "build"}))
        assert "boom at build" in task["log_tail"]
        assert task["attempts"][0]["outcome"] == "error"

        cancel = error(await client.call_tool("cancel_run", {"run_id": run_id}))
        assert cancel["code"] == "conflict"
        assert "finished" in cancel["message"]
        retried = doc(await client.call_tool("retry_run", {"run_id": run_id}))
        assert retried["retry_of"] == run_id
        assert sorted(retried["rerun"]) == ["build", "ship"]
        again = await wait(client, retried["run_id"])
        assert again["retry_of"] == run_id
        assert again["state"] == "failed"


async def test_retry_of_an_unfinished_run_is_a_conflict(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        run_id = await submit(client, sleeper(30))
        busy = error(await client.call_tool("retry_run", {"run_id": run_id}))
        assert busy["code"] == "conflict"
        assert "not finished" in busy["message"]
        unknown = error(
            await client.call_tool("cancel_run", {"run_id": run_id, "task_ids": ["ghost"]})
        )
        assert unknown["code"] == "invalid"
        assert "ghost" in unknown["message"]
        doc(await client.call_tool("cancel_run", {"run_id": run_id, "task_ids": ["nap"]}))
        assert (await wait(client, run_id))["state"] == "cancelled"


BAD_YAML = "name: x\nagents: []\ntasks: [{id: a, capability: python\n"
CYCLE = CONTRACT.replace(
    '{id: api, capability: python, prompt: "0.5"}',
    '{id: api, capability: python, prompt: "0.5", depends_on: [tests]}',
)
UNKNOWN_CAPABILITY = CONTRACT.replace("capability: testing", "capability: fortran")


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        (BAD_YAML, "<request>:4:1: invalid YAML"),
        (CYCLE, "dependency cycle: api -> tests -> api"),
        (UNKNOWN_CAPABILITY, "unknown capability 'fortran'; known capabilities: python, testing"),
        ("name: x\n", "agents: Field required"),
    ],
    ids=["bad-yaml", "cycle", "unknown-capability", "missing-fields"],
)
async def test_a_bad_workflow_is_refused_with_the_loaders_message(
    tmp_path: Path, workflow: str, expected: str
) -> None:
    async with in_memory(tmp_path) as client:
        err = error(await client.call_tool("submit_run", {"workflow_yaml": workflow}))
        assert err["code"] == "invalid"
        assert err["status"] == 422
        assert expected in err["message"], err["message"]
        assert err["hint"]


async def test_submit_needs_exactly_one_of_yaml_and_tasks(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        neither = error(await client.call_tool("submit_run", {}))
        assert neither["code"] == "invalid"
        assert "workflow_yaml" in neither["message"]
        both = error(await client.call_tool("submit_run", {"workflow_yaml": CONTRACT, "tasks": []}))
        assert both["code"] == "invalid"


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("get_run", {"run_id": "run-nope"}),
        ("wait_run", {"run_id": "run-nope", "timeout_s": 1}),
        ("get_task", {"run_id": "run-nope", "task_id": "t"}),
        ("explain_task", {"run_id": "run-nope", "task_id": "t"}),
        ("cancel_run", {"run_id": "run-nope"}),
        ("retry_run", {"run_id": "run-nope"}),
    ],
)
async def test_an_unknown_run_is_not_found(
    tmp_path: Path, tool: str, args: dict[str, object]
) -> None:
    async with in_memory(tmp_path) as client:
        err = error(await client.call_tool(tool, args))
        assert err["code"] == "not_found"
        assert err["status"] == 404
        assert "run-nope" in err["message"]


async def test_an_unknown_task_is_not_found(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        run_id = await submit(client, CONTRACT)
        await wait(client, run_id)
        for tool in ("get_task", "explain_task"):
            err = error(await client.call_tool(tool, {"run_id": run_id, "task_id": "ghost"}))
            assert err["code"] == "not_found"
            assert "ghost" in err["message"]


async def test_list_agents_by_capability_and_an_unknown_one_lists_the_known(
    tmp_path: Path,
) -> None:
    async with in_memory(tmp_path) as client:
        await wait(client, await submit(client, CONTRACT))
        pool = doc(await client.call_tool("list_agents", {}))
        assert {s["name"] for s in pool["specs"]} == {"fast-coder", "careful-tester"}
        testing = doc(await client.call_tool("list_agents", {"capability": "testing"}))
        assert {s["name"] for s in testing["specs"]} == {"fast-coder", "careful-tester"}
        learned = {s["spec"]: s for s in testing["stats"]}
        assert learned["careful-tester"]["successes"] == 1
        assert learned["careful-tester"]["proficiency"] is not None
        python = doc(await client.call_tool("list_agents", {"capability": "python"}))
        assert [s["name"] for s in python["specs"]] == ["fast-coder"]
        err = error(await client.call_tool("list_agents", {"capability": "cobol"}))
        assert err["message"] == "unknown capability 'cobol'; known capabilities: python, testing"


LOUD = """\
name: loud
agents:
  - name: talker
    capabilities: {talk: 0.9}
    runner: {type: command, argv: ["python3", "-c", "import sys; print('o' * 20000); sys.stderr.write('e' * 9000 + 'END')"]}
tasks:
  - {id: talk, capability: talk}
"""  # noqa: E501


async def test_a_long_output_is_capped_with_a_marker_and_the_log_is_its_tail(
    tmp_path: Path,
) -> None:
    async with in_memory(tmp_path) as client:
        run_id = await submit(client, LOUD)
        await wait(client, run_id)
        task = doc(await client.call_tool("get_task", {"run_id": run_id, "task_id": "talk"}))
        assert task["output_chars"] == 20_000
        assert task["output"].startswith("o" * OUTPUT_CHARS)
        assert task["output"].endswith("[metaagent: output cut here, 12000 more characters]")
        assert task["log_tail"].endswith("eEND")
        assert task["log_tail"].startswith("[metaagent: 5003 earlier characters cut]\n")
