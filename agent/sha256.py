"""SHA-256 for what an update hashes: images, bundle members, manifests.

It comes from the OpenSSL that cryptography carries, which verifying the
manifest loads anyway. hashlib's SHA-256 is as fast (both release the GIL while
they hash a large buffer), but it loads the system's libcrypto besides: about
3 MiB more memory for an install from a file. cryptography is imported on the
first hash, not by a service that waits between updates.
"""

from __future__ import annotations

from typing import Any


class Sha256:
    """hashlib's interface, as far as fwagent uses it: ``update`` and ``digest``."""

    __slots__ = ("_hash", "_digest")

    def __init__(self, data: Any = b"") -> None:
        from cryptography.hazmat.primitives.hashes import SHA256, Hash
        self._hash = Hash(SHA256())
        self._digest: bytes | None = None
        if data:
            self._hash.update(data)

    def update(self, data: Any) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        if self._digest is None:
            self._digest = self._hash.finalize()
        return self._digest


def sha256(data: Any = b"") -> Sha256:
    return Sha256(data)
