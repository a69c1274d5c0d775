"""Resources (a run's report, its DAG, the agents), their subscriptions, and the prompts, through
the SDK's in-memory client against the server object."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest
from contract import CONTRACT  # tests/ is on the path (rootdir conftest)
from mcp import MCPError
from mcp.client.subscriptions import ResourceUpdated
from mcp.types import TextContent, TextResourceContents
from mcp_helpers import FAILING, doc, in_memory, sleeper

from metaagent.catalog import load_catalog
from metaagent.mcp.prompts import PROMPT_NAMES
from metaagent.mcp.server import AGENTS_URI, dag_uri, run_uri
from metaagent.mcp.tools import MAX_WAIT_S

if TYPE_CHECKING:
    from pathlib import Path

    from mcp import Client
    from mcp.client.subscriptions import Subscription

pytestmark = pytest.mark.timeout(90)


async def read_json(client: Client, uri: str) -> dict[str, object]:
    [contents] = (await client.read_resource(uri)).contents
    assert isinstance(contents, TextResourceContents)
    assert contents.mime_type == "application/json"
    loaded: dict[str, object] = json.loads(contents.text)
    return loaded


async def run_to_end(client: Client, workflow: str) -> str:
    run_id: str = doc(await client.call_tool("submit_run", {"workflow_yaml": workflow}))["run_id"]
    final = doc(await client.call_tool("wait_run", {"run_id": run_id, "timeout_s": MAX_WAIT_S}))
    assert final["still_running"] is False
    return run_id


async def test_a_runs_report_dag_and_the_agents(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        templates = {
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        }
        assert templates == {"metaagent://runs/{run_id}", "metaagent://runs/{run_id}/dag"}
        assert [r.uri for r in (await client.list_resources()).resources] == [AGENTS_URI]
        run_id = await run_to_end(client, CONTRACT)

        report = await read_json(client, run_uri(run_id))
        assert report["state"] == "succeeded"
        assert report["name"] == "contract-example"
        dag = await read_json(client, dag_uri(run_id))
        assert sorted(map(tuple, dag["edges"])) == [("api", "tests"), ("db", "tests")]
        states = {t["id"]: t["agent"] for t in dag["tasks"]}
        assert states == {"api": "fast-coder", "db": "fast-coder", "tests": "careful-tester"}
        agents = await read_json(client, AGENTS_URI)
        assert {s["name"] for s in agents["specs"]} == {"fast-coder", "careful-tester"}


async def test_an_unknown_run_is_a_resource_not_found(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        for uri in (run_uri("run-nope"), dag_uri("run-nope")):
            with pytest.raises(MCPError) as caught:
                await client.read_resource(uri)
            assert caught.value.error.code == -32602
            assert "run-nope" in caught.value.error.message


async def test_a_subscribed_client_is_told_when_its_run_changes(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        answer = doc(await client.call_tool("submit_run", {"workflow_yaml": sleeper(0.5)}))
        uri = run_uri(answer["run_id"])
        async with client.listen(resource_subscriptions=[uri]) as sub:
            # The run is still sleeping: its end is an event published after the listen.
            event = await asyncio.wait_for(_first_update(sub), 30)
        assert event.uri == uri
        report = await read_json(client, uri)
        assert report["run_id"] == answer["run_id"]


async def test_the_agents_resource_is_updated_when_the_pool_works(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        async with client.listen(resource_subscriptions=[AGENTS_URI]) as sub:
            doc(await client.call_tool("submit_run", {"workflow_yaml": CONTRACT}))
            event = await asyncio.wait_for(_first_update(sub), 30)
        assert event.uri == AGENTS_URI


async def _first_update(sub: Subscription) -> ResourceUpdated:
    async for event in sub:
        if isinstance(event, ResourceUpdated):
            return event
    raise AssertionError("the stream ended without an update")


async def test_plan_workflow_names_the_catalog_roles_and_the_validate_rules(
    tmp_path: Path,
) -> None:
    async with in_memory(tmp_path) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert tuple(prompts) == PROMPT_NAMES
        assert [a.name for a in prompts["plan_workflow"].arguments or []] == ["goal"]
        got = await client.get_prompt("plan_workflow", {"goal": "add a login page"})
        [message] = got.messages
        assert isinstance(message.content, TextContent)
        text = message.content.text
        assert "add a login page" in text
        for role in load_catalog().roles:
            assert role in text
        assert "metaagent validate" in text
        assert "no cycle" in text
        assert "submit_run" in text


async def test_triage_run_shows_the_failures_and_what_to_call(tmp_path: Path) -> None:
    async with in_memory(tmp_path) as client:
        run_id = await run_to_end(client, FAILING)
        got = await client.get_prompt("triage_run", {"run_id": run_id})
        [message] = got.messages
        assert isinstance(message.content, TextContent)
        text = message.content.text
        assert run_id in text
        assert '"task_id": "build"' in text
        assert "get_task" in text
        assert "retry_run" in text
        missing = await client.get_prompt("triage_run", {"run_id": "run-nope"})
        assert isinstance(missing.messages[0].content, TextContent)
        assert "no run 'run-nope'" in missing.messages[0].content.text
