"""A file read over HTTP(S) as it arrives: sequential reads, seeks, and cuts resumed in place.

The bundle reader reads a bundle URL through it as it reads a local file, so a
bundle streams from the network into its slots with nothing kept on disk:

* one GET streams the file; a connection that breaks, stalls (fewer than
  ``stall_bytes`` in ``stall_timeout``) or ends early is resumed from the very
  byte reached, with ``Range`` and ``If-Range`` (the first answer's ETag, else
  its Last-Modified), after the downloader's backoff (retry.py);
* a seek (a resumed install passing over what its slots already hold) is a new
  ranged GET, with ``If-Range`` too;
* a 200 answer to a ranged GET means the file changed on the server:
  ``RemoteChangedError``, never bytes of two files spliced together.

Reads are bounded by what the caller asks for: the bundle reader asks only for
what the signed manifest declares (and a bounded tail). Every attempt has the
downloader's timeouts, and a cancel token ends a blocked read within a second.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from agent.download.downloader import (CancelWatch, DownloadCancelled, DownloadError, Downloader,
                                       content_range_start, error_reason, ranged_get)
from agent.download.retry import TRANSIENT, classify_status, next_wait, retry_after
from agent.log import redact
from agent.net.direct import decimal

READ_SIZE = 256 << 10     # per socket read: what has arrived, up to this
QUICK_RETRY_BYTES = 1 << 20   # a connection that delivered this much before it broke is resumed at once


class RemoteChangedError(DownloadError):
    """The file at the URL is not the one whose first bytes were read."""

    code = "remote-changed"


class RemoteFile:
    """``url`` read from its start; ``validator`` is the first answer's ETag or Last-Modified,
    which every later (ranged) answer must have."""

    def __init__(self, downloader: Downloader, url: str, *, cancel: threading.Event | None = None) -> None:
        downloader.link.policy.admit(url)        # a link refused for good is not tried at all
        self.owner = downloader
        self.url = url
        self.shown = redact(url)
        self.config = downloader.config
        self.cancel = cancel or threading.Event()
        self.position = 0
        self.validator: str | None = None
        self.size: int | None = None              # the whole file's, once an answer said it
        self._response: Any = None
        self._watch: CancelWatch | None = None
        self._last_read = 0.0
        self._window_start = 0.0
        self._window_bytes = 0
        self._paced: tuple[float, int] | None = None     # when reading began, and where: for rate_limit
        self._delivered = 0                               # by the current connection

    # --- file interface (what the bundle reader uses) ---------------------------------------

    def readinto(self, buffer: Any) -> int:
        """Up to ``len(buffer)`` bytes; 0 only at the end of the file."""
        view = memoryview(buffer).cast("B")
        attempt, started = 0, self.owner.clock()
        while True:
            self._check_cancel()
            if self.size is not None and self.position >= self.size:
                return 0
            try:
                if self._response is None:
                    self._connect()
                count = self._receive(view)
                if count:
                    return count
                if self._watch is not None and self._watch.fired:
                    raise DownloadError(f"{self.shown}: no byte for {self.config.stall_timeout:g} s at byte "
                                        f"{self.position}", transient=True)
                if self.size is None:
                    return 0                      # no length was given: the end of the body is the end
                raise DownloadError(f"{self.shown}: the answer ended at byte {self.position} of {self.size}",
                                    transient=True)
            except DownloadError as err:
                delivered = self._delivered
                self._drop()
                if not err.transient:
                    raise
                if delivered >= QUICK_RETRY_BYTES and attempt == 0 and err.wait is None \
                        and self.owner.policy.max_attempts > 1:
                    attempt = 1               # a link that was delivering broke: at once, then backoff
                    continue
                wait = next_wait(attempt, self.owner.policy, self.owner.rng, server_wait=err.wait,
                                 elapsed=self.owner.clock() - started)
                if wait is None:
                    raise DownloadError(f"{err.detail} (gave up after {attempt + 1} attempt(s) without "
                                        "progress)", code=err.code) from None
                self._wait(wait)
                attempt += 1

    def read(self, size: int) -> bytes:
        buffer = bytearray(size)
        count = self.readinto(buffer)
        return bytes(buffer[:count])

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self.position + offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < 0:
            raise ValueError("a remote file seeks from its start or from where it is, not before its start")
        if target != self.position:
            self._drop()                          # the next read asks for a range from there
            self.position = target
        return self.position

    def close(self) -> None:
        self._drop()

    # --- attempts ----------------------------------------------------------------------------

    def _connect(self) -> None:
        response = ranged_get(self.owner.link, self.url, self.config, self.position, self.validator, self.shown)
        self._response = response
        try:
            self._check_status(response)
        except DownloadError:
            self._drop()
            raise
        self._last_read = self._window_start = self.owner.clock()
        self._window_bytes = self._delivered = 0
        self._watch = CancelWatch(self.cancel, response, self._idle).__enter__()

    def _check_status(self, response: Any) -> None:
        status = response.status_code
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        if status == 206 and self.position:
            value = response.headers.get("Content-Range")
            if content_range_start(value) != self.position:
                raise DownloadError(f"{self.shown}: asked for bytes from {self.position}, got {value!r}",
                                    transient=True)
            total = value.rsplit("/", 1)[-1] if value else ""
            self.size = decimal(total) if decimal(total) is not None else self.size
            self.validator = self.validator or validator
            return
        if status == 200:
            if self.position:
                raise RemoteChangedError(f"{self.shown}: asked for bytes from {self.position}, the server sent "
                                         "the whole file: it changed (or ignores ranges)", code="remote-changed")
            self.validator = validator
            length = response.headers.get("Content-Length")
            self.size = decimal(length)
            return
        kind = classify_status(status)
        wait = retry_after(response.headers.get("Retry-After"), time.time()) if status in (429, 503) else None
        raise DownloadError(f"{self.shown}: HTTP {status} {response.reason or ''}".rstrip(),
                            code=f"download-http-{status}", transient=kind == TRANSIENT, wait=wait)

    def _receive(self, view: memoryview) -> int:
        want = min(len(view), READ_SIZE)
        if self.size is not None:
            want = min(want, self.size - self.position)
        try:
            count = self._response.readinto1(view[:want])
        except OSError as exc:
            self._check_cancel()
            raise DownloadError(f"{self.shown}: {error_reason(exc)} at byte {self.position}",
                                transient=True) from None
        self._check_cancel()
        self.position += count
        now = self._last_read = self.owner.clock()
        self._window_bytes += count
        self._delivered += count
        if now - self._window_start >= self.config.stall_timeout:
            if self._window_bytes < self.config.stall_bytes:
                raise DownloadError(f"{self.shown}: stalled ({self._window_bytes} bytes in "
                                    f"{now - self._window_start:.0f} s)", transient=True)
            self._window_start, self._window_bytes = now, 0
        self._limit_rate(now)
        return count

    def _limit_rate(self, now: float) -> None:
        """``rate_limit`` bytes per second over the whole read, as the downloader keeps it."""
        limit = self.config.rate_limit
        if not limit:
            return
        if self._paced is None:
            self._paced = (now, self.position)
        started, first = self._paced
        ahead = (self.position - first) / limit - (now - started)
        if ahead > 0:
            self._wait(ahead)
            self._last_read = self.owner.clock()        # a wait of our own is no stall

    def _drop(self) -> None:
        self._delivered = 0
        if self._watch is not None:
            self._watch.__exit__(None, None, None)
            self._watch = None
        if self._response is not None:
            self._response.close()
            self._response = None

    def _idle(self) -> bool:
        return self.owner.clock() - self._last_read > self.config.stall_timeout

    def _wait(self, seconds: float) -> None:
        deadline = self.owner.clock() + seconds
        while (left := deadline - self.owner.clock()) > 0:
            self._check_cancel()
            self.owner.sleep(min(left, 1.0))
        self._check_cancel()

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise DownloadCancelled(f"{self.shown}: cancelled at byte {self.position}", code="download-cancelled")
