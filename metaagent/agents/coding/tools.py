"""The coding tools driven headless: the command line of each and the parsing of its documented
machine output into the answer, success or failure, and usage.

- Claude Code: ``claude -p PROMPT --output-format stream-json --verbose`` (stream-json with
  ``-p`` requires ``--verbose``): one JSON object a line; the final ``{"type": "result"}``
  gives ``is_error``, ``subtype``, ``num_turns``, ``duration_ms``, ``total_cost_usd``,
  ``usage`` and ``session_id``, its ``result`` the answer.
- Codex: ``codex exec --json -o FILE PROMPT``: JSONL events (``thread.started``,
  ``turn.completed`` with ``usage {input_tokens, cached_input_tokens, output_tokens}``,
  ``turn.failed``, ``item.*``, ``error``); the final message is written to ``FILE``.
- aider: ``aider --message PROMPT --yes-always --no-stream``, whose
  ``Tokens: 2.1k sent, 312 received. Cost: $0.01 message, $0.03 session.`` lines give usage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from metaagent.core.tasks import Usage

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Tool",
    "ToolOptions",
    "ToolResult",
    "parse_aider",
    "parse_claude",
    "parse_codex",
    "parse_tool",
    "tool_argv",
]

Tool = Literal["claude", "codex", "aider"]


@dataclass(frozen=True, slots=True)
class ToolOptions:
    """How one coding agent calls its tool; ``program`` is the executable (default: the tool's
    name, on PATH)."""

    tool: Tool
    program: str
    model: str | None = None
    args: tuple[str, ...] = ()
    max_turns: int | None = None
    allowed_tools: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool's output says: its answer, whether it reports an error (and which), the
    usage it reported, and other fields worth keeping (session id, turns, duration)."""

    text: str
    error: str | None = None
    usage: Usage | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _has(args: Sequence[str], *flags: str) -> bool:
    return any(a == f or a.startswith(f + "=") for a in args for f in flags)


def tool_argv(opts: ToolOptions, prompt: str, system: str, last_message_file: str) -> list[str]:
    """The tool's command line for one attempt. ``system`` goes to Claude Code's
    ``--append-system-prompt``; the other tools have no such flag and get it before the
    prompt. ``last_message_file`` is Codex's ``-o``."""
    args = list(opts.args)
    if opts.tool == "claude":
        argv = [opts.program, "-p", prompt]
        if opts.allowed_tools:
            argv += ["--allowedTools", *opts.allowed_tools]
        argv += ["--output-format", "stream-json", "--verbose"]
        if opts.model:
            argv += ["--model", opts.model]
        if opts.max_turns is not None:
            argv += ["--max-turns", str(opts.max_turns)]
        if system:
            argv += ["--append-system-prompt", system]
        if not _has(args, "--permission-mode", "--dangerously-skip-permissions"):
            argv += ["--permission-mode", "acceptEdits"]  # headless: edits without asking
        return argv + args
    full = f"{system}\n\n{prompt}" if system else prompt
    if opts.tool == "codex":
        argv = [opts.program, "exec", "--json", "-o", last_message_file]
        if opts.model:
            argv += ["-m", opts.model]
        own = ("--full-auto", "--sandbox", "-s", "--dangerously-bypass-approvals-and-sandbox")
        if not _has(args, *own):
            argv.append("--full-auto")  # may write in its working directory
        return [*argv, *args, full]
    argv = [opts.program, "--message", full, "--yes-always", "--no-stream",
            "--no-auto-commits", "--no-check-update"]  # fmt: skip  # metaagent commits
    if opts.model:
        argv += ["--model", opts.model]
    return argv + args


def _json_lines(data: bytes) -> list[dict[str, object]]:
    out = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _num(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def parse_claude(stdout: bytes) -> ToolResult:
    """Claude Code's stream-json: the last ``result`` message decides. Input tokens count the
    cache's too (``cache_creation_input_tokens`` + ``cache_read_input_tokens``)."""
    results = [m for m in _json_lines(stdout) if m.get("type") == "result"]
    if not results:
        return ToolResult("", "claude printed no result message (stream-json)")
    r = results[-1]
    usage_doc = r.get("usage")
    u = usage_doc if isinstance(usage_doc, dict) else {}
    usage = Usage(
        _int(u.get("input_tokens"))
        + _int(u.get("cache_creation_input_tokens"))
        + _int(u.get("cache_read_input_tokens")),
        _int(u.get("output_tokens")),
        _num(r.get("total_cost_usd")),
    )
    text = r.get("result")
    text = text if isinstance(text, str) else ""
    subtype = r.get("subtype")
    keys: tuple[str, ...] = ("subtype", "num_turns", "duration_ms", "session_id")
    extra = {k: r[k] for k in keys if k in r}
    error = None
    if r.get("is_error") is True or (isinstance(subtype, str) and subtype != "success"):
        error = f"claude ended {subtype or 'in error'}" + (f": {text[-500:]}" if text else "")
    return ToolResult(text, error, usage, extra)


def _is_message(item: object) -> bool:
    kind = item.get("type", item.get("item_type")) if isinstance(item, dict) else None
    return kind in ("agent_message", "assistant_message")


def parse_codex(stdout: bytes, last_message: str | None) -> ToolResult:
    """Codex's JSONL events: usage summed over ``turn.completed``; a ``turn.failed`` (or
    ``error`` events with no completed turn) fails the attempt; the answer is the ``-o`` file,
    else the last agent message item."""
    inp = out = 0
    completed = 0
    failed: str | None = None
    errors: list[str] = []
    answer = ""
    extra: dict[str, object] = {}
    for ev in _json_lines(stdout):
        kind = ev.get("type")
        if kind == "thread.started":
            extra["thread_id"] = ev.get("thread_id")
        elif kind == "turn.completed":
            completed += 1
            failed = None
            u = ev.get("usage")
            if isinstance(u, dict):
                inp += _int(u.get("input_tokens"))
                out += _int(u.get("output_tokens"))
        elif kind == "turn.failed":
            err = ev.get("error")
            failed = str(err.get("message") if isinstance(err, dict) else err)
        elif kind == "error":
            errors.append(str(ev.get("message")))
        elif kind == "item.completed" and _is_message(item := ev.get("item")):
            assert isinstance(item, dict)
            answer = str(item.get("text", ""))
    extra["turns"] = completed
    usage = Usage(inp, out, None) if completed else None
    text = last_message.strip() if last_message and last_message.strip() else answer
    error = None
    if failed is not None:
        error = f"codex turn failed: {failed}"
    elif not completed:
        error = "codex completed no turn" + (f": {errors[-1]}" if errors else "")
    return ToolResult(text, error, usage, extra)


_TOKENS = re.compile(
    r"Tokens: (?P<sent>[\d.,]+[kKmM]?) sent(?:, [\d.,]+[kKmM]? cache write)?"
    r"(?:, [\d.,]+[kKmM]? cache hit)?, (?P<received>[\d.,]+[kKmM]?) received\."
    r"(?: Cost: \$(?P<message>[\d.,]+) message, \$(?P<session>[\d.,]+) session\.)?"
)


def _count(text: str) -> int:
    text = text.replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    number = text[:-1] if scale != 1 else text
    return round(float(number) * scale)


def parse_aider(stdout: bytes) -> ToolResult:
    """aider's report lines: tokens summed over every ``Tokens:`` line (aider rounds them:
    ``2.1k``), cost the sum of the messages' costs. The answer is what aider printed."""
    text = stdout.decode("utf-8", errors="replace")
    lines = list(_TOKENS.finditer(text))
    if not lines:
        return ToolResult(text.strip(), None, None)
    costs = [float(m["message"].replace(",", "")) for m in lines if m["message"]]
    usage = Usage(
        sum(_count(m["sent"]) for m in lines),
        sum(_count(m["received"]) for m in lines),
        round(sum(costs), 6) if costs else None,
    )
    return ToolResult(text.strip(), None, usage, {"messages": len(lines)})


def parse_tool(tool: Tool, stdout: bytes, last_message: str | None) -> ToolResult:
    if tool == "claude":
        return parse_claude(stdout)
    if tool == "codex":
        return parse_codex(stdout, last_message)
    return parse_aider(stdout)
