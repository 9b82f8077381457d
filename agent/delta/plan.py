"""Which frames of a new image the device has, where, and which it must fetch (pure).

``matches`` walks the 4 KiB block hashes of the old image once: every
4 KiB-aligned window of a frame's length whose id is a frame's id of the new
image is a place that frame can be copied from. ``make_plan`` then leaves out
the frames the target slot already holds (a restart) and those it can copy,
and groups the rest into single-range requests: neighbouring frames are
merged when the bytes between them are few, and more so when the number of
requests would exceed a bound (many CDNs refuse multipart ranges, and every
request costs a round trip).

No Python object per frame outlives a call: what is known of each frame is
kept in a bytearray (in the target slot already) and an array of offsets (where
to copy it from, -1: nowhere). ``matches`` looks a window's id up by its first
4 bytes in a sorted array that holds each distinct id of the new image once
(frames with the same id, zeros above all, are chained behind the first).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from agent.delta.frames import BLOCK, ID, Index, window_id

MERGE_GAP = 1 << 10         # fetch up to this many unneeded bytes (about a request's headers) rather than
                            # make another request
MAX_REQUESTS = 1000
NOWHERE = -1
_LOW = (1 << 32) - 1


@dataclass(frozen=True)
class Fetch:
    """One request: bytes ``start`` to ``end`` (exclusive) of the frames file, frames ``first``
    to ``stop`` (exclusive); only those the plan wants are written."""

    start: int
    end: int
    first: int
    stop: int


@dataclass(frozen=True)
class Plan:
    have: bytearray                   # 1: frame already right in the target slot
    copies: array                     # array("q"): frame -> offset in the old image, NOWHERE: not copied
    fetches: tuple[Fetch, ...]

    def wanted(self, number: int) -> bool:
        """Frame ``number`` is to be fetched."""
        return not self.have[number] and self.copies[number] == NOWHERE

    @property
    def kept(self) -> int:
        return self.have.count(1)

    @property
    def fetch_bytes(self) -> int:
        return sum(f.end - f.start for f in self.fetches)


def present(index: Index, target_frame_ids: Iterable[bytes | None]) -> bytearray:
    """1 for each frame the target slot already holds, given the id of what lies at each frame's
    place (None where the slot is too short)."""
    have = bytearray(index.count)
    for number, ident in zip(range(index.count), target_frame_ids):
        have[number] = ident == index.id(number)
    return have


def matches(index: Index, old_block_hashes: Iterable[bytes], have: bytearray | None = None) -> array:
    """array("q"): for each full-size frame of ``index`` not in ``have``, the first 4 KiB-aligned
    offset of the old image where all its blocks are; NOWHERE for the others. Stops reading the
    hashes once every frame is found."""
    per_frame = index.frame_size // BLOCK
    found = array("q", [NOWHERE]) * index.count
    keys, same = _lookup(index, have or bytearray(index.count))
    left = len(keys)
    window: deque[bytes] = deque(maxlen=per_frame)
    for block, digest in enumerate(old_block_hashes):
        if not left:
            break
        window.append(digest)
        if len(window) < per_frame:
            continue
        ident = window_id(window)
        prefix = int.from_bytes(ident[:4], "big")
        at = bisect_left(keys, prefix << 32)
        while at < len(keys) and keys[at] >> 32 == prefix:
            number = keys[at] & _LOW
            if index.id(number) == ident:
                if found[number] == NOWHERE:
                    offset = (block + 1 - per_frame) * BLOCK
                    while number != NOWHERE:
                        found[number], number = offset, same[number]
                    left -= 1
                break
            at += 1
    return found


def _lookup(index: Index, have: bytearray) -> tuple[array, array]:
    """The frames to look for: array("Q") of (first 4 bytes of the id << 32 | frame number) of the
    first frame of each distinct id, sorted; and array("i"): frame -> the next frame with the same
    id, NOWHERE at the end of a chain."""
    candidates = sorted(int.from_bytes(index.ids[n * ID:n * ID + 4], "big") << 32 | n
                        for n in range(index.count)
                        if index.plain_length(n) == index.frame_size and not have[n])
    keys, same = array("Q"), array("i", [NOWHERE]) * index.count
    heads: list[int] = []             # first and last frame of each distinct id of one prefix
    tails: list[int] = []
    prefix = None
    for key in candidates:
        number = key & _LOW
        if key >> 32 != prefix:
            prefix, heads, tails = key >> 32, [], []
        ident = index.id(number)
        for place, head in enumerate(heads):
            if index.id(head) == ident:
                same[tails[place]] = number
                tails[place] = number
                break
        else:
            heads.append(number)
            tails.append(number)
            keys.append(key)
    return keys, same


def make_plan(index: Index, have: bytearray, copies: array, *, merge_gap: int = MERGE_GAP,
              max_requests: int = MAX_REQUESTS) -> Plan:
    copies = array("q", (NOWHERE if have[n] else offset for n, offset in enumerate(copies)))
    firsts, stops = array("i"), array("i")      # runs of consecutive needed frames
    for number in range(index.count):
        if have[number] or copies[number] != NOWHERE:
            continue
        if stops and stops[-1] == number:
            stops[-1] = number + 1
        else:
            firsts.append(number)
            stops.append(number + 1)
    offsets = index.offsets
    limit = merge_gap
    if len(firsts) > max_requests:
        gaps = sorted(offsets[firsts[i + 1]] - offsets[stops[i]] for i in range(len(firsts) - 1))
        limit = max(limit, gaps[len(firsts) - max_requests - 1])
    merged: list[list[int]] = []
    for first, stop in zip(firsts, stops):
        if merged and offsets[first] - offsets[merged[-1][1]] <= limit:
            merged[-1][1] = stop
        else:
            merged.append([first, stop])
    return Plan(have, copies, tuple(Fetch(offsets[first], offsets[stop], first, stop) for first, stop in merged))
