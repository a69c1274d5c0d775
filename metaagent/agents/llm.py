"""Agents that are language models: the task goes to a chat-completion API, the answer comes back.

Two wire protocols: ``openai`` (``POST {base_url}/chat/completions``, which local servers such as
vLLM, llama.cpp and Ollama also speak) and ``anthropic`` (``POST {base_url}/v1/messages``). httpx
is imported only when an LLM agent is built, so metaagent works without the ``llm`` extra.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from metaagent.agents.ratelimit import ProviderLimiter, admit
from metaagent.core.retry import RetryPolicy, compute_backoff
from metaagent.core.tasks import Usage
from metaagent.errors import AgentFailure, WorkflowError

if TYPE_CHECKING:
    import httpx

    from metaagent.agents.base import AttemptContext

Provider = Literal["openai", "anthropic"]
Sleep = Callable[[float], Awaitable[None]]

ANTHROPIC_VERSION = "2023-06-01"
_IN_OUT = ("input_tokens", "output_tokens")
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
_BACKTICKS = re.compile("`+")
_JSON_INSTRUCTION = (
    "Reply with a single JSON value and nothing else: no prose, no Markdown code fences."
)


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """How an LLM agent calls its model. Units are in the names.

    ``base_url`` and ``api_key_env`` default per provider. ``max_retries`` counts the extra
    requests made after a transient failure (HTTP 408/429/5xx, a connection error or timeout),
    spaced by ``backoff`` or by the server's ``Retry-After`` (capped at ``backoff.max_s``).
    ``max_upstream_chars`` bounds the dependencies' outputs quoted in the prompt.
    """

    provider: Provider
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    system: str = ""
    temperature: float | None = None
    max_tokens: int = 4096
    json_output: bool = False
    return_usage: bool = False
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_s=1.0, max_s=30.0))
    max_upstream_chars: int = 24_000
    requests_per_min: float | None = None  # per provider key (``agents.ratelimit``)
    tokens_per_min: int | None = None

    def __post_init__(self) -> None:
        if self.provider not in _PROVIDERS:
            raise ValueError(f"provider must be one of {sorted(_PROVIDERS)}, not {self.provider!r}")
        if not self.model:
            raise ValueError("model must be a non-empty string")
        if self.max_tokens < 1 or self.max_retries < 0 or self.max_upstream_chars < 0:
            raise ValueError("max_tokens must be >= 1; max_retries, max_upstream_chars >= 0")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")

    @property
    def url(self) -> str:
        """The endpoint requests go to."""
        p = _PROVIDERS[self.provider]
        return (self.base_url or p.default_base_url).rstrip("/") + p.path

    @property
    def key_env(self) -> str:
        return self.api_key_env or _PROVIDERS[self.provider].default_key_env


# --- the prompt -------------------------------------------------------------------------------


def build_user_message(
    ctx: AttemptContext, *, json_output: bool = False, max_upstream_chars: int = 24_000
) -> str:
    """The user message for one attempt: the one place the prompt template lives.

    In order, each section present only when it has content::

        {task prompt}
        ## Input                      the task's ``input`` as JSON
        ## Output of task `{id}`      one per dependency: text as is, anything else as JSON,
                                      all together cut to ``max_upstream_chars`` (see below)
        ## Problems with your previous answer   ``ctx.feedback``, one bullet each
        ## Answer format              the JSON instruction, when ``json_output``

    The upstream budget is shared fairly: outputs smaller than an equal share are quoted whole
    and what they leave is split among the larger ones, which keep their head and tail around a
    ``[... N characters cut ...]`` marker.
    """
    parts = [ctx.task.prompt.strip() or f"Do task `{ctx.task.id}` ({ctx.task.capability})."]
    if ctx.task.input is not None:
        parts.append("## Input\n" + _fenced(_as_json(ctx.task.input), "json"))
    if ctx.upstream:
        ids = list(ctx.upstream)
        texts = [_render(ctx.upstream[i]) for i in ids]
        shares = fair_shares([len(t) for t, _ in texts], max_upstream_chars)
        for tid, (text, lang), share in zip(ids, texts, shares, strict=True):
            parts.append(f"## Output of task `{tid}`\n" + _fenced(truncate(text, share), lang))
    if ctx.feedback:
        bullets = "\n".join(f"- {p}" for p in ctx.feedback)
        parts.append(
            f"## Problems with your previous answer\nIt was rejected. Fix these:\n{bullets}"
        )
    if json_output:
        parts.append("## Answer format\n" + _JSON_INSTRUCTION)
    return "\n\n".join(parts)


def fair_shares(sizes: list[int], budget: int) -> list[int]:
    """Split ``budget`` characters: sizes under an equal share keep all, the rest share equally."""
    shares = [0] * len(sizes)
    left = budget
    for rank, i in enumerate(sorted(range(len(sizes)), key=sizes.__getitem__)):
        shares[i] = min(sizes[i], left // (len(sizes) - rank))
        left -= shares[i]
    return shares


def truncate(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping two thirds head and one third tail."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[len(text) - tail :]}"


def _render(output: object) -> tuple[str, str]:
    # Text answers (another LLM's report, say) read better verbatim than as one escaped line.
    return (output, "") if isinstance(output, str) else (_as_json(output), "json")


def _as_json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _fenced(text: str, lang: str) -> str:
    # A fence longer than any backtick run inside, so quoted Markdown cannot close it early.
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def parse_json_answer(text: str) -> object:
    """The answer as JSON; a Markdown fence around it is tolerated. Raises ``AgentFailure``."""
    body = text.strip()
    if body.startswith("```") and body.endswith("```"):
        body = body[body.find("\n") + 1 : -3].strip() if "\n" in body else body[3:-3]
    try:
        value: object = json.loads(body)
    except ValueError as exc:
        snippet = text if len(text) <= 300 else text[:300] + "..."
        raise AgentFailure(f"the model's answer is not valid JSON ({exc}): {snippet!r}") from None
    return value


# --- the two wire protocols -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What a provider's response body says: the text, the model that served it, token counts."""

    text: str
    model: str | None
    usage: dict[str, int]


@dataclass(frozen=True, slots=True)
class _Protocol:
    path: str
    default_base_url: str
    default_key_env: str
    headers: Callable[[str | None], dict[str, str]]
    body: Callable[[LlmConfig, str], dict[str, object]]
    parse: Callable[[LlmConfig, object], Answer]


def _openai_headers(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def _openai_body(cfg: LlmConfig, user: str) -> dict[str, object]:
    messages = [{"role": "system", "content": cfg.system}] if cfg.system else []
    messages.append({"role": "user", "content": user})
    body: dict[str, object] = {
        "model": cfg.model,
        "messages": messages,
        "max_tokens": cfg.max_tokens,
    }
    if cfg.temperature is not None:
        body["temperature"] = cfg.temperature
    if cfg.json_output:
        body["response_format"] = {"type": "json_object"}
    return body


def _openai_parse(cfg: LlmConfig, data: object) -> Answer:
    choices = _get(data, "choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = _get(choice, "message")
    if message is None:
        raise AgentFailure(f"unexpected response, no choices[0].message: {_short(data)}")
    refusal = _get(message, "refusal")
    if isinstance(refusal, str) and refusal:
        raise AgentFailure(f"the model refused: {refusal}")
    if _get(choice, "finish_reason") == "length":
        raise AgentFailure(f"the answer was cut off at max_tokens={cfg.max_tokens}")
    content = _get(message, "content")
    usage = _get(data, "usage")
    return Answer(
        content if isinstance(content, str) else "",
        _str_or_none(_get(data, "model")),
        _usage(_get(usage, "prompt_tokens"), _get(usage, "completion_tokens")),
    )


def _anthropic_headers(key: str | None) -> dict[str, str]:
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if key:
        headers["x-api-key"] = key
    return headers


def _anthropic_body(cfg: LlmConfig, user: str) -> dict[str, object]:
    body: dict[str, object] = {
        "model": cfg.model,
        "max_tokens": cfg.max_tokens,
        "messages": [{"role": "user", "content": user}],
    }
    if cfg.system:
        body["system"] = cfg.system
    if cfg.temperature is not None:
        body["temperature"] = cfg.temperature
    return body


def _anthropic_parse(cfg: LlmConfig, data: object) -> Answer:
    blocks = _get(data, "content")
    if not isinstance(blocks, list):
        raise AgentFailure(f"unexpected response, no content blocks: {_short(data)}")
    stop = _get(data, "stop_reason")
    if stop == "max_tokens":
        raise AgentFailure(f"the answer was cut off at max_tokens={cfg.max_tokens}")
    if stop == "refusal":
        raise AgentFailure("the model refused to answer")
    text = "".join(
        t for b in blocks if _get(b, "type") == "text" and isinstance(t := _get(b, "text"), str)
    )
    usage = _get(data, "usage")
    return Answer(
        text,
        _str_or_none(_get(data, "model")),
        _usage(_get(usage, "input_tokens"), _get(usage, "output_tokens")),
    )


_PROVIDERS: dict[str, _Protocol] = {
    "openai": _Protocol(
        "/chat/completions",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        _openai_headers,
        _openai_body,
        _openai_parse,
    ),
    "anthropic": _Protocol(
        "/v1/messages",
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
        _anthropic_headers,
        _anthropic_body,
        _anthropic_parse,
    ),
}


def _get(node: object, key: str) -> object:
    return node.get(key) if isinstance(node, dict) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _usage(inp: object, out: object) -> dict[str, int]:
    if not isinstance(inp, int) or not isinstance(out, int):
        return {}
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


def _short(data: object, limit: int = 300) -> str:
    text = json.dumps(data, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def api_error_message(status: int, body: bytes) -> str:
    """The API's own error message (both providers nest it in ``error.message``), else the body."""
    try:
        data: object = json.loads(body)
    except ValueError:
        data = None
    message = _get(_get(data, "error"), "message")
    if isinstance(message, str) and message:
        return message
    text = body.decode("utf-8", errors="replace").strip()
    return (text[:300] + "...") if len(text) > 300 else (text or f"(empty body, HTTP {status})")


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms`` or ``Retry-After`` in seconds.

    The HTTP-date form of ``Retry-After`` is not read (it needs the wall clock); the
    exponential back-off applies instead.
    """
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


def is_local(url: str) -> bool:
    """True when ``url`` names this machine (loopback), where servers rarely want a key."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the runner -------------------------------------------------------------------------------


def _require_httpx() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError as exc:
        raise WorkflowError(
            "LLM agents need httpx, which comes with the `llm` extra: pip install 'metaagent[llm]'"
        ) from exc


class LlmRunner:
    """Sends each attempt to a chat-completion API; the output is the model's answer.

    The output is the answer's text, or its parsed JSON with ``json_output`` (an invalid
    answer fails the attempt). With ``return_usage`` it is ``{"text": answer, "usage":
    {"input_tokens", "output_tokens", "total_tokens"}, "model": name}`` instead.

    Construction reads the API key from ``env`` (default ``os.environ``) and raises
    ``WorkflowError`` naming the variable when it is unset, unless ``base_url`` is a loopback
    server, where the key is optional. Attempts raise ``AgentFailure``: at once for a rejected
    request (HTTP 4xx other than 408/429, with the API's message), after ``max_retries`` more
    tries for transient failures. Each attempt uses its own connection, closed on cancellation.
    ``sleep`` and ``rng`` drive the back-off, so tests can skip the waiting.
    """

    kind = "llm"

    __slots__ = ("_api_key", "_clock", "_local", "_rng", "_sleep", "config")

    def __init__(
        self,
        config: LlmConfig,
        *,
        env: Mapping[str, str] | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _require_httpx()
        self.config = config
        self._local = is_local(config.url)
        self._api_key = (os.environ if env is None else env).get(config.key_env) or None
        if self._api_key is None and not self._local:
            raise WorkflowError(
                f"the {config.provider} API key is missing: set the environment variable "
                f"{config.key_env} (or name another with api_key_env)"
            )
        self._sleep = sleep
        self._clock = clock  # with ``sleep``: the rate limits' time
        self._rng = rng if rng is not None else random.Random()

    async def run(self, ctx: AttemptContext) -> object:
        cfg = self.config
        protocol = _PROVIDERS[cfg.provider]
        user = build_user_message(
            ctx, json_output=cfg.json_output, max_upstream_chars=cfg.max_upstream_chars
        )
        data, entry = await self._post(protocol.body(cfg, user), protocol.headers(self._api_key))
        answer = protocol.parse(cfg, data)
        if entry is not None:  # the request's tokens count against its key's tokens_per_min
            ProviderLimiter.spent(entry, sum(answer.usage.get(k, 0) for k in _IN_OUT))
        if answer.usage:  # the attempt's tokens (the API gives no money: cost_usd stays null)
            ctx.usage = Usage(answer.usage["input_tokens"], answer.usage["output_tokens"])
        if not answer.text.strip():
            raise AgentFailure(f"{cfg.model} returned an empty answer")
        result = parse_json_answer(answer.text) if cfg.json_output else answer.text
        if cfg.return_usage:
            return {"text": result, "usage": answer.usage, "model": answer.model or cfg.model}
        return result

    async def _post(
        self, body: dict[str, object], headers: dict[str, str]
    ) -> tuple[object, list[float] | None]:
        import httpx

        cfg = self.config
        tries = cfg.max_retries + 1
        last = ""
        # A loopback server must not be reached through a proxy from the environment.
        async with httpx.AsyncClient(timeout=cfg.timeout_s, trust_env=not self._local) as client:
            for n in range(1, tries + 1):
                wait_s: float | None = None
                entry = await admit(cfg, self._clock, self._sleep)  # the key's rate limits
                try:
                    resp = await client.post(cfg.url, json=body, headers=headers)
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}".rstrip(": ")
                else:
                    if resp.is_success:
                        return _decode(resp), entry
                    message = api_error_message(resp.status_code, resp.content)
                    if resp.status_code not in _TRANSIENT_STATUS:
                        raise AgentFailure(
                            f"{cfg.provider} API rejected the request "
                            f"(HTTP {resp.status_code}): {message}"
                        )
                    last = f"HTTP {resp.status_code}: {message}"
                    wait_s = retry_after_s(resp.headers)
                if n < tries:
                    await self._sleep(self._delay(n, wait_s))
        raise AgentFailure(
            f"{cfg.provider} API at {cfg.url} failed {tries} time(s), giving up; last: {last}"
        )

    def _delay(self, failed: int, retry_after: float | None) -> float:
        policy = self.config.backoff
        if retry_after is not None:
            return min(policy.max_s, retry_after)
        return compute_backoff(policy, failed, self._rng)

    def describe(self) -> dict[str, object]:
        cfg = self.config
        return {
            "type": self.kind,
            "provider": cfg.provider,
            "model": cfg.model,
            "url": cfg.url,
            "json_output": cfg.json_output,
        }


def _decode(resp: httpx.Response) -> object:
    try:
        data: object = resp.json()
    except ValueError:
        raise AgentFailure(
            f"the API answered HTTP {resp.status_code} with a body that is not JSON: "
            f"{resp.text[:300]!r}"
        ) from None
    return data
