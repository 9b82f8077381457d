"""Which frames of a new image the device has, where, and which it must fetch (pure).

``matches`` walks the 4 KiB block hashes of the old image once: every
4 KiB-aligned window of a frame's length whose id is a frame's id of the new
image is a place that frame can be copied from. ``make_plan`` then leaves out
the frames the target slot already holds (a restart) and those it can copy,
and groups the rest into single-range requests: neighbouring frames are
merged when the bytes between them are few, and more so when the number of
requests would exceed a bound (many CDNs refuse multipart ranges, and every
request costs a round trip).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from agent.delta.frames import BLOCK, Index, window_id

MERGE_GAP = 16 << 10        # fetch up to this many unneeded bytes rather than make another request
MAX_REQUESTS = 1000


@dataclass(frozen=True)
class Fetch:
    """One request: bytes ``start`` to ``end`` (exclusive) of the frames file, frames ``first``
    to ``stop`` (exclusive); only those in ``wanted`` are written."""

    start: int
    end: int
    first: int
    stop: int
    wanted: frozenset[int]


@dataclass(frozen=True)
class Plan:
    have: frozenset[int]              # already right in the target slot
    copies: dict[int, int]            # frame -> offset in the old image
    fetches: tuple[Fetch, ...]

    @property
    def fetch_bytes(self) -> int:
        return sum(f.end - f.start for f in self.fetches)


def matches(index: Index, old_block_hashes: Iterable[bytes], have: frozenset[int] = frozenset()) -> dict[int, int]:
    """Frame -> offset in the old image where all its blocks are, for every full-size frame of
    ``index`` not in ``have`` found at a 4 KiB-aligned offset (the first such offset). Stops
    reading the hashes once every frame is found."""
    per_frame = index.frame_size // BLOCK
    wanted: dict[bytes, list[int]] = {}
    for number, ident in enumerate(index.ids):
        if index.plain_length(number) == index.frame_size and number not in have:
            wanted.setdefault(ident, []).append(number)
    found: dict[int, int] = {}
    if not wanted:
        return found
    window: deque[bytes] = deque(maxlen=per_frame)
    for block, digest in enumerate(old_block_hashes):
        window.append(digest)
        if len(window) < per_frame:
            continue
        numbers = wanted.pop(window_id(window), None)
        if numbers:
            offset = (block + 1 - per_frame) * BLOCK
            for number in numbers:
                found[number] = offset
            if not wanted:
                break
    return found


def present(index: Index, target_frame_ids: Iterable[bytes | None]) -> frozenset[int]:
    """The frames the target slot already holds, given the id of what lies at each frame's place
    (None where the slot is too short)."""
    return frozenset(n for n, ident in enumerate(target_frame_ids) if ident == index.ids[n])


def make_plan(index: Index, have: frozenset[int], copies: dict[int, int], *, merge_gap: int = MERGE_GAP,
              max_requests: int = MAX_REQUESTS) -> Plan:
    copies = {n: offset for n, offset in copies.items() if n not in have}
    needed = [n for n in range(len(index.ids)) if n not in have and n not in copies]
    runs: list[list[int]] = []        # [first, stop] of consecutive needed frames
    for number in needed:
        if runs and runs[-1][1] == number:
            runs[-1][1] = number + 1
        else:
            runs.append([number, number + 1])
    offsets = index.offsets
    gaps = sorted(offsets[runs[i + 1][0]] - offsets[runs[i][1]] for i in range(len(runs) - 1))
    limit = merge_gap
    if len(runs) - max_requests > 0:
        limit = max(limit, gaps[len(runs) - max_requests - 1])
    merged: list[list[int]] = []
    for run in runs:
        if merged and offsets[run[0]] - offsets[merged[-1][1]] <= limit:
            merged[-1][1] = run[1]
        else:
            merged.append(list(run))
    wanted = frozenset(needed)
    fetches = tuple(Fetch(offsets[first], offsets[stop], first, stop,
                          frozenset(n for n in range(first, stop) if n in wanted)) for first, stop in merged)
    return Plan(have, copies, fetches)
