"""Strict CBOR decoding for untrusted manifest bytes (pure, no I/O).

``cbor2.loads`` is lenient where a verifier must not be: it ignores trailing
bytes, lets a later duplicate map key win and accepts non-minimal lengths, so
two parsers could read one signed envelope differently. This decoder accepts
exactly one item in the preferred (shortest) serialisation of RFC 8949 §4.2.1,
with definite lengths only, no floating point, unique map keys, bounded depth,
and a size limit checked before anything is allocated. Every error names the
offending construct and its byte offset.

Map key order is not enforced: the SUIT draft asks for "canonical" order and
tools disagree on whether that means length-first (RFC 7049) or bytewise
(RFC 8949); the signature covers the bytes either way.

Encoding is left to ``cbor2.dumps(..., canonical=True)``, whose output this
decoder accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.errors import CborError

DEFAULT_MAX_SIZE = 64 * 1024
DEFAULT_MAX_DEPTH = 32


@dataclass(frozen=True)
class Tag:
    """A tagged item, e.g. ``Tag(107, {...})`` for a SUIT envelope."""

    number: int
    value: Any


@dataclass(frozen=True)
class Limits:
    max_size: int = DEFAULT_MAX_SIZE
    max_depth: int = DEFAULT_MAX_DEPTH


_SIMPLE = {20: False, 21: True, 22: None}
_MAJOR_NAMES = ("unsigned integer", "negative integer", "byte string", "text string",
                "array", "map", "tag", "simple value")


def decode(data: bytes, *, what: str = "CBOR item", limits: Limits = Limits()) -> Any:
    """Decode exactly one strict CBOR item from ``data``.

    ``what`` names the item in error messages ("manifest", "COSE_Sign1", ...).
    Raises CborError with a specific code on any deviation.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CborError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_size:
        raise CborError(f"{what}: {len(data)} bytes exceeds the limit of {limits.max_size}",
                        code="cbor-too-large")
    if len(data) == 0:
        raise CborError(f"{what}: empty input", code="cbor-truncated")
    decoder = _Decoder(bytes(data), what, limits.max_depth)
    item = decoder.item(0)
    if decoder.pos != len(data):
        raise CborError(f"{what}: {len(data) - decoder.pos} trailing byte(s) after the item "
                        f"at offset {decoder.pos}", code="cbor-trailing-bytes")
    return item


def encoded_bstr_header(length: int) -> bytes:
    """The shortest CBOR header of a byte string of ``length`` bytes."""
    return _head(2, length)


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | ai]) + value.to_bytes(size, "big")
    raise ValueError("value too large for a CBOR head")


class _Decoder:
    def __init__(self, data: bytes, what: str, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.what = what
        self.max_depth = max_depth

    def fail(self, message: str, code: str = "cbor-malformed", at: int | None = None) -> CborError:
        offset = self.pos if at is None else at
        return CborError(f"{self.what}: {message} at offset {offset}", code=code)

    def take(self, n: int, start: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise self.fail(f"item needs {n} more byte(s) but only {len(self.data) - self.pos} remain",
                            code="cbor-truncated", at=start)
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def head(self) -> tuple[int, int, int, int]:
        """Read an initial byte and argument: (major, additional info, argument, start)."""
        start = self.pos
        initial = self.take(1, start)[0]
        major, ai = initial >> 5, initial & 0x1F
        if ai < 24:
            return major, ai, ai, start
        if ai == 31:
            raise self.fail("indefinite-length or break code is not allowed", at=start)
        if ai > 27:
            raise self.fail(f"reserved additional information {ai}", at=start)
        if major == 7:
            return major, ai, 0, start  # float or one-byte simple: handled by the caller
        size = 1 << (ai - 24)
        value = int.from_bytes(self.take(size, start), "big")
        if value < (24 if size == 1 else 1 << (4 * size)):
            raise self.fail(f"non-minimal encoding of {_MAJOR_NAMES[major]} argument {value}",
                            code="cbor-non-minimal", at=start)
        return major, ai, value, start

    def item(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise self.fail(f"nesting deeper than {self.max_depth}", code="cbor-too-deep")
        major, ai, arg, start = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self.take(arg, start)
        if major == 3:
            raw = self.take(arg, start)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("text string is not valid UTF-8", at=start) from None
        if major == 4:
            self.check_count(arg, start)
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            return self.map(arg, start, depth)
        if major == 6:
            return Tag(arg, self.item(depth + 1))
        return self.simple(ai, start)

    def check_count(self, count: int, start: int) -> None:
        if count > len(self.data) - self.pos:
            raise self.fail(f"container claims {count} items but only {len(self.data) - self.pos} "
                            "byte(s) remain", code="cbor-truncated", at=start)

    def map(self, count: int, start: int, depth: int) -> dict:
        self.check_count(2 * count, start)
        result: dict = {}
        seen: set[bytes] = set()
        for _ in range(count):
            key_start = self.pos
            key = self.item(depth + 1)
            encoded_key = self.data[key_start:self.pos]
            if encoded_key in seen:
                raise self.fail(f"duplicate map key {key!r}", code="cbor-duplicate-key", at=key_start)
            seen.add(encoded_key)
            key = _as_key(key)
            if key is _UNHASHABLE:
                raise self.fail("map key must be an integer, a string or an array of them", at=key_start)
            if key in result:  # e.g. 1 and True would collide in a dict
                raise self.fail(f"map key {key!r} collides with another key", code="cbor-duplicate-key",
                                at=key_start)
            result[key] = self.item(depth + 1)
        return result

    def simple(self, ai: int, start: int) -> Any:
        if ai in (25, 26, 27):
            raise self.fail("floating-point values are not allowed", at=start)
        if ai == 24:
            value = self.take(1, start)[0]
            raise self.fail(f"unassigned or non-minimal simple value {value}", at=start)
        if ai in _SIMPLE:
            return _SIMPLE[ai]
        raise self.fail(f"unsupported simple value {ai}", at=start)


_UNHASHABLE = object()


def _as_key(value: Any) -> Any:
    """Map keys as hashable Python values: arrays become tuples (SUIT text uses them)."""
    if isinstance(value, bool) or value is None:
        return _UNHASHABLE
    if isinstance(value, (int, str, bytes)):
        return value
    if isinstance(value, list):
        parts = tuple(_as_key(v) for v in value)
        return _UNHASHABLE if any(p is _UNHASHABLE for p in parts) else parts
    return _UNHASHABLE
