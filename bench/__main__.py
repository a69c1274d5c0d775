"""Command line: ``python -m bench NAME [options]`` runs one benchmark, ``--list`` names them."""

from __future__ import annotations

import sys

from bench import BENCHMARKS

USAGE = "usage: python -m bench NAME [options]   |   python -m bench --list"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print("benchmarks: " + ", ".join(BENCHMARKS))
        return 0 if argv else 2
    if argv[0] == "--list":
        width = max(len(n) for n in BENCHMARKS)
        for name, (_, about) in BENCHMARKS.items():
            print(f"{name.ljust(width)}  {about}")
        return 0
    entry = BENCHMARKS.get(argv[0])
    if entry is None:
        print(
            f"unknown benchmark {argv[0]!r}; choose one of: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    entry[0](argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
