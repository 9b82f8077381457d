"""``sw-description``: the libconfig text that servers made for SWUpdate read (pure).

Servers such as goosebit take a bundle only if its first member is
``sw-description`` with a ``software.version``, and read the boards and
revisions it fits from ``hardware-compatibility``. The agent itself never
reads this text: everything it acts on comes from the signed manifest.
"""

from __future__ import annotations

import re

from agent.errors import BundleError

NAME = "sw-description"

# libconfig setting names; the keys rendered under ``software`` cannot be boards.
_SETTING_NAME = re.compile(r"[A-Za-z*][-A-Za-z0-9_*]*")
_RESERVED = {"version", "description", "hardware-compatibility", "images"}
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t", "f": "\f"}
_STRING = r'"(?:[^"\\]|\\.)*"'
# Strings and comments are consumed whole, so a "version" inside them never matches.
_VERSION = re.compile(rf'{_STRING}|/\*.*?\*/|(?://|#)[^\n]*'
                      rf'|(?<![-\w*])version\s*[=:]\s*({_STRING})', re.S)


def quote(value: str) -> str:
    """A libconfig string literal: backslash, quote and control characters escaped."""
    return '"' + "".join(_ESCAPES.get(c, f"\\x{ord(c):02x}" if ord(c) < 32 else c)
                         for c in value) + '"'


def unquote(literal: str) -> str:
    return re.sub(r"\\(x[0-9A-Fa-f]{2}|.)",
                  lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 3 else _UNESCAPES.get(m[1], m[1]),
                  literal[1:-1], flags=re.S)


def render(version: str, images: list[tuple[str, str]], hardware: list[tuple[str, str]] = (),
           description: str = "") -> str:
    """The text for ``images`` as (member name, SHA-256 hex), fit for ``hardware`` (board, revision).

    Revisions are grouped by board, each board a section holding its
    ``hardware-compatibility`` and the images. Without hardware the images sit
    directly under ``software`` and no compatibility is claimed, which SWUpdate
    and goosebit read as "any hardware".
    """
    if not version:
        raise BundleError("the bundle version must not be empty", code="bundle-version")
    boards: dict[str, list[str]] = {}
    for board, revision in hardware:
        if not _SETTING_NAME.fullmatch(board) or board in _RESERVED:
            raise BundleError(f"hardware board {board!r} is not usable as a libconfig setting name "
                              "(letters, digits, '-', '_'; not version/description/images)",
                              code="bundle-hardware")
        if not revision:
            raise BundleError(f"hardware board {board!r} has an empty revision", code="bundle-hardware")
        revisions = boards.setdefault(board, [])
        if revision not in revisions:
            revisions.append(revision)
    lines = ["software =", "{", f"    version = {quote(version)};",
             f"    description = {quote(description)};"]
    if not boards:
        lines += _images(images, "    ")
    for board, revisions in boards.items():
        lines += ["", f"    {board} =", "    {",
                  f"        hardware-compatibility = [ {', '.join(map(quote, revisions))} ];"]
        lines += _images(images, "        ")
        lines += ["    };"]
    lines += ["};", ""]
    return "\n".join(lines)


def _images(images: list[tuple[str, str]], indent: str) -> list[str]:
    entries = [f"{indent}    {{\n{indent}        filename = {quote(name)};\n"
               f"{indent}        sha256 = {quote(digest)};\n{indent}    }}" for name, digest in images]
    body = [",\n".join(entries)] if entries else []
    return [f"{indent}images: ("] + body + [f"{indent});"]


def software_version(text: str) -> str | None:
    """The first ``version`` setting, for display: nothing may depend on it."""
    for match in _VERSION.finditer(text):
        if match[1] is not None:
            return unquote(match[1])
    return None
