"""A stand-in for one LLM-bound agent call, run as its own process by the ``scwt`` benchmark.

It reads the attempt as JSON on stdin (the way ``CommandRunner`` sends it), waits for the model's
response time given in ``input.response_s``, then writes the artifact ``input.artifact`` into the
attempt's ``workdir``. Artifacts of dependent tasks quote the digests of their upstream artifacts,
so the benchmark can check that each one was built on what it depends on. Stdout is one JSON
object: the artifact's path, size and sha256.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path


def main() -> int:
    ctx: dict[str, object] = json.load(sys.stdin)
    spec = ctx["input"]
    upstream = ctx.get("upstream") or {}
    if not isinstance(spec, dict) or not isinstance(upstream, dict):
        print("input and upstream must be JSON objects", file=sys.stderr)
        return 2
    time.sleep(float(spec["response_s"]))  # the model is thinking
    lines = [
        f"# {ctx['id']}: {ctx['prompt']}",
        f"# written by {ctx['agent']} (attempt {ctx['attempt']})",
    ]
    for dep, out in sorted(upstream.items()):
        digest = out.get("sha256") if isinstance(out, dict) else None
        if not isinstance(digest, str):
            print(f"upstream {dep!r} left no artifact digest", file=sys.stderr)
            return 3
        lines.append(f"# builds on {dep}: sha256 {digest}")
    lines.append(str(spec["body"]))
    data = ("\n".join(lines) + "\n").encode()
    path = Path(str(ctx["workdir"])) / str(spec["artifact"])
    path.write_bytes(data)
    result = {"artifact": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
