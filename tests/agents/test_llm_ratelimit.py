"""Rate limits per provider key, in requests and tokens per minute, on virtual time: LLM agents
against the loopback OpenAI-compatible server of the LLM runner's tests (every answer uses 18
tokens); the clock moves only when the limiter waits, so the start times are exact."""

from __future__ import annotations

import asyncio

import pytest

from metaagent.agents.base import AttemptContext
from metaagent.agents.llm import LlmConfig, LlmRunner
from metaagent.agents.ratelimit import ProviderLimiter
from metaagent.core.tasks import AgentTask
from metaagent.errors import WorkflowError
from metaagent.workflow.build import parse_workflow
from tests.agents.test_llm_runner import FakeApi, Reply, Request, openai_reply

pytestmark = pytest.mark.timeout(60)


class VirtualTime:
    """A clock that moves only when someone sleeps on it; the requests' times are recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.starts: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def runner(url: str, vt: VirtualTime, key_env: str = "KEY_A", **limits: float) -> LlmRunner:
    cfg = LlmConfig("openai", "m", base_url=url + "/v1", api_key_env=key_env, **limits)  # type: ignore[arg-type]
    return LlmRunner(cfg, sleep=vt.sleep, clock=vt.clock)


def ctx(n: int) -> AttemptContext:
    return AttemptContext(AgentTask(f"t{n}", "write", prompt=f"p{n}"), "run", 1, "w", "w-1")


async def test_tokens_per_minute_holds_requests_until_the_minute_has_room() -> None:
    vt = VirtualTime()

    def answer(req: Request) -> Reply:
        vt.starts.append(vt.now)
        return openai_reply("ok")

    async with FakeApi(answer) as server:
        agent = runner(server.url, vt, tokens_per_min=40)
        for n in range(7):
            assert await agent.run(ctx(n)) == "ok"
    # 18 tokens each: a request goes while the last minute holds fewer than 40 tokens.
    assert vt.starts == [0.0, 0.0, 0.0, 60.0, 60.0, 60.0, 120.0]


async def test_requests_per_minute_are_shared_by_the_agents_of_one_key() -> None:
    vt = VirtualTime()

    def answer(req: Request) -> Reply:
        vt.starts.append(vt.now)
        return openai_reply("ok")

    async with FakeApi(answer) as server:
        limited = runner(server.url, vt, key_env="KEY_SHARED", requests_per_min=2)
        same_key = runner(server.url, vt, key_env="KEY_SHARED")  # no limit of its own
        other_key = runner(server.url, vt, key_env="KEY_OTHER")
        for agent in (limited, same_key, limited, same_key):
            await agent.run(ctx(0))
        await other_key.run(ctx(1))  # a key of its own: not held (a third request at 60)
    assert vt.starts == [0.0, 0.0, 60.0, 60.0, 60.0]


async def test_concurrent_requests_wait_their_turn() -> None:
    vt = VirtualTime()
    limiter = ProviderLimiter(requests_per_min=3, clock=vt.clock, sleep=vt.sleep)
    starts: list[float] = []

    async def one() -> None:
        entry = await limiter.acquire()
        starts.append(entry[0])
        ProviderLimiter.spent(entry, 10)

    await asyncio.gather(*(one() for _ in range(7)))
    assert sorted(starts) == [0.0, 0.0, 0.0, 60.0, 60.0, 60.0, 120.0]
    assert limiter.waited_s > 0


def test_the_limits_are_workflow_fields_validated_at_load() -> None:
    def load(**limits: object) -> None:
        llm = {"type": "llm", "provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9"}
        agent = {"name": "a", "capabilities": {"x": 1.0}, "runner": {**llm, **limits}}
        parse_workflow({"name": "w", "agents": [agent], "tasks": [{"id": "t", "capability": "x"}]})

    load(tokens_per_min=1000, requests_per_min=10)
    with pytest.raises(WorkflowError, match="tokens_per_min"):
        load(tokens_per_min=0)
    with pytest.raises(WorkflowError, match="requests_per_min"):
        load(requests_per_min=-1)
