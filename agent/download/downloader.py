"""Resumable, verified HTTP(S) downloads into a sink (imperative shell around retry.py).

One ``fetch`` streams a URL into a Sink while hashing, in constant memory:

* Resume: a dropped connection continues from the sink's offset with
  ``Range`` and ``If-Range`` (the ETag, else Last-Modified), so a file changed
  on the server is never spliced onto the old one: the server then answers 200
  and the download restarts from zero. 416 means "nothing past this offset":
  complete if the size is reached, else start over.
* Across restarts and power cuts: ``checkpoint`` is called with a Resume
  record after the sink's bytes are synced, never before; the caller stores it
  (the journal) and hands it back to the next ``fetch``.
* Retries per retry.py; stalls (fewer than ``stall_bytes`` in ``stall_timeout``
  seconds) are transient errors; a cancel token is honoured within a second.
* The digest and size come from the signed manifest. A mismatch discards what
  was written and starts once more from zero; a second mismatch is final.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from agent.config import DownloadConfig
from agent.download.retry import (TRANSIENT, RetryPolicy, classify_status, next_wait,
                                  retry_after)
from agent.errors import FwagentError
from agent.net.direct import TlsError, decimal
from agent.net.http import AnswerTimeout, HttpLink, Tls
from agent.log import redact
from agent.sha256 import sha256
from agent.net.policy import LinkError

CHUNK = 256 << 10    # per read: large enough to keep up with openssl, small enough not to fragment the heap
CHECKPOINT_BYTES = 8 << 20     # sync and record progress at most this far apart
PROGRESS_INTERVAL = 0.25


class DownloadError(FwagentError, ConnectionError):
    code = "download"

    def __init__(self, detail: str, *, code: str = "download", transient: bool = False,
                 wait: float | None = None) -> None:
        super().__init__(detail, code=code)
        self.transient = transient
        self.wait = wait


class DownloadCancelled(DownloadError):
    code = "download-cancelled"


@dataclass(frozen=True)
class Resume:
    """Where a download stands, durable: ``offset`` bytes of ``url`` are synced in the sink."""

    url: str
    offset: int
    validator: str | None      # ETag or Last-Modified of the bytes already there

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "offset": self.offset, "validator": self.validator}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Resume | None":
        if not data:
            return None
        return cls(str(data["url"]), int(data["offset"]), data.get("validator"))


class Sink(Protocol):
    def write(self, data: memoryview | bytes) -> None: ...
    def sync(self) -> None: ...                      # after it returns, what was written is durable
    def restart(self, offset: int) -> None: ...      # continue writing at ``offset`` (0: from scratch)
    def read_back(self, size: int) -> Iterator[bytes]: ...   # the first ``size`` bytes, to rehash on resume


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None
    rate: float            # bytes per second, over the download so far
    eta: float | None      # seconds


@dataclass(frozen=True)
class Result:
    digest: bytes
    size: int
    attempts: int
    restarts_from_zero: int


class Downloader:
    def __init__(self, config: DownloadConfig = DownloadConfig(), *, link: HttpLink | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.policy = RetryPolicy(max_attempts=config.max_attempts, max_time=config.max_time)
        self.link = link or download_link(config)
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()

    def fetch(self, url: str, sink: Sink, *, size: int | None = None, digest: bytes | None = None,
              resume: Resume | None = None, checkpoint: Callable[[Resume], None] = lambda _r: None,
              cancel: threading.Event | None = None,
              progress: Callable[[Progress], None] | None = None) -> Result:
        try:
            self.link.policy.admit(url)      # a link refused for good is not tried at all
        except LinkError as err:
            raise DownloadError(err.detail, code=err.code) from None
        job = _Job(self, url, sink, size, digest, checkpoint, cancel or threading.Event(), progress)
        try:
            return job.run(resume if resume is not None and resume.url == url else None)
        except _SinkFailure as failure:
            raise failure.error from None    # a disk or slot error: the sink's, never retried


def download_link(config: DownloadConfig) -> HttpLink:
    """The link of downloads with no server configured: the operator's URLs and the signed
    manifest's, any host; ``[download]``'s CA and client certificate."""
    return HttpLink(other_tls=Tls.of(config.ca_file, config.client_cert, config.client_key), proxy=config.proxy)


class _Job:
    """One download: its attempts, its hash and its position."""

    def __init__(self, owner: Downloader, url: str, sink: Sink, size: int | None, digest: bytes | None,
                 checkpoint: Callable[[Resume], None], cancel: threading.Event,
                 progress: Callable[[Progress], None] | None) -> None:
        self.owner, self.url, self.sink, self.size, self.digest = owner, url, sink, size, digest
        self.checkpoint, self.cancel, self.on_progress = checkpoint, cancel, progress
        self.config = owner.config
        self.sha = sha256()
        self.offset = 0
        self.validator: str | None = None
        self.synced = 0
        self.started = owner.clock()
        self.last_progress = 0.0
        self.restarts_from_zero = 0
        self.behind: _WriteBehind | None = None
        self.shown = redact(url)        # for messages: never a password in a log line

    # --- attempts --------------------------------------------------------------------

    def run(self, resume: Resume | None) -> Result:
        if resume is not None and resume.offset > 0:
            self._resume_from(resume)
        else:
            self.sink.restart(0)
        attempt = 0          # failures in a row without progress; a connection that moved resets it
        attempts_made = 0
        mismatches = 0
        while True:
            self._check_cancel()
            before = self.offset
            attempts_made += 1
            try:
                self._attempt()
                if self.size is None or self.offset == self.size:
                    actual = self.sha.digest()
                    if self.digest is None or actual == self.digest:
                        self._sync()
                        return Result(actual, self.offset, attempts_made, self.restarts_from_zero)
                    mismatches += 1
                    if mismatches > 1:
                        raise DownloadError(f"{self.shown}: SHA-256 {actual.hex()[:16]}... again differs from "
                                            "the manifest's", code="digest-mismatch")
                    self._from_zero()       # corrupt content: discard it, one more try from zero
                    continue
                raise DownloadError(f"{self.shown}: the response ended at {self.offset} of {self.size} bytes",
                                    transient=True)
            except DownloadError as err:
                if not err.transient:
                    raise
                self._sync()
                if self.offset > before:
                    attempt = 0      # a bad link that keeps delivering is not a dead server
                wait = next_wait(attempt, self.owner.policy, self.owner.rng, server_wait=err.wait,
                                 elapsed=self.owner.clock() - self.started)
                if wait is None:
                    raise DownloadError(f"{err.detail} (gave up after {attempt + 1} attempt(s) without "
                                        "progress)", code=err.code) from None
                self._wait(wait)
                attempt += 1

    def _attempt(self) -> None:
        response = ranged_get(self.owner.link, self.url, self.config, self.offset, self.validator, self.shown)
        self.last_read = self.owner.clock()
        with response, CancelWatch(self.cancel, response, self._idle):
            self._check_status(response)
            try:
                self._receive(response)
            except OSError as exc:
                self._check_cancel()
                raise DownloadError(f"{self.shown}: {error_reason(exc)} at byte {self.offset}", transient=True) from None

    def _check_status(self, response: Any) -> None:
        status = response.status_code
        if status == 206 and self.offset:
            start = content_range_start(response.headers.get("Content-Range"))
            if start != self.offset:
                raise DownloadError(f"{self.shown}: asked for bytes from {self.offset}, got a range from {start}",
                                    transient=True)
            return
        if status == 200:
            if self.offset:
                self._from_zero()    # the file changed (If-Range) or ranges are not supported
            self.validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            length = response.headers.get("Content-Length")
            if self.size is not None and decimal(length) not in (None, self.size):
                raise DownloadError(f"{self.shown}: the server has {length} bytes, the manifest says {self.size}",
                                    transient=True)
            return
        if status == 416:
            if self.size is not None and self.offset == self.size:
                return               # nothing left to fetch
            self._from_zero()
            raise DownloadError(f"{self.shown}: range {self.offset}- not satisfiable; starting over",
                                transient=True, wait=0.0)
        kind = classify_status(status)
        wait = retry_after(response.headers.get("Retry-After"), time.time()) if status in (429, 503) else None
        raise DownloadError(f"{self.shown}: HTTP {status} {response.reason or ''}".rstrip(),
                            code=f"download-http-{status}", transient=kind == TRANSIENT, wait=wait)

    def _receive(self, response: Any) -> None:
        if response.status_code == 416:
            return
        window_start, window_bytes = self.owner.clock(), 0
        behind = _WriteBehind(self.sink, self.sha, self._check_cancel)
        self.behind = behind
        try:
            # read1 returns what has arrived (up to CHUNK), so a slow drip is seen as one. The bytes
            # are taken as sent: identity was asked for, and the digest judges them.
            while chunk := response.read1(CHUNK):
                self.last_read = self.owner.clock()
                self._check_cancel()
                if self.size is not None and self.offset + len(chunk) > self.size:
                    raise DownloadError(f"{self.shown}: longer than the {self.size} bytes the manifest declares",
                                        code="download-too-large")
                behind.put(chunk)
                self.offset += len(chunk)
                if self.offset - self.synced >= CHECKPOINT_BYTES:
                    self._sync()
                now = self.owner.clock()
                window_bytes += len(chunk)
                if now - window_start >= self.config.stall_timeout:
                    if window_bytes < self.config.stall_bytes:
                        raise DownloadError(f"{self.shown}: stalled ({window_bytes} bytes in "
                                            f"{now - window_start:.0f} s)", transient=True)
                    window_start, window_bytes = now, 0
                self._limit_rate(now)
                self._report(now)
                self.last_read = self.owner.clock()     # a wait of our own (the rate limit) is no stall
        finally:
            self.behind = None
            behind.close()      # every chunk received is written before anything else happens

    # --- position ----------------------------------------------------------------------

    def _resume_from(self, resume: Resume) -> None:
        """Continue a download of an earlier process: rehash what the sink already holds."""
        for block in self.sink.read_back(resume.offset):
            self.sha.update(block)
        self.offset = self.synced = resume.offset
        self.validator = resume.validator
        self.sink.restart(resume.offset)

    def _from_zero(self) -> None:
        self.sink.restart(0)
        self.sha = sha256()
        self.offset = self.synced = 0
        self.validator = None
        self.restarts_from_zero += 1
        self.checkpoint(Resume(self.url, 0, None))

    def _sync(self) -> None:
        """Make the bytes durable, then record how far they go: never the other way round."""
        if self.offset == self.synced:
            return
        if self.behind is not None:
            self.behind.drain()
        try:
            self.sink.sync()
        except OSError as exc:
            raise _SinkFailure(exc) from None
        self.synced = self.offset
        self.checkpoint(Resume(self.url, self.offset, self.validator))

    # --- pacing ---------------------------------------------------------------------------

    def _limit_rate(self, now: float) -> None:
        limit = self.config.rate_limit
        if limit:
            ahead = self.offset / limit - (now - self.started)
            if ahead > 0:
                self._wait(ahead)

    def _report(self, now: float) -> None:
        if self.on_progress is None or (now - self.last_progress < PROGRESS_INTERVAL and self.offset != self.size):
            return
        self.last_progress = now
        rate = self.offset / max(now - self.started, 1e-6)
        eta = (self.size - self.offset) / rate if self.size is not None and rate > 0 else None
        self.on_progress(Progress(self.offset, self.size, rate, eta))

    def _wait(self, seconds: float) -> None:
        """Sleep, but wake for a cancel within a second."""
        deadline = self.owner.clock() + seconds
        while True:
            self._check_cancel()
            left = deadline - self.owner.clock()
            if left <= 0:
                return
            self.owner.sleep(min(left, 1.0))

    def _idle(self) -> bool:
        """No byte for a stall time, however busy the connection (trailers of a chunked answer
        that never end, say): the watcher then ends the read."""
        return self.owner.clock() - self.last_read > self.config.stall_timeout

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise DownloadCancelled(f"{self.shown}: cancelled at byte {self.offset}", code="download-cancelled")


class _SinkFailure(Exception):
    """Carries a sink's error past the handlers of network errors (OSError is both)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _WriteBehind:
    """Writes and hashes received chunks on a worker thread while the next ones arrive.

    Receiving, writing and hashing all release the GIL, so with a worker they use
    two cores, as ``curl | tee | openssl`` would. The queue is short (1 MiB), so
    memory stays flat. A write error is raised in the receiving thread at its
    next ``put``, ``drain`` or ``close``; nothing is lost or reordered.
    """

    DEPTH = 4

    def __init__(self, sink: Sink, sha: Any, check_cancel: Callable[[], None]) -> None:
        self.sink, self.sha, self.check_cancel = sink, sha, check_cancel
        self.queue: queue.Queue[bytes | None] = queue.Queue(self.DEPTH)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="download-writer", daemon=True)
        self.thread.start()

    def put(self, chunk: bytes) -> None:
        self._raise()
        while True:
            try:
                self.queue.put(chunk, timeout=0.5)
                return
            except queue.Full:
                self.check_cancel()
                self._raise()

    def drain(self) -> None:
        """Return once every chunk put so far is written (not yet synced)."""
        self.queue.join()
        self._raise()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise _SinkFailure(error)

    def _run(self) -> None:
        while True:
            chunk = self.queue.get()
            try:
                if chunk is None:
                    return
                if self.error is None:
                    self.sink.write(chunk)
                    self.sha.update(chunk)
            except BaseException as exc:  # handed to the receiving thread
                self.error = exc
            finally:
                self.queue.task_done()


class CancelWatch:
    """Interrupts the answer when the cancel token is set, or when ``idle`` says it has stopped
    delivering, so that a blocked read returns; ``fired`` says it did (the end a reader then
    sees is not the answer's)."""

    def __init__(self, cancel: threading.Event, response: Any, idle: Callable[[], bool]) -> None:
        self.cancel, self.response, self.idle = cancel, response, idle
        self.fired = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="download-cancel", daemon=True)

    def __enter__(self) -> "CancelWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=2)

    def _watch(self) -> None:
        while not self.done.wait(0.2):
            if self.cancel.is_set() or self.idle():
                self.fired = True
                self.response.interrupt()
                return


def ranged_get(link: HttpLink, url: str, config: DownloadConfig, offset: int, validator: str | None,
               shown: str, end: int | None = None) -> Any:
    """The GET of a download from ``offset`` (Range, with If-Range when a validator is known), or
    of bytes ``offset`` to ``end`` (exclusive) when given, its answer's head within one stall time
    after connecting, however slowly it drips in (the body is watched for stalls as it arrives); a
    failure as a DownloadError, transient where a retry may help."""
    headers = {"Accept-Encoding": "identity"}
    if offset or end is not None:
        headers["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        if validator:
            headers["If-Range"] = validator
    try:
        return link.get(url, headers=headers, timeout=(config.connect_timeout, config.stall_timeout),
                        deadline=config.connect_timeout + config.stall_timeout)
    except LinkError as err:
        raise DownloadError(err.detail, code=err.code) from None
    except AnswerTimeout as err:
        raise DownloadError(err.detail, transient=True) from None
    except TlsError as err:
        raise DownloadError(f"{shown}: {err.detail}", code="download-tls") from None
    except OSError as exc:
        raise DownloadError(f"{shown}: {error_reason(exc)}", transient=True) from None


def content_range_start(value: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes START-END/TOTAL``."""
    if not value or not value.startswith("bytes "):
        return None
    start = value[6:].split("-", 1)[0]
    return decimal(start)


def error_reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]
