"""The reference DDI server with a plain web server beside it, on the same port.

A board behind QEMU's user network reaches one address of the bench, which
leads to the current server's port (hil/gateway/reach.py). A manifest that
names its image by an http URI (an update by delta, docs/delta.md) needs a
web server there too: ``/files/NAME`` serves the files of ``files`` (a
directory) with ``Range``, ``If-Range``, 206 and 416, as nginx would. Every
answer is an Exchange of the server's record (``record=True``), so a scenario
can count the bytes the board fetched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from agent.demo.ddi_server import OCTET_STREAM, DdiServer, _Handler

FILES = "/files/"


class FilesDdiServer(DdiServer):
    """``files``: the directory served at ``/files/``; None (the default): nothing is."""

    def __init__(self, *, files: Path | None = None, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.files = files

    def handler_class(self) -> type[_Handler]:
        return _FilesHandler

    def served(self) -> list:
        """The recorded exchanges of ``/files/``, in arrival order."""
        return [e for e in self.exchanges if urlsplit(e.path).path.startswith(FILES)]


class _FilesHandler(_Handler):
    server_model: FilesDdiServer

    def _dispatch(self, method: str, raw: bytes) -> None:
        path = urlsplit(self.path).path
        if not path.startswith(FILES):
            return super()._dispatch(method, raw)
        name = unquote(path[len(FILES):])
        root = self.server_model.files
        if method != "GET" or root is None or not name or "/" in name or name.startswith("."):
            return self._send(404, None)
        try:
            stat = (root / name).stat()
        except OSError:
            return self._send(404, None)
        size = stat.st_size
        etag = f'"{stat.st_mtime_ns:x}-{size:x}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        status, start, end = 200, 0, size - 1
        wanted = self.headers.get("Range")
        if wanted and self.headers.get("If-Range") in (None, etag):
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if not match or int(match[1]) >= size:
                return self._send(416, None, headers={"Content-Range": f"bytes */{size}"})
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
            if end < start:
                return self._send(416, None, headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        fd = os.open(root / name, os.O_RDONLY)
        try:
            data = os.pread(fd, end - start + 1, start)
        finally:
            os.close(fd)
        self._send_bytes(status, data, OCTET_STREAM, headers)
