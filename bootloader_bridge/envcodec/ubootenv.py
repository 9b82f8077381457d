"""U-Boot environment images, as ``saveenv`` and ``fw_setenv`` write them.

Layout: a 4-byte little-endian CRC32 of the data area; for a redundant
environment (two copies) a 1-byte flag that grows with every write, so the
newer copy wins; then the data area: ``name=value`` entries, each ended by a
NUL, an empty entry (so a double NUL) after the last one, and padding up to
the image size. The CRC covers the whole data area, padding included, so
``decode`` accepts any padding (erased flash reads 0xff, and libubootenv 0.3
may leave stray bytes there). Both U-Boot and ``fw_setenv`` write the entries
sorted by name; ``encode`` does too and pads with NULs.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from agent.errors import BootEnvCorruptError, BootloaderError


@dataclass(frozen=True)
class EnvImage:
    variables: dict[str, str]
    flag: int | None = None  # the redundant-copy counter; None for a single-copy environment


def decode(image: bytes, *, redundant: bool = False) -> EnvImage:
    """The variables of an image; a CRC mismatch or a missing end of entries is corrupt."""
    header = 5 if redundant else 4
    if len(image) <= header + 1:
        raise BootEnvCorruptError(f"U-Boot environment image of {len(image)} bytes is too small")
    (crc,) = struct.unpack_from("<I", image)
    data = image[header:]
    if zlib.crc32(data) != crc:
        raise BootEnvCorruptError(f"U-Boot environment CRC mismatch: stored {crc:#010x}, "
                                  f"computed {zlib.crc32(data):#010x}")
    return EnvImage(_entries(data), image[4] if redundant else None)


def encode(variables: Mapping[str, str], size: int, *, flag: int | None = None) -> bytes:
    """An image of ``size`` bytes; a ``flag`` makes it a copy of a redundant environment."""
    header = 4 if flag is None else 5
    entries = b"".join(_entry(name, variables[name]) for name in sorted(variables, key=str.encode))
    data = entries + b"\0"
    if header + len(data) > size:
        raise BootloaderError(f"U-Boot environment needs {header + len(data)} bytes; the image has {size}")
    data += b"\0" * (size - header - len(data))
    flag_byte = b"" if flag is None else bytes([flag])
    return struct.pack("<I", zlib.crc32(data)) + flag_byte + data


def _entries(data: bytes) -> dict[str, str]:
    end = 0 if data[:1] == b"\0" else data.find(b"\0\0")
    if end < 0:
        raise BootEnvCorruptError("U-Boot environment has no end of entries (double NUL)")
    variables: dict[str, str] = {}
    for entry in data[:end].split(b"\0") if end else []:
        name, sep, value = entry.partition(b"=")
        if not sep or not name:
            raise BootEnvCorruptError(f"U-Boot environment entry is no variable: {entry[:40]!r}")
        variables[_text(name)] = _text(value)
    return variables


def _entry(name: str, value: str) -> bytes:
    if not name or "=" in name or "\0" in name or "\0" in value:
        raise BootloaderError(f"{name!r}={value!r} cannot be a U-Boot environment variable")
    return f"{name}={value}".encode() + b"\0"


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as err:
        raise BootEnvCorruptError(f"U-Boot environment holds bytes that are not UTF-8: {raw[:40]!r}") from err
