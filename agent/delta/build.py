"""Write the frames file and the index of an image (the release side; I/O around frames.py)."""

from __future__ import annotations

import hashlib
import os
from array import array
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.delta.frames import Index, check_frame_size, encode_index, frame_id
from agent.errors import InputFileError

LEVEL = 19          # each frame is small: the highest usual level costs little time


@dataclass(frozen=True)
class Artifact:
    """A file a device may fetch, as the signed manifest names it."""

    uri: str
    digest: bytes
    size: int


@dataclass(frozen=True)
class DeltaFiles:
    frames: Path
    index: Path
    frames_digest: bytes
    frames_size: int
    index_digest: bytes
    index_size: int
    frame_count: int


def write_delta(image: Path, frame_size: int, level: int = LEVEL) -> DeltaFiles:
    """``IMAGE.frames`` and ``IMAGE.index`` beside ``image``, each written whole or not at all."""
    import zstandard

    check_frame_size(frame_size)
    compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
    frames_path, index_path = Path(f"{image}.frames"), Path(f"{image}.index")
    ids = bytearray()
    lengths = array("I")
    sha = hashlib.sha256()
    size = 0
    try:
        with open(image, "rb") as source, _Replacing(frames_path) as out:
            while chunk := source.read(frame_size):
                frame = compressor.compress(chunk)
                out.write(frame)
                sha.update(frame)
                ids += frame_id(chunk)
                lengths.append(len(frame))
                size += len(chunk)
    except OSError as exc:
        raise InputFileError(f"{exc.filename or image}: {exc.strerror}") from None
    encoded = encode_index(Index(frame_size, size, bytes(ids), lengths))
    try:
        with _Replacing(index_path) as out:
            out.write(encoded)
    except OSError as exc:
        raise InputFileError(f"{index_path}: {exc.strerror}") from None
    return DeltaFiles(frames_path, index_path, sha.digest(), sum(lengths), hashlib.sha256(encoded).digest(),
                      len(encoded), len(lengths))


class _Replacing:
    """A file written beside ``path`` and renamed over it once complete."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):  # type: ignore[no-untyped-def]
        handle, self.temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.file = os.fdopen(handle, "wb")
        os.fchmod(self.file.fileno(), 0o644)
        return self.file

    def __exit__(self, kind, *rest) -> None:  # type: ignore[no-untyped-def]
        self.file.close()
        if kind is None:
            os.replace(self.temp, self.path)
        else:
            os.unlink(self.temp)
