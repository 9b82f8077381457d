"""Where a download's bytes go: a file here; a slot device in agent/install/slots.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from agent.download.downloader import DownloadError
from agent.install.slots import read_chunks

class FileSink:
    """A regular file only its owner reads (0600), created if missing; checks free space for
    ``size`` before it starts."""

    def __init__(self, path: Path, size: int | None = None) -> None:
        self.path = Path(path)
        if size is not None:
            existing = self.path.stat().st_size if self.path.exists() else 0
            stat = os.statvfs(self.path.parent)
            free = stat.f_bavail * stat.f_frsize
            if size - existing > free:
                raise DownloadError(f"{self.path.parent}: {free >> 20} MiB free, the download needs "
                                    f"{(size - existing) >> 20} MiB more", code="no-space")
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.fchmod(self.fd, 0o600)           # also a file an earlier version made 0644
        except OSError as exc:
            raise DownloadError(f"{self.path}: cannot open: {exc.strerror}", code="sink") from None

    def write(self, data: memoryview | bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def sync(self) -> None:
        os.fsync(self.fd)

    def restart(self, offset: int) -> None:
        os.ftruncate(self.fd, offset)
        os.lseek(self.fd, offset, os.SEEK_SET)

    def read_back(self, size: int) -> Iterator[bytes]:
        return read_chunks(self.fd, size, str(self.path))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "FileSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
