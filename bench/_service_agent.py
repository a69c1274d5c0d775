"""The no-op agent of ``python -m bench service`` (imported by the server it starts)."""

from __future__ import annotations


async def noop(_: object) -> None:
    """The work: none; what is measured is the service around it."""
    return None
