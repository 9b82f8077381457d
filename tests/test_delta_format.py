"""The delta format and planner, with byte vectors: no file system, no network."""

from __future__ import annotations

import hashlib
import random
import struct
import tracemalloc
from array import array

import pytest
import zstandard

from agent.delta.frames import (BLOCK, ENTRY, HEADER, Index, block_hashes, decode_index, decompress_frame,
                                encode_index, frame_id, window_id)
from agent.delta.param import DeltaRef, decode, delta_uris
from agent.delta.build import Artifact
from agent.delta.plan import make_plan, matches, present
from agent.errors import DeltaError

FRAME = 16384


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _index(image: bytes, frame_size: int = FRAME) -> tuple[Index, bytes]:
    compressor = zstandard.ZstdCompressor(level=3, write_content_size=True)
    frames = [compressor.compress(image[i:i + frame_size]) for i in range(0, len(image), frame_size)]
    ids = tuple(frame_id(image[i:i + frame_size]) for i in range(0, len(image), frame_size))
    return Index.of(frame_size, len(image), ids, map(len, frames)), b"".join(frames)


def test_frame_id_is_sha256_over_the_block_hashes() -> None:
    zeros = bytes(FRAME)
    assert frame_id(zeros).hex() == "73760eab76e1fee567933f149aaee59f"
    assert frame_id(zeros) == _sha(_sha(bytes(BLOCK)) * 4)[:16]
    # a short last frame: its last block is short too
    assert frame_id(b"abc") == _sha(_sha(b"abc"))[:16]
    assert frame_id(b"abc").hex() == "4f8b42c22dd3729b519ba6f68d2da7cc"
    assert block_hashes(bytes(BLOCK + 1)) == [_sha(bytes(BLOCK)), _sha(b"\0")]


def test_index_layout_and_round_trip() -> None:
    index = Index.of(FRAME, 2 * FRAME + 5, (b"\1" * 16, b"\2" * 16, b"\3" * 16), (100, 200, 9))
    raw = zstandard.ZstdDecompressor().decompress(encode_index(index))
    assert raw[:HEADER.size] == b"FWDX\x02\0\0\0" + struct.pack(">IIQI", BLOCK, FRAME, 2 * FRAME + 5, 3)
    assert raw[HEADER.size:HEADER.size + ENTRY.size] == b"\1" * 16 + struct.pack(">I", 100)
    assert len(raw) == HEADER.size + 3 * ENTRY.size
    decoded = decode_index(encode_index(index), image_size=2 * FRAME + 5, frames_size=309)
    assert decoded == index and list(decoded.offsets) == [0, 100, 300, 309] and decoded.plain_length(2) == 5
    assert decoded.count == 3 and decoded.id(1) == b"\2" * 16


@pytest.mark.parametrize("image_size, frames_size", [(3 * FRAME, 309), (2 * FRAME + 5, 310), (FRAME, 309)])
def test_an_index_that_does_not_fit_the_manifest_is_refused(image_size: int, frames_size: int) -> None:
    index = Index.of(FRAME, 2 * FRAME + 5, (b"\1" * 16, b"\2" * 16, b"\3" * 16), (100, 200, 9))
    with pytest.raises(DeltaError) as err:
        decode_index(encode_index(index), image_size=image_size, frames_size=frames_size)
    assert err.value.code == "delta-index"


def test_garbage_and_oversized_indexes_are_refused() -> None:
    with pytest.raises(DeltaError):
        decode_index(b"not zstd at all", image_size=FRAME, frames_size=10)
    huge = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(1 << 20))
    with pytest.raises(DeltaError, match="at most"):
        decode_index(huge, image_size=FRAME, frames_size=10)     # never decompressed: too large a claim


def test_a_frame_is_checked_against_its_id_and_size() -> None:
    image = _blob(FRAME, 1) + bytes(100)
    index, frames = _index(image)
    first = frames[:index.lengths[0]]
    assert decompress_frame(first, index, 0) == image[:FRAME]
    with pytest.raises(DeltaError, match="does not hold"):
        decompress_frame(first, index, 1)            # another frame's bytes: 16 KiB, not 100
    other = zstandard.ZstdCompressor(write_content_size=True).compress(_blob(FRAME, 2))
    with pytest.raises(DeltaError, match="does not match"):
        decompress_frame(other, index, 0)
    with pytest.raises(DeltaError, match="not zstd"):
        decompress_frame(first[:-4], index, 0)


def test_frames_are_found_at_any_aligned_offset_of_the_old_image() -> None:
    new = _blob(4 * FRAME, 3)
    index, _ = _index(new)
    # the old image holds frame 1 shifted by one block, frame 3 at the start, frame 0 nowhere
    old = new[3 * FRAME:] + _blob(BLOCK, 4) + new[FRAME:2 * FRAME] + _blob(2 * BLOCK, 5)
    assert list(matches(index, block_hashes(old))) == [-1, FRAME + BLOCK, -1, 0]
    in_place = bytearray([0, 0, 0, 1])
    assert list(matches(index, block_hashes(old), in_place)) == [-1, FRAME + BLOCK, -1, -1]
    shifted_by_a_byte = b"x" + new
    assert list(matches(index, block_hashes(shifted_by_a_byte))) == [-1] * 4


def test_frames_with_the_same_id_are_all_found_and_ids_sharing_a_prefix_are_told_apart() -> None:
    a, b = _blob(FRAME, 7), _blob(FRAME, 8)
    index = Index.of(FRAME, 5 * FRAME, [frame_id(a), frame_id(b), frame_id(a), b"\0" * 16, frame_id(a)], [9] * 5)
    old = b + bytes(BLOCK) + a
    assert list(matches(index, block_hashes(old))) == [FRAME + BLOCK, 0, FRAME + BLOCK, -1, FRAME + BLOCK]
    # two ids whose first 4 bytes are the same: each is found at its own place, or not at all
    twin = frame_id(a)[:4] + b"\1" * 12
    index = Index.of(FRAME, 3 * FRAME, [twin, frame_id(a), twin], [9] * 3)
    assert list(matches(index, block_hashes(a))) == [-1, 0, -1]
    index = Index.of(FRAME, 2 * FRAME, [frame_id(a), twin], [9] * 2)
    assert list(matches(index, block_hashes(b + a))) == [FRAME, -1]


def test_the_target_slot_keeps_what_is_already_right() -> None:
    index, _ = _index(_blob(2 * FRAME + 100, 6))
    assert present(index, [index.id(0), b"\0" * 16, index.id(2)]) == bytearray([1, 0, 1])
    assert present(index, [None, None, None]) == bytearray(3)


def test_plan_merges_close_frames_and_bounds_the_requests() -> None:
    index = Index.of(FRAME, 10 * FRAME, (bytes([n]) * 16 for n in range(10)), [1000] * 10)
    copies = array("q", [0, -1, 0, -1, -1, 0, 0, 0, -1, -1])
    plan = make_plan(index, bytearray([1] + [0] * 9), copies, merge_gap=1000)
    # needed: 1, 3, 4, 8, 9; the gap of frame 2 (1000 bytes) is merged, that of 5-7 (3000) is not
    assert [(f.start, f.end, f.first, f.stop) for f in plan.fetches] == [(1000, 5000, 1, 5), (8000, 10000, 8, 10)]
    assert [n for n in range(10) if plan.wanted(n)] == [1, 3, 4, 8, 9]
    assert list(plan.copies) == [-1, -1, 0, -1, -1, 0, 0, 0, -1, -1]      # frame 0 is in place: not copied
    assert plan.fetch_bytes == 6000 and plan.kept == 1
    every_other = array("q", [0, -1] * 5)
    bounded = make_plan(index, bytearray(10), every_other, merge_gap=0, max_requests=2)
    assert 1 <= len(bounded.fetches) <= 2 and [n for n in range(10) if bounded.wanted(n)] == [1, 3, 5, 7, 9]
    assert all(any(f.first <= n < f.stop for f in bounded.fetches) for n in (1, 3, 5, 7, 9))
    assert make_plan(index, bytearray([1] * 10), array("q", [-1] * 10)).fetches == ()


def test_the_manifest_parameter() -> None:
    ref = DeltaRef(Artifact("https://h/i.frames", b"\1" * 32, 10), Artifact("https://h/i.index", b"\2" * 32, 5))
    assert decode(ref.encode()) == ref
    assert delta_uris("#rootfs.img") == ("#rootfs.img.frames", "#rootfs.img.index")
    for bad in ({1: ["u", b"\1" * 32, 10]}, {1: ["u", b"\1", 10], 2: ["u", b"\1" * 32, 1]},
                {1: ["u", b"\1" * 32, 0], 2: ["u", b"\1" * 32, 1]}, [1, 2]):
        with pytest.raises(DeltaError):
            decode(bad)


def test_planning_a_384_mib_image_holds_no_python_object_per_frame() -> None:
    """24,576 frames, one in ten not in the old image: matching and planning allocate a few bytes
    per frame (arrays), not a dictionary entry and objects per frame (that took 5.7 MB)."""
    count = (384 << 20) // FRAME
    rng = random.Random(9)
    blocks = [[rng.randbytes(32) for _ in range(FRAME // BLOCK)] for _ in range(count)]
    index = Index.of(FRAME, count * FRAME, (window_id(hashes) for hashes in blocks), [5000] * count)
    old = [digest for number in range(count) if number % 10 for digest in blocks[number]]
    tracemalloc.start()
    try:
        plan = make_plan(index, bytearray(count), matches(index, iter(old)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [n for n in range(count) if plan.wanted(n)] == list(range(0, count, 10))
    assert peak < 2_500_000, peak
