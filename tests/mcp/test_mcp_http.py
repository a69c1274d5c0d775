"""``/mcp`` on a real ``metaagent serve`` on 127.0.0.1, through the SDK's streamable HTTP client:
401 without the token, 403 with the read-only one, 421 for a foreign Host (DNS rebinding); with
the token the contract flow, and the run submitted over MCP is the service's (``GET /v1/runs``).
Then ``metaagent mcp --server`` (attached, over stdio) sees the same runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import httpx2
import pytest
from contract import CONTRACT  # tests/ is on the path (rootdir conftest)
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated
from mcp_helpers import doc, sleeper
from service.server_helpers import READ_TOKEN, TOKEN, Server, start_server

from metaagent.mcp.server import run_uri
from metaagent.mcp.tools import MAX_WAIT_S

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mcp.client.subscriptions import Subscription

pytestmark = pytest.mark.timeout(120)

INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "probe", "version": "0"}},
}  # fmt: skip
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("mcp-http")
    srv = start_server(tmp)
    try:
        yield srv
    finally:
        srv.stop()


def post_mcp(server: Server, token: str | None, host: str | None = None) -> httpx.Response:
    headers = dict(MCP_HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if host is not None:
        headers["Host"] = host
    with httpx.Client(base_url=server.url, timeout=30) as http:
        return http.post("/mcp", json=INITIALIZE, headers=headers)


def test_mcp_needs_the_token(server: Server) -> None:
    assert post_mcp(server, None).status_code == 401
    assert post_mcp(server, "wrong").status_code == 401
    assert post_mcp(server, READ_TOKEN).status_code == 403
    assert post_mcp(server, TOKEN).status_code == 200


def test_a_foreign_host_is_refused_dns_rebinding(server: Server) -> None:
    assert post_mcp(server, TOKEN, host="evil.example:80").status_code == 421


async def _wait(client: Client, run_id: str) -> dict[str, Any]:
    seen: list[float] = []
    all_done = asyncio.Event()

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(done)
        if done == total:
            all_done.set()

    final = doc(
        await client.call_tool(
            "wait_run", {"run_id": run_id, "timeout_s": MAX_WAIT_S}, progress_callback=progress
        )
    )
    assert final["still_running"] is False
    # Progress callbacks run in tasks of their own: the last may trail the result.
    await asyncio.wait_for(all_done.wait(), 10)
    assert seen == sorted(set(seen))
    return final


async def _first_update(sub: Subscription) -> ResourceUpdated:
    async for event in sub:
        if isinstance(event, ResourceUpdated):
            return event
    raise AssertionError("the stream ended without an update")


async def test_the_contract_flow_over_streamable_http(server: Server) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        transport = streamable_http_client(server.url + "/mcp", http_client=http)
        async with Client(transport) as client:
            answer = doc(await client.call_tool("submit_run", {"workflow_yaml": CONTRACT}))
            run_id = answer["run_id"]
            final = await _wait(client, run_id)
            assert final["state"] == "succeeded"
            task = doc(await client.call_tool("get_task", {"run_id": run_id, "task_id": "tests"}))
            assert task["agent"] == "careful-tester"
            why = doc(
                await client.call_tool("explain_task", {"run_id": run_id, "task_id": "tests"})
            )
            assert why["decisions"][0]["route"]["spec"] == "careful-tester"

            nap = doc(await client.call_tool("submit_run", {"workflow_yaml": sleeper(0.5)}))
            async with client.listen(resource_subscriptions=[run_uri(nap["run_id"])]) as sub:
                event = await asyncio.wait_for(_first_update(sub), 30)
            assert event.uri == run_uri(nap["run_id"])
    with server.client() as rest:
        listed = {r["run_id"]: r for r in rest.get("/v1/runs").json()["runs"]}
    assert listed[run_id]["state"] == "succeeded"
    assert listed[run_id]["name"] == "contract-example"


def attached(tmp: Path, server: Server, token: str) -> StdioServerParameters:
    env = {"METAAGENT_SERVER": server.url, "METAAGENT_TOKEN": token}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "metaagent.cli", "mcp"], cwd=tmp, env=env
    )


async def test_attached_over_stdio_sees_the_services_runs(server: Server, tmp_path: Path) -> None:
    with (tmp_path / "stderr.txt").open("w") as errlog:
        transport = stdio_client(attached(tmp_path, server, TOKEN), errlog=errlog)
        async with Client(transport) as client:
            answer = doc(
                await client.call_tool(
                    "submit_run", {"workflow_yaml": sleeper(0.5), "labels": {"via": "stdio"}}
                )
            )
            run_id = answer["run_id"]
            async with client.listen(resource_subscriptions=[run_uri(run_id)]) as sub:
                event = await asyncio.wait_for(_first_update(sub), 30)  # over the WebSocket
            assert event.uri == run_uri(run_id)
            final = await _wait(client, run_id)  # over SSE
            assert final["state"] == "succeeded"
            mine = doc(await client.call_tool("list_runs", {"label": "via:stdio"}))
            assert [r["run_id"] for r in mine["runs"]] == [run_id]
    with server.client() as rest:
        run = rest.get(f"/v1/runs/{run_id}").json()
    assert run["labels"] == {"via": "stdio"}
    assert run["state"] == "succeeded"


def test_attached_with_a_wrong_token_says_so_at_once(server: Server, tmp_path: Path) -> None:
    env = {**os.environ, "METAAGENT_SERVER": server.url, "METAAGENT_TOKEN": "wrong"}
    done = subprocess.run(
        [sys.executable, "-m", "metaagent.cli", "mcp"], capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert "set METAAGENT_TOKEN" in done.stderr
    assert done.stdout == ""
