"""Add authentication blocks to an envelope (the signing side)."""

from __future__ import annotations

import cbor2

from agent.manifest import cbor
from agent.manifest.cose import PrivateKey, sign1
from agent.manifest.envelope import encode_envelope
from agent.manifest.verify import inspect_envelope


def add_signature(envelope: bytes, key: PrivateKey, kid: bytes | None = None) -> bytes:
    """Append a COSE_Sign1 block; blocks already there stay (several signers, key rotation)."""
    return _add_block(envelope, lambda payload: sign1(payload, key, kid))


def _add_block(envelope: bytes, make) -> bytes:  # type: ignore[no-untyped-def]
    # The manifest digest is checked before signing: a signer must never
    # vouch for a digest that does not match the manifest beside it.
    parsed = inspect_envelope(envelope).envelope
    wrapper = cbor.decode(parsed.authentication, what="authentication wrapper")
    wrapper.append(cbor2.dumps(make(wrapper[0])))
    return encode_envelope(cbor2.dumps(wrapper), parsed.manifest, parsed.severed, parsed.integrated)
