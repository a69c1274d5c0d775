"""``python -m metaagent.cli``: the command line."""

from metaagent.cli.app import main

main()
