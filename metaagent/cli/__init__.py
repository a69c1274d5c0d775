"""The ``metaagent`` command line: parse, call the library, render."""

from metaagent.cli.app import main

__all__ = ["main"]
