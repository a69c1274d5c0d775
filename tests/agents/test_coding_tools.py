"""The coding tools' output formats: parsed as documented, from the fakes' real output and
from hand-written samples; and their command lines."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

import pytest
from coding_support import FAKES

from metaagent.agents.coding.tools import (
    ToolOptions,
    parse_aider,
    parse_claude,
    parse_codex,
    tool_argv,
)
from metaagent.core.tasks import Usage

if TYPE_CHECKING:
    from pathlib import Path


def run_fake(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, timeout=60, check=False)


def test_claude_result_message_gives_usage_cost_and_answer(tmp_path: Path) -> None:
    opts = ToolOptions("claude", str(FAKES / "claude"), model="m1", max_turns=5)
    argv = tool_argv(opts, "@write a.txt=hello", "be brief", "unused")
    assert argv[:3] == [str(FAKES / "claude"), "-p", "@write a.txt=hello"]
    assert argv[3:6] == ["--output-format", "stream-json", "--verbose"]
    assert argv[argv.index("--append-system-prompt") :][:2] == [
        "--append-system-prompt",
        "be brief",
    ]
    done = run_fake(argv, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.txt").read_text() == "hello\n"
    r = parse_claude(done.stdout)
    assert r.error is None
    assert r.text == "Changed a.txt."
    # input tokens count the cache's: (1000 + len(prompt) - 600) + 400 + 200
    tokens = 1000 + len("@write a.txt=hello\nbe brief")
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens) == (tokens, 200)
    assert r.usage.cost_usd == pytest.approx(tokens * 3e-6 + 200 * 15e-6)
    assert r.extra["num_turns"] == 2
    assert r.extra["subtype"] == "success"


def test_an_overrun_reports_huge_usage(tmp_path: Path) -> None:
    argv = tool_argv(ToolOptions("claude", str(FAKES / "claude")), "@overrun", "", "")
    r = parse_claude(run_fake(argv, tmp_path).stdout)
    assert r.usage is not None
    assert r.usage.input_tokens == 5_000_000
    assert r.usage.cost_usd == pytest.approx(45.0)


def test_claude_errors_are_named_by_subtype() -> None:
    lines = [
        {"type": "system", "subtype": "init", "session_id": "s"},
        {"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 9,
         "result": "", "session_id": "s", "total_cost_usd": 0.5,
         "usage": {"input_tokens": 10, "output_tokens": 5}},
    ]  # fmt: skip
    r = parse_claude("\n".join(json.dumps(x) for x in lines).encode())
    assert r.error == "claude ended error_max_turns"
    assert r.usage == Usage(10, 5, 0.5)
    assert parse_claude(b"not json\n").error == "claude printed no result message (stream-json)"


def test_claude_without_verbose_is_refused_like_the_real_one(tmp_path: Path) -> None:
    done = run_fake([str(FAKES / "claude"), "-p", "x", "--output-format", "stream-json"], tmp_path)
    assert done.returncode == 1
    assert b"requires --verbose" in done.stderr


def test_codex_events_and_last_message_file(tmp_path: Path) -> None:
    last = tmp_path / "last.txt"
    argv = tool_argv(ToolOptions("codex", str(FAKES / "codex"), model="o4"), "@write b.txt=x",
                     "sys", str(last))  # fmt: skip
    assert argv[1:5] == ["exec", "--json", "-o", str(last)]
    assert argv[-1] == "sys\n\n@write b.txt=x"
    done = run_fake(argv, tmp_path)
    assert done.returncode == 0, done.stderr
    r = parse_codex(done.stdout, last.read_text())
    assert r.error is None
    assert r.text == "Changed b.txt."
    assert r.usage == Usage(1000 + len("sys\n\n@write b.txt=x"), 200, None)
    assert r.extra["turns"] == 1
    assert "thread_id" in r.extra


def test_codex_turn_failed_and_usage_summed_over_turns() -> None:
    events = [
        {"type": "thread.started", "thread_id": "t"},
        {"type": "turn.completed", "usage": {"input_tokens": 100, "cached_input_tokens": 50,
                                             "output_tokens": 10}},
        {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": "hi"}},
        {"type": "turn.completed", "usage": {"input_tokens": 30, "output_tokens": 3}},
    ]  # fmt: skip
    r = parse_codex("\n".join(json.dumps(e) for e in events).encode(), None)
    assert r.usage == Usage(130, 13, None)
    assert r.text == "hi"  # no -o file: the last agent message
    failed = [*events, {"type": "turn.failed", "error": {"message": "quota exceeded"}}]
    r = parse_codex("\n".join(json.dumps(e) for e in failed).encode(), None)
    assert r.error == "codex turn failed: quota exceeded"
    r = parse_codex(json.dumps({"type": "error", "message": "stream lost"}).encode(), None)
    assert r.error == "codex completed no turn: stream lost"


def test_aider_tokens_and_cost_lines(tmp_path: Path) -> None:
    argv = tool_argv(ToolOptions("aider", str(FAKES / "aider")), "@write c.txt=y", "", "")
    assert argv[1:3] == ["--message", "@write c.txt=y"]
    assert {"--yes-always", "--no-stream", "--no-auto-commits"} <= set(argv)
    done = run_fake(argv, tmp_path)
    assert done.returncode == 0, done.stderr
    r = parse_aider(done.stdout)
    assert r.usage is not None
    assert r.usage.input_tokens == 1000  # 1014 printed by aider as "1.0k"
    assert r.usage.output_tokens == 200
    assert r.usage.cost_usd == pytest.approx(0.0045)
    text = (
        b"Tokens: 12k sent, 1.5k cache write, 2.1k cache hit, 950 received. "
        b"Cost: $0.05 message, $0.05 session.\n"
        b"Tokens: 2.3k sent, 1,204 received. Cost: $0.01 message, $0.06 session.\n"
    )
    r = parse_aider(text)
    assert r.usage == Usage(14_300, 2_154, 0.06)
    assert parse_aider(b"no report here").usage is None


def test_claude_options_only_for_claude_and_own_permission_flags_win() -> None:
    opts = ToolOptions("claude", "claude", allowed_tools=("Read", "Edit"),
                       args=("--dangerously-skip-permissions",))  # fmt: skip
    argv = tool_argv(opts, "p", "", "")
    assert argv[argv.index("--allowedTools") + 1 : argv.index("--allowedTools") + 3] == [
        "Read",
        "Edit",
    ]
    assert "--permission-mode" not in argv
    assert argv[-1] == "--dangerously-skip-permissions"
