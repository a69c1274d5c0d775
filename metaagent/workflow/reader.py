"""The one reader of every YAML and JSON file metaagent loads (workflows, simulations, catalogs),
and the description of what is wrong with one, by file, line and field.

Bytes are decoded as UTF-8 (a UTF-8 BOM is dropped; a UTF-16 or UTF-32 BOM is honoured), then
parsed within a ``Budget`` (size, nesting depth, values with aliases expanded), duplicate keys
refused. Every failure is a ``WorkflowError`` whose ``where`` names the file, and the line and
column when there is one.
"""

from __future__ import annotations

import codecs
import stat
from typing import TYPE_CHECKING

import yaml

from metaagent.errors import WorkflowError, brief, capped
from metaagent.workflow.loader import Budget, load_text

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from pathlib import Path

    from pydantic import ValidationError

__all__ = ["Budget", "decode", "describe_errors", "parse_bytes", "read_yaml"]

# Longest BOMs first: the UTF-32-LE BOM begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_MAX_PROBLEM = 300  # characters of a parser's message kept


def read_yaml(file: Path, what: str, *, budget: Budget | None = None) -> object:
    """Parse a YAML file (JSON when its name ends in ``.json``).

    Raises ``WorkflowError`` naming the file (and line and column) when it cannot be read,
    decoded or parsed, or holds more than ``budget`` allows.
    """
    limits = budget or Budget()
    data = _read_bytes(file, what, limits.max_bytes)
    return parse_bytes(data, str(file), json=file.suffix.lower() == ".json", budget=limits)


def parse_bytes(
    data: bytes | str, source: str, *, json: bool = False, budget: Budget | None = None
) -> object:
    """Parse one YAML (or JSON) document given as bytes or text; errors name ``source``."""
    limits = budget or Budget()
    if len(data) > limits.max_bytes:
        raise WorkflowError(f"larger than {limits.max_bytes:,} bytes", where=source)
    text = decode(data, source) if isinstance(data, bytes) else data
    if json:
        text = text.replace("\t", " ")  # JSON's whitespace; a raw tab is never inside a string
    try:
        return load_text(text, json=json, budget=limits)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, source, "JSON" if json else "YAML") from None
    except RecursionError:  # pragma: no cover - the depth limit keeps the stack far from this
        raise WorkflowError("nested too deeply", where=source) from None


def decode(data: bytes, source: str) -> str:
    """``data`` as text: UTF-8 (BOM or not), or UTF-16/32 with their BOM.

    Raises ``WorkflowError`` at the line and column of the first byte that does not decode.
    """
    encoding, start = "utf-8", 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, start = name, len(bom)
            break
    body = data[start:]
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        line, column = _byte_position(body, exc.start, encoding)
        hint = "save it as UTF-8" if encoding == "utf-8" else f"a {encoding} BOM begins it"
        raise WorkflowError(
            f"not valid {encoding.upper()}: byte 0x{body[exc.start]:02x} cannot be decoded "
            f"({hint})",
            where=f"{source}:{line}:{column}",
        ) from None
    if "\0" in text:
        line, column = _text_position(text, text.index("\0"))
        raise WorkflowError(
            "holds a NUL character (a UTF-16 or UTF-32 file without a BOM? save it as UTF-8)",
            where=f"{source}:{line}:{column}",
        )
    return text


def _read_bytes(file: Path, what: str, max_bytes: int) -> bytes:
    try:
        # looked at before it is opened: opening a FIFO would wait for a writer
        if not stat.S_ISREG(file.stat().st_mode):
            raise WorkflowError(f"cannot read {what}: not a regular file", where=str(file))
        with file.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise WorkflowError(f"cannot read {what}: {exc.strerror or exc}", where=str(file)) from None
    except ValueError as exc:  # a NUL in the path
        where = str(file).replace("\0", "\\0")
        raise WorkflowError(f"cannot read {what}: {exc}", where=where) from None
    if len(data) > max_bytes:
        raise WorkflowError(f"cannot read {what}: larger than {max_bytes:,} bytes", where=str(file))
    return data


def _yaml_error(exc: yaml.YAMLError, text: str, source: str, kind: str) -> WorkflowError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = source
    if mark is not None:
        where = f"{source}:{mark.line + 1}:{mark.column + 1}"
    elif isinstance(exc, yaml.reader.ReaderError):
        line, column = _text_position(text, exc.position)
        where = f"{source}:{line}:{column}"
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    if len(problem) > _MAX_PROBLEM:
        problem = problem[: _MAX_PROBLEM - 3] + "..."
    return WorkflowError(f"invalid {kind}: {problem}", where=where)


def _byte_position(data: bytes, index: int, encoding: str) -> tuple[int, int]:
    """Line and column (1-based) of byte ``index``, counted in characters decoded before it."""
    head = data[:index].decode(encoding, errors="replace")
    return _text_position(head, len(head))


def _text_position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def describe_errors(
    exc: ValidationError, raw: dict[object, object], *, skip: Collection[str] = ()
) -> str:
    """Pydantic's errors as ``tasks[2] (id 'x').timeout_s: message`` lines, the first
    ``MAX_LISTED`` of them and then how many more.

    ``skip`` names tags pydantic adds for the chosen member of a tagged union (a runner's
    ``type``, say): they are not fields the user wrote.
    """
    return capped([f"{_where(err['loc'], raw, skip)}: {err['msg']}" for err in exc.errors()])


def _where(loc: Sequence[int | str], raw: dict[object, object], skip: Collection[str]) -> str:
    """An error's location as the user wrote it: list items named by their id (or name)."""
    parts: list[str] = []
    node: object = raw
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
            node = node[p] if isinstance(node, list) and p < len(node) else None
            parts[-1] += _label(node)
        # pydantic names the chosen union member (e.g. "command"): not a user field
        elif not (isinstance(node, dict) and p not in node and p in skip):
            parts.append(p if len(p) <= 60 else brief(p))
            node = node.get(p) if isinstance(node, dict) else None
    return ".".join(parts) if parts else "(top level)"


def _label(node: object) -> str:
    """`` (id 'x')`` for a list item with a string id (or name), else nothing."""
    if isinstance(node, dict) and isinstance(node.get("id") or node.get("name"), str):
        key = "id" if "id" in node else "name"
        return f" ({key} {brief(node[key])})"
    return ""
