"""The delta format (pure): an image cut into independent zstd frames, and the frame index.

The image is cut into frames of ``frame_size`` uncompressed bytes (16 KiB by
default; the last one may be shorter). Each frame is compressed on its own,
with its content size in the frame header, and the frames are concatenated:
that is the frames file. A frame's id is the first 16 bytes of SHA-256 over
the SHA-256 of each of its 4 KiB blocks (the last block may be shorter), so a
device that hashes its old image once per block can tell, at any 4 KiB-aligned
offset, whether it already holds the frame. 16 bytes keep the index small and
are still far beyond chance collisions or forging a frame; the SHA-256 of the
whole image stays the final check.

The index (zstd-compressed) is a 28-byte header, then 20 bytes per frame::

    "FWDX", version 2 (u8), 3 zero bytes, block size (u32), frame size (u32),
    image size (u64), frame count (u32)         -- big-endian
    frame id (16 bytes), compressed length (u32)   -- once per frame, in order

A frame's offset in the frames file is the sum of the lengths before it.

In memory an index holds no Python object per frame: the ids end to end in one
``bytes``, the lengths and offsets in arrays (about 28 bytes per frame).
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate

from agent.errors import DeltaError

BLOCK = 4096
DEFAULT_FRAME_SIZE = 16 << 10
MAX_FRAME_SIZE = 256 << 10
MAGIC = b"FWDX"
VERSION = 2
HEADER = struct.Struct(">4sB3xIIQI")
ID = 16                 # bytes of a frame id
ENTRY = struct.Struct(f">{ID}sI")
INDEX_LEVEL = 19
# zstd's worst case for incompressible input is a few bytes per 128 KiB block; any frame
# longer than this is not one the builder wrote.
FRAME_SLACK = 1024


def check_frame_size(frame_size: int) -> int:
    if not (BLOCK <= frame_size <= MAX_FRAME_SIZE and frame_size % BLOCK == 0):
        raise DeltaError(f"frame size {frame_size}: a multiple of {BLOCK} bytes up to {MAX_FRAME_SIZE}",
                         code="delta-frame-size")
    return frame_size


def frame_count(image_size: int, frame_size: int) -> int:
    return -(-image_size // frame_size)


def block_hashes(data: bytes | memoryview) -> list[bytes]:
    """SHA-256 of each 4 KiB block of ``data`` (the last one may be shorter)."""
    view = memoryview(data)
    return [hashlib.sha256(view[start:start + BLOCK]).digest() for start in range(0, len(view), BLOCK)]


def window_id(hashes: Sequence[bytes]) -> bytes:
    """The id of the frame whose blocks have these hashes."""
    return hashlib.sha256(b"".join(hashes)).digest()[:ID]


def frame_id(data: bytes | memoryview) -> bytes:
    return window_id(block_hashes(data))


@dataclass(frozen=True)
class Index:
    frame_size: int
    image_size: int
    ids: bytes                     # the frames' ids end to end, ID bytes each
    lengths: array                 # array("I"): compressed length of each frame

    @classmethod
    def of(cls, frame_size: int, image_size: int, ids: Iterable[bytes], lengths: Iterable[int]) -> "Index":
        return cls(frame_size, image_size, b"".join(ids), array("I", lengths))

    @property
    def count(self) -> int:
        return len(self.lengths)

    def id(self, number: int) -> bytes:
        return self.ids[number * ID:(number + 1) * ID]

    @cached_property
    def offsets(self) -> array:
        """array("Q"): where each frame starts in the frames file; one more entry: the file's size."""
        return array("Q", accumulate(self.lengths, initial=0))

    @property
    def frames_size(self) -> int:
        return self.offsets[-1]

    def plain_length(self, number: int) -> int:
        """Uncompressed bytes of frame ``number``."""
        return min(self.frame_size, self.image_size - number * self.frame_size)


def encode_index(index: Index) -> bytes:
    import zstandard

    parts = [HEADER.pack(MAGIC, VERSION, BLOCK, index.frame_size, index.image_size, index.count)]
    parts += [ENTRY.pack(index.id(n), length) for n, length in enumerate(index.lengths)]
    return zstandard.ZstdCompressor(level=INDEX_LEVEL, write_content_size=True).compress(b"".join(parts))


def decode_index(data: bytes, *, image_size: int, frames_size: int) -> Index:
    """The index of an image of ``image_size`` bytes whose frames file has ``frames_size`` bytes
    (both from the signed manifest, as is the digest ``data`` was checked against)."""
    import zstandard

    most = HEADER.size + ENTRY.size * frame_count(image_size, BLOCK)
    try:
        claimed = zstandard.frame_content_size(data)
        if not 0 <= claimed <= most:
            raise DeltaError(f"delta index: {claimed} bytes once decompressed, at most {most} expected",
                             code="delta-index")
        raw = zstandard.ZstdDecompressor(max_window_size=1 << 23).decompress(data, max_output_size=most)
    except zstandard.ZstdError as exc:
        raise DeltaError(f"delta index: not zstd: {exc}", code="delta-index") from None
    if len(raw) < HEADER.size:
        raise DeltaError("delta index: shorter than its header", code="delta-index")
    magic, version, block, frame_size, size, count = HEADER.unpack_from(raw)
    if magic != MAGIC or version != VERSION or block != BLOCK:
        raise DeltaError(f"delta index: not a version {VERSION} index of {BLOCK}-byte blocks", code="delta-index")
    check_frame_size(frame_size)
    if size != image_size or count != frame_count(size, frame_size) or len(raw) != HEADER.size + count * ENTRY.size:
        raise DeltaError(f"delta index: describes {size} bytes in {count} frames, not the manifest's "
                         f"{image_size}-byte image", code="delta-index")
    ids, lengths = bytearray(count * ID), array("I")
    for number, (ident, length) in enumerate(ENTRY.iter_unpack(memoryview(raw)[HEADER.size:])):
        ids[number * ID:(number + 1) * ID] = ident
        lengths.append(length)
    del raw
    index = Index(frame_size, size, bytes(ids), lengths)
    if count and (min(lengths) == 0 or max(lengths) > frame_bound(frame_size)) or index.frames_size != frames_size:
        raise DeltaError(f"delta index: frame lengths do not add up to the {frames_size}-byte frames file",
                         code="delta-index")
    return index


def frame_bound(frame_size: int) -> int:
    return frame_size + FRAME_SLACK


def decompress_frame(data: bytes | memoryview, index: Index, number: int) -> bytes:
    """Frame ``number`` as the server sent it, decompressed and checked against its id."""
    import zstandard

    expected = index.plain_length(number)
    try:
        if zstandard.frame_content_size(data) != expected:
            raise DeltaError(f"delta frame {number}: does not hold {expected} bytes", code="delta-frame")
        plain = zstandard.ZstdDecompressor(max_window_size=1 << 20).decompress(data, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise DeltaError(f"delta frame {number}: not zstd: {exc}", code="delta-frame") from None
    if len(plain) != expected or frame_id(plain) != index.id(number):
        raise DeltaError(f"delta frame {number}: its content does not match the index", code="delta-frame")
    return plain
