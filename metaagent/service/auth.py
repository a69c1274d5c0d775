"""Bearer tokens: where the server's token comes from, and checking one in constant time.

The read-write token is ``METAAGENT_TOKEN``, else the first line of ``--token-file``, else a
token generated at the first start into ``.metaagent/token`` beside the journal (mode 0600).
``METAAGENT_READ_TOKEN``, when set, may read and watch but not change anything.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Access", "Tokens", "bearer", "load_tokens"]


class Access(Enum):
    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True, slots=True)
class Tokens:
    write: str
    read: str | None = None
    generated: Path | None = None  # the file a new token was written to, to print its path

    def check(self, given: str | None) -> Access:
        """What ``given`` may do; every comparison takes the same time whatever matches."""
        if not given:
            return Access.NONE
        raw = given.encode()
        write = hmac.compare_digest(raw, self.write.encode())
        read = self.read is not None and hmac.compare_digest(raw, self.read.encode())
        if write:
            return Access.WRITE
        return Access.READ if read else Access.NONE


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenError(ValueError):
    """A token file that cannot be read, or holds no token."""


def load_tokens(token_file: Path | None, default_dir: Path) -> Tokens:
    """The server's tokens, from the environment, ``token_file`` or a generated file in
    ``default_dir``. Raises ``TokenError`` naming the file at fault."""
    read = os.environ.get("METAAGENT_READ_TOKEN") or None
    env = os.environ.get("METAAGENT_TOKEN")
    if env:
        return Tokens(env.strip(), read)
    if token_file is not None:
        return Tokens(_read_token(token_file), read)
    path = default_dir / "token"
    if path.exists():
        return Tokens(_read_token(path), read)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return Tokens(token, read, generated=path)


def _read_token(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"--token-file {path}: {exc}") from None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise TokenError(f"--token-file {path}: empty (the token is its first line)")
    return token
