"""A long-lived agent for the ``contention`` benchmark: answers heartbeats at once and writes
the arrival time of each (``time.time()``) to the file given as its argument; a task waits
``input.seconds`` and answers. Its stdout is the JSON-lines protocol of persistent agents."""

from __future__ import annotations

import json
import sys
import threading
import time


def main(argv: list[str]) -> None:
    log = open(argv[1], "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    lock = threading.Lock()

    def reply(message: dict[str, object]) -> None:
        with lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def work(request: dict[str, object]) -> None:
        task = request["task"]
        assert isinstance(task, dict)
        raw = task.get("input")
        seconds = float(raw.get("seconds", 0.0)) if isinstance(raw, dict) else 0.0
        time.sleep(seconds)
        reply({"id": request["id"], "ok": True, "output": None})

    for line in sys.stdin:
        request = json.loads(line)
        kind = request.get("type")
        if kind == "ping":
            log.write(f"{time.time():.6f}\n")
            reply({"id": request["id"], "type": "pong"})
        elif kind == "task":
            threading.Thread(target=work, args=(request,), daemon=True).start()
        elif kind == "shutdown":
            return


if __name__ == "__main__":
    main(sys.argv)
