"""Fixtures shared by the dashboard's browser tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from bench.dashboard import launch

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, by its path (never a downloaded browser); one per module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        try:
            yield b
        finally:
            b.close()
