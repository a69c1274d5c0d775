"""A long-lived test agent speaking the JSON-lines protocol, with knobs for misbehaving.

Task input (a mapping), all optional: ``seconds`` to work; ``fail`` to answer ``ok: false``;
``exit`` (a status) to end the whole process at once, a poison task; ``memory_mb`` to hold that
much memory while working; ``hang`` to never answer the task (heartbeats still answered);
``only_attempt`` to misbehave on that attempt only. Flags: ``--crash-on-start``,
``--ignore-shutdown`` (ignores the shutdown request and SIGTERM), ``--stray`` (prints a line
that is not JSON before anything else).
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import sys
import threading
import time


def main(argv: list[str]) -> None:
    if "--crash-on-start" in argv:
        sys.stderr.write("cannot start: missing configuration\n")
        sys.exit(3)
    ignore_shutdown = "--ignore-shutdown" in argv
    if ignore_shutdown:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lock = threading.Lock()
    held: list[mmap.mmap] = []

    def reply(message: dict[str, object]) -> None:
        with lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def work(request: dict[str, object]) -> None:
        task = request["task"]
        assert isinstance(task, dict)
        raw = task.get("input")
        spec: dict[str, object] = raw if isinstance(raw, dict) else {}
        only = spec.get("only_attempt")
        misbehave = only is None or only == task.get("attempt")
        if misbehave and "exit" in spec:
            os._exit(int(str(spec["exit"])))
        if misbehave and "memory_mb" in spec:
            # Shared anonymous memory: not capped by RLIMIT_DATA, but resident once touched.
            size = int(str(spec["memory_mb"])) * 1024 * 1024
            block = mmap.mmap(-1, size)
            for offset in range(0, size, mmap.PAGESIZE):
                block[offset] = 1
            held.append(block)
        if misbehave and spec.get("hang"):
            return
        time.sleep(float(str(spec.get("seconds", 0.05))))
        if misbehave and spec.get("fail"):
            reply({"id": request["id"], "ok": False, "error": f"asked to fail: {task['id']}"})
            return
        output = {"task": task["id"], "pid": os.getpid(), "attempt": task.get("attempt")}
        reply({"id": request["id"], "ok": True, "output": output})

    if "--stray" in argv:
        print("starting up (not a reply)", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        kind = request.get("type")
        if kind == "ping":
            reply({"id": request["id"], "type": "pong"})
        elif kind == "task":
            threading.Thread(target=work, args=(request,), daemon=True).start()
        elif kind == "shutdown" and not ignore_shutdown:
            return
    while ignore_shutdown:
        time.sleep(1.0)


if __name__ == "__main__":
    main(sys.argv[1:])
