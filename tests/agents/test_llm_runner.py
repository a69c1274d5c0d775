"""LLM agents against a real HTTP server on 127.0.0.1 that speaks both APIs; no network."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from metaagent import (
    AgentFailure,
    AgentSpec,
    AgentTask,
    AttemptContext,
    FunctionRunner,
    Orchestrator,
    OrchestratorConfig,
    RetryPolicy,
    WorkflowError,
)
from metaagent.agents.llm import (
    LlmConfig,
    LlmRunner,
    Provider,
    build_user_message,
    fair_shares,
    is_local,
    parse_json_answer,
    retry_after_s,
    truncate,
)
from metaagent.core.tasks import Usage
from metaagent.workflow.build import parse_workflow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# --- a loopback server speaking both protocols ------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, object]

    @property
    def user(self) -> str:
        messages = self.body["messages"]
        assert isinstance(messages, list)
        content = messages[-1]["content"]
        assert isinstance(content, str)
        return content


@dataclass
class Reply:
    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer; wait for the client to go away


Handler = Callable[[Request], Reply]


def openai_reply(text: str, *, finish: str = "stop") -> Reply:
    return Reply(
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-test-0613",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    )


def anthropic_reply(*texts: str, stop: str = "end_turn") -> Reply:
    return Reply(
        body={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-1",
            "content": [{"type": "text", "text": t} for t in texts],
            "stop_reason": stop,
            "usage": {"input_tokens": 20, "output_tokens": 5},
        }
    )


def api_error(status: int, message: str, **headers: str) -> Reply:
    return Reply(status, {"error": {"type": "error", "message": message}}, dict(headers))


class FakeApi:
    """An HTTP/1.1 server on an ephemeral port: records requests, answers with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.hanging = asyncio.Event()  # a request is being held unanswered
        self.hung_up = asyncio.Event()  # ... and its client closed the connection
        self.url = ""
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FakeApi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._conns:
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while line := await reader.readline():
                method, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = raw.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = Request(method, path, headers, json.loads(body) if body else {})
                self.requests.append(req)
                reply = self.handler(req)
                if reply.hang:
                    self.hanging.set()
                    if not await reader.read(1):
                        self.hung_up.set()
                    return
                payload = json.dumps(reply.body).encode()
                head = [f"HTTP/1.1 {reply.status} X", f"content-length: {len(payload)}"]
                head += ["content-type: application/json"]
                head += [f"{k}: {v}" for k, v in reply.headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._conns.discard(task)


@pytest.fixture
async def api() -> AsyncIterator[Callable[[Handler], Awaitable[FakeApi]]]:
    """``server = await api(handler)``: a started ``FakeApi``, stopped after the test."""
    started: list[FakeApi] = []

    async def start(handler: Handler) -> FakeApi:
        server = await FakeApi(handler).__aenter__()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.__aexit__(None, None, None)


def sequence(*replies: Reply) -> Handler:
    """A handler giving ``replies`` in turn."""
    queue = list(replies)
    return lambda req: queue.pop(0)


class RecordedSleep:
    """Stands in for ``asyncio.sleep`` in the back-off: records the delays, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def runner(
    url: str,
    provider: Provider = "openai",
    *,
    sleep: RecordedSleep | None = None,
    env: dict[str, str] | None = None,
    **kw: object,
) -> LlmRunner:
    cfg = LlmConfig(provider, "test-model", base_url=url, **kw)  # type: ignore[arg-type]
    return LlmRunner(
        cfg, env={} if env is None else env, sleep=sleep or RecordedSleep(), rng=random.Random(0)
    )


def ctx(
    prompt: str = "Summarise the design.",
    *,
    upstream: dict[str, object] | None = None,
    feedback: tuple[str, ...] = (),
    **kw: object,
) -> AttemptContext:
    task = AgentTask("t1", "write", prompt=prompt, **kw)  # type: ignore[arg-type]
    return AttemptContext(task, "run-1", 1, "llm", "llm-1", upstream or {}, ".", feedback)


# --- request shape ----------------------------------------------------------------------------


async def test_openai_request_carries_model_messages_upstream_feedback_and_key(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(sequence(openai_reply("  The answer.  ")))
    r = runner(
        server.url + "/v1/",
        env={"MY_KEY": "sk-secret"},
        api_key_env="MY_KEY",
        system="You are terse.",
        temperature=0.2,
        max_tokens=256,
    )
    out = await r.run(
        ctx(
            input={"files": ["a.py"]},
            upstream={"design": "Use a queue.", "plan": {"steps": [1, 2]}},
            feedback=("missing the risks section",),
        )
    )
    assert out == "  The answer.  "
    [req] = server.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-secret"
    assert req.body["model"] == "test-model"
    assert req.body["temperature"] == 0.2
    assert req.body["max_tokens"] == 256
    assert "response_format" not in req.body
    messages = req.body["messages"]
    assert isinstance(messages, list)
    assert messages[0] == {"role": "system", "content": "You are terse."}
    assert messages[1]["role"] == "user"
    user = req.user
    assert user.startswith("Summarise the design.")
    assert '"files": [\n    "a.py"\n  ]' in user
    assert "## Output of task `design`\n```\nUse a queue.\n```" in user
    assert '## Output of task `plan`\n```json\n{\n  "steps"' in user
    assert "- missing the risks section" in user
    assert user.index("`design`") < user.index("`plan`") < user.index("missing the risks")
    assert "sk-secret" not in json.dumps(r.describe())


async def test_anthropic_request_shape_headers_and_text_blocks_joined(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(sequence(anthropic_reply("Hello, ", "world.")))
    r = runner(server.url, "anthropic", env={"ANTHROPIC_API_KEY": "ak-1"}, system="Be kind.")
    assert await r.run(ctx()) == "Hello, world."
    [req] = server.requests
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == "ak-1"
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    assert req.body == {
        "model": "test-model",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Summarise the design."}],
        "system": "Be kind.",
    }


async def test_a_local_server_needs_no_key_and_gets_no_auth_header(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(sequence(openai_reply("ok")))
    assert await runner(server.url).run(ctx()) == "ok"
    assert "authorization" not in server.requests[0].headers


async def test_return_usage_gives_text_usage_and_served_model(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(sequence(openai_reply("hi"), anthropic_reply("yo")))
    assert await runner(server.url, return_usage=True).run(ctx()) == {
        "text": "hi",
        "usage": {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18},
        "model": "gpt-test-0613",
    }
    assert await runner(server.url, "anthropic", return_usage=True).run(ctx()) == {
        "text": "yo",
        "usage": {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25},
        "model": "claude-test-1",
    }


# --- JSON mode --------------------------------------------------------------------------------


async def test_json_output_asks_for_json_and_parses_the_answer(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    plan = {"tasks": [{"id": "a", "capability": "write"}]}
    server = await api(
        sequence(
            openai_reply(json.dumps(plan)), anthropic_reply(f"```json\n{json.dumps(plan)}\n```")
        )
    )
    assert await runner(server.url, json_output=True).run(ctx()) == plan
    assert await runner(server.url, "anthropic", json_output=True).run(ctx()) == plan
    openai_req, anthropic_req = server.requests
    assert openai_req.body["response_format"] == {"type": "json_object"}
    assert "response_format" not in anthropic_req.body
    for req in server.requests:
        assert req.user.endswith(
            "Reply with a single JSON value and nothing else: no prose, no Markdown code fences."
        )


async def test_json_output_with_invalid_json_fails_the_attempt_with_the_parse_error(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(sequence(openai_reply("Sure! Here is the plan: {tasks: []}")))
    with pytest.raises(AgentFailure, match=r"not valid JSON \(Expecting value: line 1 column 1"):
        await runner(server.url, json_output=True).run(ctx())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('```\n"x"\n```', "x"),
    ],
)
def test_parse_json_answer(text: str, expected: object) -> None:
    assert parse_json_answer(text) == expected


# --- failures and retries ---------------------------------------------------------------------


async def test_429_with_retry_after_is_retried_after_the_asked_delay(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(
        sequence(
            api_error(429, "slow down", **{"retry-after": "7"}),
            api_error(429, "slow down", **{"retry-after-ms": "250"}),
            openai_reply("finally"),
        )
    )
    sleep = RecordedSleep()
    assert await runner(server.url, sleep=sleep).run(ctx()) == "finally"
    assert len(server.requests) == 3
    assert sleep.delays == [7.0, 0.25]


async def test_500_exhausting_retries_fails_naming_status_and_attempts(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(lambda req: api_error(500, "overloaded, try later"))
    sleep = RecordedSleep()
    policy = RetryPolicy(base_s=1.0, max_s=3.0, jitter=0.0)
    r = runner(server.url, "anthropic", sleep=sleep, max_retries=3, backoff=policy)
    with pytest.raises(AgentFailure) as info:
        await r.run(ctx())
    message = str(info.value)
    assert "failed 4 time(s)" in message
    assert "HTTP 500: overloaded, try later" in message
    assert len(server.requests) == 4
    assert sleep.delays == [1.0, 2.0, 3.0]  # exponential, capped at max_s


async def test_400_fails_at_once_with_the_api_message(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(lambda req: api_error(400, "max_tokens: must be <= 8192"))
    sleep = RecordedSleep()
    with pytest.raises(AgentFailure, match=r"rejected the request \(HTTP 400\): max_tokens: must"):
        await runner(server.url, sleep=sleep).run(ctx())
    assert len(server.requests) == 1
    assert sleep.delays == []


async def test_connection_refused_is_retried_then_fails() -> None:
    async with FakeApi(sequence()) as server:
        url = server.url  # the port is free again once the server has stopped
    sleep = RecordedSleep()
    with pytest.raises(AgentFailure, match=r"failed 3 time\(s\).*ConnectError"):
        await runner(url, sleep=sleep, max_retries=2).run(ctx())
    assert len(sleep.delays) == 2


@pytest.mark.parametrize(
    ("reply", "provider", "error"),
    [
        (openai_reply("half an ans", finish="length"), "openai", "cut off at max_tokens=4096"),
        (anthropic_reply("half", stop="max_tokens"), "anthropic", "cut off at max_tokens"),
        (openai_reply("   "), "openai", "empty answer"),
        (Reply(body={"choices": []}), "openai", "no choices"),
        (Reply(body={"type": "message"}), "anthropic", "no content blocks"),
    ],
)
async def test_an_unusable_answer_fails_the_attempt(
    api: Callable[[Handler], Awaitable[FakeApi]], reply: Reply, provider: Provider, error: str
) -> None:
    server = await api(sequence(reply))
    with pytest.raises(AgentFailure, match=error):
        await runner(server.url, provider).run(ctx())


async def test_cancellation_closes_the_request(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(lambda req: Reply(hang=True))
    attempt = asyncio.create_task(runner(server.url).run(ctx()))
    await asyncio.wait_for(server.hanging.wait(), 5)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    await asyncio.wait_for(server.hung_up.wait(), 5)


# --- configuration ----------------------------------------------------------------------------


def llm_workflow(runner_fields: dict[str, object]) -> dict[str, object]:
    return {
        "name": "llm",
        "agents": [
            {
                "name": "writer",
                "capabilities": {"write": 0.9},
                "runner": {"type": "llm", **runner_fields},
            }
        ],
        "tasks": [{"id": "t", "capability": "write", "prompt": "hi"}],
    }


@pytest.mark.parametrize(
    ("provider", "variable"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")]
)
def test_a_missing_api_key_fails_at_workflow_load_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, provider: str, variable: str
) -> None:
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(
        WorkflowError, match=rf"agents\[0\].*runner: .*set the environment variable {variable}"
    ):
        parse_workflow(llm_workflow({"provider": provider, "model": "m"}))
    monkeypatch.setenv(variable, "k")
    [agent] = parse_workflow(llm_workflow({"provider": provider, "model": "m"})).agents
    assert isinstance(agent.runner, LlmRunner)


def test_a_custom_key_variable_is_named_and_read(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {"provider": "openai", "model": "m", "base_url": "https://llm.example.com/v1"}
    monkeypatch.delenv("TEAM_KEY", raising=False)
    with pytest.raises(WorkflowError, match="TEAM_KEY"):
        parse_workflow(llm_workflow({**fields, "api_key_env": "TEAM_KEY"}))
    monkeypatch.setenv("TEAM_KEY", "k")
    parse_workflow(llm_workflow({**fields, "api_key_env": "TEAM_KEY"}))


def test_workflow_fields_are_validated() -> None:
    with pytest.raises(
        WorkflowError, match=r"runner.provider: Input should be 'openai' or 'anthropic'"
    ):
        parse_workflow(llm_workflow({"provider": "gemini", "model": "m"}))
    with pytest.raises(WorkflowError, match=r"runner.temperature"):
        parse_workflow(llm_workflow({"provider": "openai", "model": "m", "temperature": 5}))
    with pytest.raises(WorkflowError, match=r"runner.max_token: Extra inputs"):
        parse_workflow(llm_workflow({"provider": "openai", "model": "m", "max_token": 5}))


def test_without_httpx_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # makes `import httpx` raise ImportError
    with pytest.raises(WorkflowError, match=r"pip install 'metaagent\[llm\]'"):
        parse_workflow(
            llm_workflow({"provider": "openai", "model": "m", "base_url": "http://localhost:1"})
        )


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8080", True),
        ("http://127.3.4.5", True),
        ("https://api.openai.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("http://localhost.evil.com", False),
    ],
)
def test_is_local(url: str, local: bool) -> None:
    assert is_local(url) is local


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "20", "retry-after": "9"}, 0.02),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"retry-after": "-1"}, None),
        ({}, None),
    ],
)
def test_retry_after_s(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_s(headers) == seconds


def test_retry_after_is_capped_by_the_backoff_bound() -> None:
    cfg = LlmConfig("openai", "m", base_url="http://127.0.0.1:1", backoff=RetryPolicy(max_s=5.0))
    assert LlmRunner(cfg, env={})._delay(1, 600.0) == 5.0


# --- the prompt template ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "budget", "shares"),
    [
        ([10, 20], 100, [10, 20]),
        ([10, 500, 500], 310, [10, 150, 150]),
        ([1000, 5], 100, [95, 5]),
        ([], 100, []),
        ([7, 7], 0, [0, 0]),
    ],
)
def test_fair_shares(sizes: list[int], budget: int, shares: list[int]) -> None:
    assert fair_shares(sizes, budget) == shares


def test_truncate_keeps_head_and_tail() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("0123456789" * 3, 9) == "012345\n[... 21 characters cut ...]\n789"


def test_large_upstream_outputs_are_cut_to_the_budget_small_ones_kept() -> None:
    upstream: dict[str, object] = {"small": "tiny", "big": "x" * 50_000, "list": list(range(9000))}
    user = build_user_message(ctx(upstream=upstream), max_upstream_chars=3000)
    assert "```\ntiny\n```" in user
    assert user.count("characters cut") == 2
    assert len(user) < 3000 + 500


def test_markdown_in_an_upstream_output_cannot_close_its_fence() -> None:
    user = build_user_message(ctx(upstream={"doc": "see\n```py\nx = 1\n```"}))
    assert "````\nsee\n```py\nx = 1\n```\n````" in user


def test_an_empty_prompt_names_the_task() -> None:
    assert build_user_message(ctx("", input=[1])).startswith("Do task `t1` (write).\n\n## Input")


# --- end to end -------------------------------------------------------------------------------


async def test_orchestrator_runs_a_dag_whose_llm_outputs_reach_the_dependent(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    def answer(req: Request) -> Reply:
        topic = req.user.split("\n", 1)[0]
        if req.path == "/v1/messages":
            return anthropic_reply(f"risks of {topic}")
        return openai_reply(json.dumps({"design": topic}))

    server = await api(answer)
    llm = {"type": "llm", "base_url": server.url}
    wf = parse_workflow(
        {
            "name": "e2e",
            "agents": [
                {
                    "name": "architect",
                    "capabilities": {"design": 0.9},
                    "runner": {
                        **llm,
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "base_url": server.url + "/v1",
                        "json_output": True,
                    },
                },
                {
                    "name": "reviewer",
                    "capabilities": {"review": 0.9},
                    "runner": {**llm, "provider": "anthropic", "model": "claude-x"},
                },
            ],
            "tasks": [
                {"id": "design", "capability": "design", "prompt": "a cache"},
                {"id": "review", "capability": "review", "prompt": "the cache"},
            ],
        }
    )

    def merge(c: AttemptContext) -> object:
        return dict(c.upstream)

    # The dependent is a Python agent that returns what it was given.
    agents = [*wf.agents, AgentSpec("merger", {"merge": 1.0}, FunctionRunner(merge))]
    tasks = [*wf.tasks, AgentTask("merge", "merge", depends_on=("design", "review"))]
    cfg = OrchestratorConfig(retry=RetryPolicy(base_s=0.001, jitter=0.0))
    async with Orchestrator(agents, cfg) as orch:
        batch = await orch.execute_batch(tasks)
    assert batch.ok, [r.error for r in batch.results]
    outputs = {r.task_id: r.output for r in batch.results}
    assert outputs["merge"] == {"design": {"design": "a cache"}, "review": "risks of the cache"}
    assert sorted(r.path for r in server.requests) == ["/v1/chat/completions", "/v1/messages"]


async def test_the_attempt_keeps_the_tokens_the_api_reported(
    api: Callable[[Handler], Awaitable[FakeApi]],
) -> None:
    server = await api(sequence(openai_reply("hi"), anthropic_reply("yo")))
    first, second = ctx(), ctx()
    assert await runner(server.url).run(first) == "hi"
    assert first.usage == Usage(11, 7, None)
    assert await runner(server.url, "anthropic").run(second) == "yo"
    assert second.usage == Usage(20, 5, None)
