"""A long-lived agent speaking metaagent's JSON-lines protocol (one request per line on stdin).

It "works" on a task by waiting ``input.seconds`` (default 0.2) and answers with what it did:
the task id, its process id and the wall-clock time (``time.time()``) the work started. Work
runs in a thread per task, so heartbeats are answered while tasks run. Used by
examples/pool/workflow.yaml and ``python -m bench failover``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time


def main() -> None:
    lock = threading.Lock()

    def reply(message: dict[str, object]) -> None:
        with lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def work(request: dict[str, object]) -> None:
        task = request["task"]
        assert isinstance(task, dict)
        spec = task.get("input") if isinstance(task.get("input"), dict) else {}
        assert isinstance(spec, dict)
        started = time.time()
        time.sleep(float(spec.get("seconds", 0.2)))
        if spec.get("fail"):
            reply({"id": request["id"], "ok": False, "error": f"asked to fail: {task['id']}"})
            return
        output = {"task": task["id"], "pid": os.getpid(), "started": started}
        reply({"id": request["id"], "ok": True, "output": output})

    for line in sys.stdin:
        request = json.loads(line)
        kind = request.get("type")
        if kind == "ping":
            reply({"id": request["id"], "type": "pong"})
        elif kind == "task":
            threading.Thread(target=work, args=(request,), daemon=True).start()
        elif kind == "shutdown":
            break


if __name__ == "__main__":
    main()
