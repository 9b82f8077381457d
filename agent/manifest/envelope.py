"""The SUIT envelope: its structure, read from strict CBOR (pure, no I/O).

Nothing inside the manifest bstr is decoded here: the manifest is parsed only
after its digest and signature have been checked (verify.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cbor2

from agent.errors import ManifestFormatError
from agent.manifest import cbor
from agent.manifest.cbor import Limits, Tag
from agent.manifest.constants import (ENV_AUTHENTICATION, ENV_DELEGATION, ENV_MANIFEST,
                                      TAG_ENVELOPE, TAG_MANIFEST)


@dataclass(frozen=True)
class Envelope:
    manifest: bytes                    # contents of the manifest bstr (key 3)
    authentication: bytes              # contents of the authentication wrapper bstr (key 2)
    severed: dict[int, bytes] = field(default_factory=dict)     # severed members: 16/20/23, extensions
    integrated: dict[str, bytes] = field(default_factory=dict)  # "#name" -> payload
    tagged: bool = True

    @property
    def manifest_encoded(self) -> bytes:
        """The manifest bstr as encoded in the envelope: what SUIT_Digest covers."""
        return cbor.encoded_bstr_header(len(self.manifest)) + self.manifest


def parse_envelope(data: bytes, limits: Limits = Limits()) -> Envelope:
    item = cbor.decode(data, what="envelope", limits=limits)
    tagged = isinstance(item, Tag)
    if tagged:
        if item.number == TAG_MANIFEST:
            raise ManifestFormatError("a bare SUIT_Manifest (tag 1070) carries no authentication; "
                                      "an envelope (tag 107) is required", code="no-authentication")
        if item.number != TAG_ENVELOPE:
            raise ManifestFormatError(f"envelope has CBOR tag {item.number}, expected 107",
                                      code="envelope-format")
        item = item.value
    if not isinstance(item, dict):
        raise ManifestFormatError("envelope is not a CBOR map", code="envelope-format")
    keys = list(item)
    for key in (ENV_AUTHENTICATION, ENV_MANIFEST):
        if key in item and not isinstance(item[key], bytes):
            raise ManifestFormatError(f"envelope element {key} must be a bstr", code="envelope-format")
    if ENV_MANIFEST not in item:
        raise ManifestFormatError("envelope has no manifest (key 3)", code="envelope-format")
    if ENV_AUTHENTICATION not in item:
        raise ManifestFormatError("envelope has no authentication wrapper (key 2)",
                                  code="no-authentication")
    if keys.index(ENV_AUTHENTICATION) > keys.index(ENV_MANIFEST):
        raise ManifestFormatError("authentication wrapper (key 2) must come before the manifest (key 3)",
                                  code="envelope-format")
    severed: dict[int, bytes] = {}
    integrated: dict[str, bytes] = {}
    for key, value in item.items():
        if key in (ENV_AUTHENTICATION, ENV_MANIFEST):
            continue  # checked above
        if isinstance(key, str):
            if not isinstance(value, bytes):
                raise ManifestFormatError(f"integrated payload {key!r} must be a bstr",
                                          code="envelope-format")
            integrated[key] = value
        elif key == ENV_DELEGATION:
            raise ManifestFormatError("delegation chains (envelope key 1) are not supported",
                                      code="unsupported-extension")
        elif isinstance(key, int) and key <= -256:
            continue  # private-use envelope extensions are ignored
        elif isinstance(key, int) and key > 0:
            # A severed manifest member (16, 20, 23, or an extension's); verify.py
            # requires a matching digest in the manifest for every one of them.
            if not isinstance(value, bytes):
                raise ManifestFormatError(f"envelope element {key} must be a bstr", code="envelope-format")
            severed[key] = value
        else:
            raise ManifestFormatError(f"unknown envelope element {key!r}", code="envelope-format")
    return Envelope(manifest=item[ENV_MANIFEST], authentication=item[ENV_AUTHENTICATION],
                    severed=severed, integrated=integrated, tagged=tagged)


def encode_envelope(authentication: bytes, manifest: bytes, severed: dict[int, bytes] | None = None,
                    integrated: dict[str, bytes] | None = None) -> bytes:
    """Encode an envelope: authentication wrapper first, then manifest, then the rest."""
    body: dict = {ENV_AUTHENTICATION: authentication, ENV_MANIFEST: manifest}
    body.update(sorted((severed or {}).items()))
    body.update(sorted((integrated or {}).items()))
    # cbor2's canonical mode would reorder the map; the order above is the one SUIT requires.
    return cbor2.dumps(cbor2.CBORTag(TAG_ENVELOPE, body))
