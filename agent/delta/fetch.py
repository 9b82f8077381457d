"""Install an image into a slot by delta (imperative shell around frames.py and plan.py).

1. The index is downloaded (bounded, resumable) and checked against the
   signed manifest's digest and size, then decoded.
2. The target slot is hashed frame by frame: what an interrupted earlier try
   (or an older release) left there right is kept. The old (booted) slot is
   hashed per 4 KiB block and every frame found there is copied, its bytes
   hashed again as they are read.
3. The rest is fetched with single-range GETs of the frames file over one
   kept-alive connection, ``If-Range`` with the first answer's ETag, through
   the downloader's link (same origin rules, TLS and timeouts); each frame is
   decompressed into a bounded buffer and checked against its id.
4. The slot is synced and its image hashed whole: the caller checks that
   against the manifest, as for a full download.

``Fallback`` says why the solid payload must be fetched instead: no index, a
server that does not honour Range, a frames file that does not match the
index, or a predicted download above ``FALLBACK_RATIO`` of the full one.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.delta.frames import BLOCK, Index, decode_index, decompress_frame, frame_id
from agent.delta.param import DeltaRef
from agent.delta.plan import NOWHERE, Fetch, Plan, make_plan, matches, present
from agent.download.downloader import (CancelWatch, DownloadCancelled, DownloadError, Downloader,
                                       content_range_start, ranged_get)
from agent.download.retry import TRANSIENT, classify_status, next_wait
from agent.errors import DeltaError
from agent.install.slots import Slot, SlotSink, read_digest, slot_size
from agent.log import redact

FALLBACK_RATIO = 0.6
READ = 1 << 20


@dataclass
class DeltaStats:
    """What an install by delta cost, for the outcome and the reports."""

    mode: str                      # "delta", or "full" when the solid payload was fetched
    full: int                      # bytes of the solid payload
    fetched: int = 0               # bytes downloaded for the delta: index and frames
    requests: int = 0
    frames: int = 0
    kept: int = 0                  # frames already right in the target slot
    copied: int = 0                # frames copied from the booted slot
    downloaded: int = 0            # frames fetched
    reason: str = ""               # why the solid payload was fetched

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Fallback(DeltaError):
    """The delta cannot or should not be used: the solid payload is fetched instead. ``fetched``:
    the bytes the attempt cost."""

    code = "delta-fallback"

    def __init__(self, reason: str, fetched: int) -> None:
        super().__init__(reason)
        self.reason, self.fetched = reason, fetched


@dataclass
class _Memory:
    """A bounded in-memory download sink, for the index."""

    limit: int
    data: bytearray = field(default_factory=bytearray)

    def write(self, data: bytes | memoryview) -> None:
        if len(self.data) + len(data) > self.limit:
            raise DeltaError(f"delta index: longer than {self.limit} bytes", code="delta-index")
        self.data += data

    def sync(self) -> None:
        """Memory: nothing survives a restart, nothing to sync."""

    def restart(self, offset: int) -> None:
        del self.data[offset:]

    def read_back(self, size: int) -> Iterator[bytes]:
        yield bytes(self.data[:size])


def install_delta(downloader: Downloader, ref: DeltaRef, old: Slot, target: Slot, size: int, *,
                  cancel: threading.Event, progress: Callable[[int, int], None] | None = None
                  ) -> tuple[tuple[bytes, int], DeltaStats]:
    """Write the ``size``-byte image into ``target`` from ``old`` and the frames file; the image's
    (SHA-256, size) as read back, and what it cost. Raises Fallback, or DownloadError when the
    server cannot be reached at all (as a full download would)."""
    job = _Job(downloader, ref, old, target, size, cancel, progress)
    return job.run(), job.stats


class _Job:
    def __init__(self, downloader: Downloader, ref: DeltaRef, old: Slot, target: Slot, size: int,
                 cancel: threading.Event, progress: Callable[[int, int], None] | None) -> None:
        self.downloader, self.ref, self.old, self.target, self.size = downloader, ref, old, target, size
        self.cancel, self.progress = cancel, progress
        self.stats = DeltaStats("delta", size)
        self.validator: str | None = None
        self.shown = redact(ref.frames.uri)
        self.predicted = 0
        self.started = downloader.clock()
        self.position = 0                # the next frame of the range being fetched
        self.ranged = 0                  # bytes of the frames file received, for the rate limit
        self.last_read = self.started    # when the range being fetched last delivered a byte

    def run(self) -> tuple[bytes, int]:
        index = self._index()
        self.stats.frames = index.count
        plan = self._plan(index)
        self.predicted = self.stats.fetched + plan.fetch_bytes
        if self.predicted > FALLBACK_RATIO * self.size:
            raise Fallback(f"the delta would fetch {self.predicted} of {self.size} bytes "
                           f"(more than {FALLBACK_RATIO:.0%})", self.stats.fetched)
        self.stats.kept = plan.kept
        sink = SlotSink(self.target, self.size)
        self.started = self.downloader.clock()
        try:
            self._copy(index, plan, sink.fd)
            for fetch in plan.fetches:
                self._fetch(index, plan, fetch, sink.fd)
            sink.sync()
        finally:
            sink.close()
        return read_digest(self.target.device, self.size), self.size

    # --- what to do -----------------------------------------------------------------

    def _index(self) -> Index:
        sink = _Memory(self.ref.index.size)
        try:
            self.downloader.fetch(self.ref.index.uri, sink, size=self.ref.index.size,
                                  digest=self.ref.index.digest, cancel=self.cancel)
        except DownloadCancelled:
            raise
        except (DownloadError, DeltaError) as err:
            raise Fallback(f"no delta index: {err.detail}", len(sink.data)) from None
        self.stats.fetched += len(sink.data)
        self.stats.requests += 1
        try:
            return decode_index(bytes(sink.data), image_size=self.size, frames_size=self.ref.frames.size)
        except DeltaError as err:
            raise Fallback(err.detail, self.stats.fetched) from None

    def _plan(self, index: Index) -> Plan:
        have = present(index, self._target_ids(index))
        copies = matches(index, self._block_hashes(self.old, slot_size(self.old.device)), have)
        return make_plan(index, have, copies)

    def _target_ids(self, index: Index) -> Iterator[bytes | None]:
        fd = os.open(self.target.device, os.O_RDONLY)
        try:
            for number in range(index.count):
                self._check_cancel()
                length = index.plain_length(number)
                data = os.pread(fd, length, number * index.frame_size)
                yield frame_id(data) if len(data) == length else None
        finally:
            os.close(fd)

    def _block_hashes(self, slot: Slot, size: int) -> Iterator[bytes]:
        fd = os.open(slot.device, os.O_RDONLY)
        try:
            position = 0
            while position < size:
                self._check_cancel()
                chunk = os.pread(fd, min(READ, size - position), position)
                if not chunk:
                    return
                view = memoryview(chunk)
                for start in range(0, len(view) - BLOCK + 1, BLOCK):
                    yield hashlib.sha256(view[start:start + BLOCK]).digest()
                position += len(chunk) - len(chunk) % BLOCK
                if len(chunk) % BLOCK:
                    return               # a device's end: no whole block left
        finally:
            os.close(fd)

    # --- doing it -----------------------------------------------------------------------

    def _copy(self, index: Index, plan: Plan, out: int) -> None:
        fd = os.open(self.old.device, os.O_RDONLY)
        try:
            for number, offset in enumerate(plan.copies):
                if offset == NOWHERE:
                    continue
                self._check_cancel()
                data = os.pread(fd, index.frame_size, offset)
                if frame_id(data) != index.id(number):
                    raise Fallback(f"the booted slot changed while it was read ({self.old.label})",
                                   self.stats.fetched)
                _write_at(out, data, number * index.frame_size)
                self.stats.copied += 1
        finally:
            os.close(fd)

    def _fetch(self, index: Index, plan: Plan, fetch: Fetch, out: int) -> None:
        """One range, retried from the first frame not yet written when the connection breaks."""
        self.position = fetch.first
        attempt = 0
        while self.position < fetch.stop:
            self._check_cancel()
            before = self.position
            try:
                self._attempt(index, plan, fetch, out)
            except DownloadError as err:
                if not err.transient:
                    raise
                if self.position > before:
                    attempt = 0
                wait = next_wait(attempt, self.downloader.policy, self.downloader.rng, server_wait=err.wait,
                                 elapsed=self.downloader.clock() - self.started)
                if wait is None:
                    raise DownloadError(f"{err.detail} (gave up after {attempt + 1} attempt(s) without "
                                        "progress)", code=err.code) from None
                self._wait(wait)
                attempt += 1

    def _attempt(self, index: Index, plan: Plan, fetch: Fetch, out: int) -> None:
        """Frames from ``self.position`` to the end of ``fetch``, each written once it is checked;
        ``self.position`` follows, so that a broken connection costs no frame already written."""
        start, end = index.offsets[self.position], fetch.end
        response = ranged_get(self.downloader.link, self.ref.frames.uri, self.downloader.config, start,
                              self.validator, self.shown, end=end)
        self.stats.requests += 1
        self.last_read = self.downloader.clock()
        with response, CancelWatch(self.cancel, response, self._idle):
            self._check_status(response, start, end)
            for number in range(self.position, fetch.stop):
                data = self._receive(response, index.lengths[number])
                self._limit_rate(len(data))
                if plan.wanted(number):
                    try:
                        plain = decompress_frame(data, index, number)
                    except DeltaError as err:
                        raise Fallback(f"{self.shown}: {err.detail}", self.stats.fetched) from None
                    _write_at(out, plain, number * index.frame_size)
                    self.stats.downloaded += 1
                self.position = number + 1
                if self.progress:
                    self.progress(self.stats.fetched, self.predicted)
            self._receive(response, 0)      # the answer's end

    def _receive(self, response: Any, length: int) -> bytes:
        """Exactly ``length`` bytes of the answer (0: read its end); a broken or short answer as a
        transient DownloadError."""
        data = bytearray(length)
        view, got = memoryview(data), 0
        try:
            while got < length:
                count = response.readinto1(view[got:])
                if not count:
                    raise OSError("the answer ended early")
                got += count
                self.last_read = self.downloader.clock()
            if not length:
                response.read1(1)
        except OSError as exc:
            self._check_cancel()
            raise DownloadError(f"{self.shown}: {type(exc).__name__} at frame {self.position}",
                                transient=True) from None
        self.stats.fetched += got
        return bytes(data)

    def _check_status(self, response: Any, start: int, end: int) -> None:
        status = response.status_code
        if status == 206:
            if content_range_start(response.headers.get("Content-Range")) != start \
                    or response.headers.get("Content-Length") != str(end - start):
                raise Fallback(f"{self.shown}: asked for bytes {start}-{end - 1}, got "
                               f"{response.headers.get('Content-Range')}", self.stats.fetched)
            self.validator = self.validator or response.headers.get("ETag") or response.headers.get("Last-Modified")
            return
        if status == 200:
            raise Fallback(f"{self.shown}: the server does not honour Range" if self.validator is None
                           else f"{self.shown}: the frames file changed on the server", self.stats.fetched)
        if classify_status(status) != TRANSIENT:
            raise Fallback(f"{self.shown}: HTTP {status}", self.stats.fetched)
        raise DownloadError(f"{self.shown}: HTTP {status}", code=f"download-http-{status}", transient=True)

    def _idle(self) -> bool:
        """No byte of the range for a stall time (however the connection is kept busy): the
        watch ends the attempt, which is retried from the first frame not yet written."""
        return self.downloader.clock() - self.last_read > self.downloader.config.stall_timeout

    def _limit_rate(self, received: int) -> None:
        """``[download] rate_limit`` holds for the ranges as for a full download."""
        self.ranged += received
        limit = self.downloader.config.rate_limit
        if limit:
            ahead = self.ranged / limit - (self.downloader.clock() - self.started)
            if ahead > 0:
                self._wait(ahead)

    def _wait(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            self._check_cancel()

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise DownloadCancelled(f"{self.shown}: cancelled", code="download-cancelled")


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done

