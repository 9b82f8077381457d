"""Build SUIT envelopes for tests: manifest dict -> bstr -> digest -> COSE -> envelope.

Every step is exposed so that a test can break exactly one of them (tamper
with the manifest after signing, sign with another key, attach the payload,
reorder the envelope ...). Encoding uses cbor2 in canonical form, as the
signing tools do; command sequences are written as flat Python lists of
``command, argument`` pairs and encoded with :func:`seq`.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path
from typing import Any, Iterable

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from agent.manifest import cose
from agent.manifest.envelope import encode_envelope
from agent.manifest.processor import DeviceIdentity
from agent.manifest.verify import Trust

VECTORS = Path(__file__).resolve().parent / "vectors"
IETF = VECTORS / "ietf-manifest-spec"
DRAFT_PUBLIC_KEY = IETF / "public_key.pem"
DRAFT_PRIVATE_KEY = IETF / "private_key_TEST_ONLY_published_in_draft.pem"

VENDOR_UUID = uuid.UUID("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe")
CLASS_UUID = uuid.UUID("1492af14-2569-5e48-bf42-9b2d51f2ab45")
VENDOR_ID = VENDOR_UUID.bytes
CLASS_ID = CLASS_UUID.bytes
DEVICE = DeviceIdentity(vendor_ids=(VENDOR_ID,), class_ids=(CLASS_ID,))

HMAC_SECRET = b"a" * 32
IMAGE = b"firmware image for the test component\n" * 8
IMAGE_DIGEST = hashlib.sha256(IMAGE).digest()

# Commands and parameters, by their draft-37 numbers (kept local so a test
# reads as the wire format it builds).
VENDOR, CLASS, IMAGE_MATCH, SLOT, CHECK_CONTENT, ABORT = 1, 2, 3, 5, 6, 14
SET_INDEX, TRY_EACH, WRITE, OVERRIDE, FETCH, COPY, INVOKE, SWAP, RUN_SEQUENCE = \
    12, 15, 18, 20, 21, 22, 23, 31, 32
P_VENDOR, P_CLASS, P_DIGEST, P_SLOT, P_SOFT_FAILURE, P_SIZE, P_CONTENT, P_URI, P_SOURCE = \
    1, 2, 3, 5, 13, 14, 18, 21, 22
REPORT = 15  # a reporting policy: record success, failure and system info


def draft_private_key() -> ec.EllipticCurvePrivateKey:
    """The P-256 key printed in the SUIT draft: a published test key, trusted only here."""
    key = cose.load_private_key(DRAFT_PRIVATE_KEY)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def draft_anchor() -> cose.TrustAnchor:
    return cose.load_trust_anchor(DRAFT_PUBLIC_KEY)


def anchor_of(key: cose.PrivateKey, kid: bytes | None = None, name: str = "test key") -> cose.TrustAnchor:
    public = key.public_key()
    return cose.TrustAnchor(key=public, kid=cose.key_id(public) if kid is None else kid, name=name)


def trust(*keys: cose.PrivateKey | cose.TrustAnchor, mac: Iterable[bytes] = ()) -> Trust:
    anchors = tuple(k if isinstance(k, cose.TrustAnchor) else anchor_of(k) for k in keys)
    return Trust(anchors=anchors, mac_keys=tuple(cose.MacKey(s, f"hmac-{i}") for i, s in enumerate(mac)))


# --- manifests ----------------------------------------------------------------


def seq(*commands: Any) -> bytes:
    """An encoded command sequence from flat ``command, argument`` pairs."""
    return cbor2.dumps(list(commands), canonical=True)


def digest_bstr(data: bytes) -> bytes:
    """An encoded SUIT_Digest over the raw bytes ``data`` (as for image-digest)."""
    return cbor2.dumps([-16, hashlib.sha256(data).digest()])


def identity_checks(vendor: bytes = VENDOR_ID, class_id: bytes = CLASS_ID) -> list[Any]:
    """The usual start of a shared sequence: set vendor and class id, check both."""
    return [OVERRIDE, {P_VENDOR: vendor, P_CLASS: class_id}, VENDOR, REPORT, CLASS, REPORT]


def manifest(sequence: int = 1, *, components: Iterable[Iterable[bytes]] = ((b"\x00",),),
             shared: list[Any] | bytes | None = None, common_extra: dict | None = None,
             version: Any = 1, **members: Any) -> dict:
    """A SUIT_Manifest as a dict. ``members`` by name: validate, load, invoke,
    payload_fetch, install (lists of commands, or bytes), text (a dict or bytes),
    or by number ``m<key>=value`` for anything else."""
    if shared is None:
        shared = identity_checks() + [OVERRIDE, {P_DIGEST: digest_bstr(IMAGE), P_SIZE: len(IMAGE)}]
    common: dict = {2: [list(c) for c in components], 4: shared if isinstance(shared, bytes) else seq(*shared)}
    common.update(common_extra or {})
    body: dict = {1: version, 2: sequence, 3: cbor2.dumps(common, canonical=True)}
    numbers = {"validate": 7, "load": 8, "invoke": 9, "payload_fetch": 16, "install": 20, "text": 23}
    for name, value in members.items():
        key = numbers[name] if name in numbers else int(name.lstrip("m"))
        if isinstance(value, list) and key != 23:
            value = seq(*value)
        elif isinstance(value, dict):
            value = cbor2.dumps(value, canonical=True)
        body[key] = value
    return body


def simple_manifest(sequence: int = 1, uri: str = "http://example.com/file.bin") -> dict:
    """Identity checks, fetch + image-match on install, image-match on validate, invoke."""
    return manifest(sequence,
                    install=[OVERRIDE, {P_URI: uri}, FETCH, REPORT, IMAGE_MATCH, REPORT],
                    validate=[IMAGE_MATCH, REPORT],
                    invoke=[INVOKE, REPORT])


def encode(body: dict) -> bytes:
    return cbor2.dumps(body, canonical=True)


def severable_digest(element: bytes) -> list[Any]:
    """The digest a manifest holds for a severed element: SHA-256 of its encoded bstr."""
    return [-16, hashlib.sha256(cbor2.dumps(element)).digest()]


def sever(body: dict, *keys: int) -> tuple[dict, dict[int, bytes]]:
    """Replace members ``keys`` by their digests; return the manifest and the severed elements."""
    body = dict(body)
    severed = {}
    for key in keys:
        severed[key] = body[key]
        body[key] = severable_digest(body[key])
    return body, severed


# --- authentication -------------------------------------------------------------


def manifest_digest(manifest_bytes: bytes) -> bytes:
    """The encoded SUIT_Digest over the manifest bstr (header included)."""
    return cbor2.dumps([-16, hashlib.sha256(cbor2.dumps(manifest_bytes)).digest()])


def sign1_block(payload: bytes, key: cose.PrivateKey, *, alg: int | None = None,
                kid: bytes | None | bool = True, attach: bool = False, protected_extra: dict | None = None) -> bytes:
    """An encoded COSE_Sign1 over the detached ``payload``.

    ``alg`` defaults to ESP256 (-9) for P-256 and Ed25519 (-19) for Ed25519;
    ``kid=True`` puts the key's default key id in the unprotected header,
    ``kid=None``/``False`` leaves it out, bytes set it. ``attach`` carries the payload.
    """
    if alg is None:
        alg = -9 if isinstance(key, ec.EllipticCurvePrivateKey) else -19
    headers = {1: alg}
    headers.update(protected_extra or {})
    protected = cbor2.dumps(headers, canonical=True)
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        signature = key.sign(to_sign)
    unprotected = {}
    if kid is True:
        unprotected[4] = cose.key_id(key.public_key())
    elif isinstance(kid, bytes):
        unprotected[4] = kid
    return cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, payload if attach else None, signature]))


def mac0_block(payload: bytes, secret: bytes = HMAC_SECRET) -> bytes:
    protected = cbor2.dumps({1: 5})
    tag = hmac.new(secret, cbor2.dumps(["MAC0", protected, b"", payload]), hashlib.sha256).digest()
    return cbor2.dumps(cbor2.CBORTag(17, [protected, {}, None, tag]))


def wrapper(manifest_bytes: bytes, blocks: Iterable[bytes], digest: bytes | None = None) -> bytes:
    """An encoded authentication wrapper: the digest, then the blocks."""
    return cbor2.dumps([manifest_digest(manifest_bytes) if digest is None else digest, *blocks])


def envelope(body: dict | bytes, *signers: Any, severed: dict[int, bytes] | None = None,
             integrated: dict[str, bytes] | None = None) -> bytes:
    """A complete envelope. ``signers``: private keys (ESP256/Ed25519 with kid),
    ``bytes`` HMAC secrets (COSE_Mac0), or ``(key, dict)`` for :func:`sign1_block` options.
    No signer at all gives a digest-only (unauthenticated) wrapper."""
    manifest_bytes = body if isinstance(body, bytes) else encode(body)
    payload = manifest_digest(manifest_bytes)
    blocks = []
    for signer in signers:
        if isinstance(signer, bytes):
            blocks.append(mac0_block(payload, signer))
        elif isinstance(signer, tuple):
            key, options = signer
            blocks.append(sign1_block(payload, key, **options))
        else:
            blocks.append(sign1_block(payload, signer))
    return encode_envelope(wrapper(manifest_bytes, blocks), manifest_bytes, severed, integrated)
