"""Stand-ins for Claude Code, Codex and aider: they parse their tool's command line, act on
``@`` directives in the prompt (edit files in the working directory, fail, hang, overrun,
probe a sandbox) and print the tool's documented machine output.

Directives, one a line:

- ``@write PATH=TEXT``, ``@append PATH=TEXT`` (``\\n`` in TEXT is a new line);
  ``@retry-write PATH=TEXT`` writes from attempt 2 on (``METAAGENT_ATTEMPT``);
- ``@fail``; ``@fail-first`` (attempt 1 only); ``@crash`` (exit 3, no result); ``@hang``;
  ``@wait-for PATH`` (until it exists); ``@overrun`` (huge usage);
- sandbox probes, recorded in ``probe.txt``: ``@escape PATH``, ``@connect PORT``, ``@fork N``,
  ``@alloc MB`` (in a child process).

``FAKE_SCRIPT`` names a JSON file of directives by task id, acted on before the prompt's.
With ``FAKE_LOG_DIR`` set, the prompt, argv and cwd are saved there as ``TASK-ATTEMPT.json``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid


def _unescape(text: str) -> str:
    """``\\n`` is a new line, ``\\\\`` a backslash."""
    return re.sub(r"\\(n|\\)", lambda m: "\n" if m.group(1) == "n" else "\\", text)


def _fmt(n: int) -> str:  # aider's token counts: 950, 1.2k, 12k
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n / 1000:.1f}k"
    return f"{round(n / 1000)}k"


def _probe(line: str) -> str:
    word, _, arg = line.partition(" ")
    try:
        if word == "@escape":
            with open(arg, "w") as fh:
                fh.write("escaped")
            return f"escape {arg}: written"
        if word == "@connect":
            with socket.create_connection(("127.0.0.1", int(arg)), timeout=3) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                s.recv(100)
            return f"connect {arg}: connected"
        if word == "@alloc":  # a child that touches N MB: killed when over the memory cap
            code = f"b = bytearray({int(arg)} * 1024 * 1024); print(len(b))"
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
            return f"alloc {arg}: status {done.returncode}"
        if word == "@fork":
            procs = []
            try:
                for _ in range(int(arg)):
                    procs.append(subprocess.Popen(["sleep", "5"]))
            except OSError as exc:
                return f"fork {arg}: stopped after {len(procs)}: {exc}"
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
            return f"fork {arg}: all {len(procs)} started"
    except OSError as exc:
        return f"{word[1:]} {arg}: denied: {exc}"
    return f"unknown probe {line}"


def _act(prompt: str) -> tuple[str | None, list[str], dict[str, int]]:
    """Carry out the directives; return (failure or None, files touched, usage)."""
    attempt = os.environ.get("METAAGENT_ATTEMPT", "1")
    script = os.environ.get("FAKE_SCRIPT")  # JSON: task id -> directives, besides the prompt's
    if script:
        with open(script) as fh:
            lines = json.load(fh).get(os.environ.get("METAAGENT_TASK_ID", ""), [])
        prompt = "\n".join([*lines, prompt])
    touched: list[str] = []
    probes: list[str] = []
    usage = {"input": 1000 + len(prompt), "output": 200}
    failure = None
    for raw in prompt.splitlines():
        line = raw.strip()
        if line.startswith("@retry-write ") and attempt != "1":
            line = "@write " + line.split(" ", 1)[1]
        if line.startswith(("@write ", "@append ")):
            word, _, rest = line.partition(" ")
            path, _, text = rest.partition("=")
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "a" if word == "@append" else "w") as fh:
                fh.write(_unescape(text) + "\n")
            touched.append(path)
        elif line == "@fail" or (line == "@fail-first" and attempt == "1"):
            failure = f"the task could not be done (attempt {attempt})"
        elif line == "@crash":
            sys.stderr.write("fake: crashed\n")
            sys.exit(3)
        elif line == "@hang":
            time.sleep(3600)
        elif line.startswith("@wait-for "):
            while not os.path.exists(line.split(" ", 1)[1]):
                time.sleep(0.05)
        elif line == "@overrun":
            usage = {"input": 5_000_000, "output": 2_000_000}
        elif line.startswith(("@escape ", "@connect ", "@fork ", "@alloc ")):
            probes.append(_probe(line))
    if probes:
        with open("probe.txt", "w") as fh:
            fh.write("\n".join(probes) + "\n")
        touched.append("probe.txt")
    return failure, touched, usage


def _log(tool: str, prompt: str, argv: list[str]) -> None:
    d = os.environ.get("FAKE_LOG_DIR")
    if d:
        task = os.environ.get("METAAGENT_TASK_ID", "task")
        name = f"{task}-{os.environ.get('METAAGENT_ATTEMPT', '0')}"
        with open(os.path.join(d, f"{name}.json"), "w") as fh:
            doc = {
                "tool": tool,
                "prompt": prompt,
                "argv": argv,
                "cwd": os.getcwd(),
                "pid": os.getpid(),
            }
            json.dump(doc, fh)


def _value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def _emit(obj: dict[str, object]) -> None:
    print(json.dumps(obj), flush=True)


def claude(argv: list[str]) -> int:
    prompt = _value(argv, "-p")
    if prompt is None:
        sys.stderr.write("fake claude: only -p (print mode) is supported\n")
        return 2
    if _value(argv, "--output-format") == "stream-json" and "--verbose" not in argv:
        sys.stderr.write(
            "Error: When using --print, --output-format=stream-json requires --verbose\n"
        )
        return 1
    system = _value(argv, "--append-system-prompt") or ""
    _log("claude", prompt, argv)
    sid = str(uuid.uuid4())
    _emit(
        {
            "type": "system",
            "subtype": "init",
            "session_id": sid,
            "cwd": os.getcwd(),
            "model": _value(argv, "--model") or "claude-sonnet-4-5",
            "tools": ["Read", "Edit"],
        }
    )
    failure, touched, usage = _act(prompt + "\n" + system)
    turns = 1 + len(touched)
    max_turns = _value(argv, "--max-turns")
    subtype = "success"
    if failure:
        subtype = "error_during_execution"
    elif max_turns is not None and turns > int(max_turns):
        subtype, failure = "error_max_turns", f"reached max turns ({max_turns})"
    for path in touched:
        _emit(
            {
                "type": "assistant",
                "session_id": sid,
                "message": {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "name": "Edit", "input": {"file_path": path}}],
                },
            }
        )
    text = failure or f"Changed {', '.join(touched) or 'nothing'}."
    cost = round(usage["input"] * 3e-6 + usage["output"] * 15e-6, 6)
    _emit(
        {
            "type": "result",
            "subtype": subtype,
            "is_error": failure is not None,
            "duration_ms": 1234,
            "duration_api_ms": 1000,
            "num_turns": turns,
            "result": text,
            "session_id": sid,
            "total_cost_usd": cost,
            "usage": {
                "input_tokens": usage["input"] - 600,
                "cache_creation_input_tokens": 400,
                "cache_read_input_tokens": 200,
                "output_tokens": usage["output"],
            },
        }
    )
    return 1 if failure else 0


def codex(argv: list[str]) -> int:
    if argv[:1] != ["exec"] or "--json" not in argv:
        sys.stderr.write("fake codex: only `codex exec --json` is supported\n")
        return 2
    prompt = argv[-1]
    last = _value(argv, "-o") or _value(argv, "--output-last-message")
    _log("codex", prompt, argv)
    _emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    _emit({"type": "turn.started"})
    failure, touched, usage = _act(prompt)
    if failure:
        _emit({"type": "error", "message": failure})
        _emit({"type": "turn.failed", "error": {"message": failure}})
        return 1
    if touched:
        _emit(
            {
                "type": "item.completed",
                "item": {
                    "id": "item_0",
                    "type": "file_change",
                    "changes": [{"path": p, "kind": "update"} for p in touched],
                    "status": "completed",
                },
            }
        )
    text = f"Changed {', '.join(touched) or 'nothing'}."
    _emit(
        {"type": "item.completed", "item": {"id": "item_1", "type": "agent_message", "text": text}}
    )
    _emit(
        {
            "type": "turn.completed",
            "usage": {
                "input_tokens": usage["input"],
                "cached_input_tokens": usage["input"] // 2,
                "output_tokens": usage["output"],
            },
        }
    )
    if last:
        with open(last, "w") as fh:
            fh.write(text + "\n")
    return 0


def aider(argv: list[str]) -> int:
    prompt = _value(argv, "--message")
    if prompt is None or "--yes-always" not in argv:
        sys.stderr.write("fake aider: needs --message and --yes-always\n")
        return 2
    _log("aider", prompt, argv)
    print("Aider v0.86.0\nModel: gpt-4o with diff edit format\nGit repo: .git")
    failure, touched, usage = _act(prompt)
    for path in touched:
        print(f"Applied edit to {path}")
    cost = round(usage["input"] * 2.5e-6 + usage["output"] * 10e-6, 4)
    print(
        f"Tokens: {_fmt(usage['input'])} sent, {_fmt(usage['output'])} received. "
        f"Cost: ${cost:.4f} message, ${cost:.4f} session."
    )
    if failure:
        print(f"Error: {failure}", file=sys.stderr)
        return 1
    return 0


def main(tool: str) -> None:
    sys.exit({"claude": claude, "codex": codex, "aider": aider}[tool](sys.argv[1:]))
