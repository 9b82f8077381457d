"""COSE_Sign1 and COSE_Mac0 over a detached payload, as SUIT uses them.

The payload of every SUIT authentication block is the encoded SUIT_Digest
(the contents of the first bstr of the authentication wrapper); it is never
carried in the block itself. ECDSA signatures are raw ``r || s`` (RFC 9053).
Algorithms: ES256 (-7) and ESP256 (-9) with P-256 keys, EdDSA (-8) and
Ed25519 (-19) with Ed25519 keys, HMAC 256/256 (5) with a symmetric key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)

from agent.errors import CborError, KeyFileError
from agent.manifest import cbor
from agent.sha256 import sha256
from agent.manifest.constants import (ALG_ED25519, ALG_EDDSA, ALG_ES256, ALG_ESP256,
                                      ALG_HMAC256, COSE_HEADER_ALG, COSE_HEADER_KID,
                                      MAC_ALGORITHMS, SIGN_ALGORITHMS, TAG_COSE_MAC,
                                      TAG_COSE_MAC0, TAG_COSE_SIGN, TAG_COSE_SIGN1)

PublicKey = Union[ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey]
PrivateKey = Union[ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]

_P256_ALGS = (ALG_ES256, ALG_ESP256)
_ED25519_ALGS = (ALG_EDDSA, ALG_ED25519)


@dataclass(frozen=True)
class TrustAnchor:
    """A public key the device trusts to sign manifests."""

    key: PublicKey
    kid: bytes
    name: str

    @property
    def kind(self) -> str:
        return "P-256" if isinstance(self.key, ec.EllipticCurvePublicKey) else "Ed25519"


@dataclass(frozen=True)
class MacKey:
    """A symmetric key for COSE_Mac0 (HMAC 256/256)."""

    secret: bytes
    name: str


@dataclass(frozen=True)
class BlockResult:
    """How one authentication block was checked."""

    kind: str       # "COSE_Sign1", "COSE_Mac0", ...
    algorithm: str
    kid: bytes | None
    ok: bool
    code: str = ""
    detail: str = ""
    signer: str = ""


def key_id(public_key: PublicKey) -> bytes:
    """Default key id: the first 8 bytes of SHA-256 over the SubjectPublicKeyInfo."""
    from cryptography.hazmat.primitives import serialization
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256(spki).digest()[:8]


def _check_supported(key: Any, path: Path) -> None:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError(f"{path}: EC curve {key.curve.name} is not supported (use P-256)")
    elif not isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        raise KeyFileError(f"{path}: {type(key).__name__.lstrip('_')} keys are not supported "
                           "(use P-256 or Ed25519)")


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from None


def load_private_key(path: Path) -> PrivateKey:
    from cryptography.hazmat.primitives import serialization
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted private key in PEM or DER ({exc})") from None
    _check_supported(key, path)
    return key  # type: ignore[return-value]


# The DER SubjectPublicKeyInfo of a P-256 key (uncompressed point) and of an Ed25519 key, up to
# the key's bytes: the public keys `fwagent manifest keygen` writes.
_SPKI_P256 = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
_SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")
_PEM_PUBLIC = (b"-----BEGIN PUBLIC KEY-----", b"-----END PUBLIC KEY-----")


def _plain_public_key(data: bytes) -> tuple[PublicKey, bytes] | None:
    """A PEM public key of one of the two usual shapes, and its SubjectPublicKeyInfo, without
    cryptography's serialization module (3 MiB of memory, for a device that installs from a
    file); None for any other shape, which the general loader then reads."""
    import base64
    import binascii

    text = data.strip()
    if not (text.startswith(_PEM_PUBLIC[0]) and text.endswith(_PEM_PUBLIC[1])):
        return None
    try:
        der = base64.b64decode(b"".join(text[len(_PEM_PUBLIC[0]):-len(_PEM_PUBLIC[1])].split()), validate=True)
    except binascii.Error:
        return None
    try:
        if der.startswith(_SPKI_P256) and len(der) == len(_SPKI_P256) + 65:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), der[len(_SPKI_P256):]), der
        if der.startswith(_SPKI_ED25519) and len(der) == len(_SPKI_ED25519) + 32:
            return ed25519.Ed25519PublicKey.from_public_bytes(der[len(_SPKI_ED25519):]), der
    except ValueError:
        return None             # not a point on the curve: the general loader says why
    return None


def load_trust_anchor(path: Path) -> TrustAnchor:
    """Load a public key (or take the public half of a private key) to trust."""
    data = _read(path)
    plain = _plain_public_key(data)
    if plain is not None:
        return TrustAnchor(key=plain[0], kid=sha256(plain[1]).digest()[:8], name=str(path))
    from cryptography.hazmat.primitives import serialization
    key: Any
    try:
        if b"PRIVATE KEY-----" in data:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        elif b"-----BEGIN" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a public key in PEM or DER ({exc})") from None
    _check_supported(key, path)
    return TrustAnchor(key=key, kid=key_id(key), name=str(path))


def load_mac_key(path: Path) -> MacKey:
    secret = _read(path)
    if len(secret) < 16:
        raise KeyFileError(f"{path}: an HMAC key needs at least 16 bytes, the file has {len(secret)}")
    return MacKey(secret=secret, name=str(path))


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "es256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise KeyFileError(f"unknown key algorithm {alg!r} (es256 or ed25519)")


def private_key_pem(key: PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(key: PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _structure(context: str, protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps([context, protected, b"", payload])


def sign1(payload: bytes, key: PrivateKey, kid: bytes | None = None) -> cbor2.CBORTag:
    """A COSE_Sign1 over the detached ``payload`` (ESP256 for P-256, Ed25519 for Ed25519)."""
    alg = ALG_ESP256 if isinstance(key, ec.EllipticCurvePrivateKey) else ALG_ED25519
    protected = cbor2.dumps({COSE_HEADER_ALG: alg})
    to_sign = _structure("Signature1", protected, payload)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(to_sign)
    kid = key_id(key.public_key()) if kid is None else kid
    return cbor2.CBORTag(TAG_COSE_SIGN1, [protected, {COSE_HEADER_KID: kid}, None, signature])


def verify_block(block: bytes, payload: bytes, anchors: list[TrustAnchor],
                 mac_keys: list[MacKey]) -> BlockResult:
    """Check one authentication block (the bstr contents) over ``payload``."""
    try:
        item = cbor.decode(block, what="authentication block")
    except CborError as exc:  # a malformed block is a failed block, not a crash
        return BlockResult("?", "?", None, False, exc.code, str(exc))
    if not isinstance(item, cbor.Tag):
        return BlockResult("?", "?", None, False, "cose-format",
                           "authentication block is not a tagged COSE structure")
    if item.number in (TAG_COSE_SIGN, TAG_COSE_MAC):
        kind = "COSE_Sign" if item.number == TAG_COSE_SIGN else "COSE_Mac"
        return BlockResult(kind, "?", None, False, "cose-unsupported",
                           f"{kind} (tag {item.number}) blocks are not supported; use COSE_Sign1 or COSE_Mac0")
    if item.number not in (TAG_COSE_SIGN1, TAG_COSE_MAC0):
        return BlockResult("?", "?", None, False, "cose-format",
                           f"authentication block has tag {item.number}, not a COSE tag")
    kind = "COSE_Sign1" if item.number == TAG_COSE_SIGN1 else "COSE_Mac0"
    parsed = _parse_cose(item.value, kind)
    if isinstance(parsed, BlockResult):
        return parsed
    protected, alg, kid, tag_or_sig = parsed
    if kind == "COSE_Mac0":
        return _verify_mac0(protected, alg, kid, tag_or_sig, payload, mac_keys)
    return _verify_sign1(protected, alg, kid, tag_or_sig, payload, anchors)


def _parse_cose(value: Any, kind: str) -> tuple[bytes, int, bytes | None, bytes] | BlockResult:
    def bad(code: str, detail: str) -> BlockResult:
        return BlockResult(kind, "?", None, False, code, f"{kind}: {detail}")

    if not isinstance(value, list) or len(value) != 4:
        return bad("cose-format", "must be an array of 4 items")
    protected, unprotected, payload, signature = value
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict):
        return bad("cose-format", "protected header must be a bstr and unprotected a map")
    if payload is not None:
        return bad("cose-attached-payload", "payload must be nil (detached); attached payloads are refused")
    if not isinstance(signature, bytes):
        return bad("cose-format", "signature/tag must be a bstr")
    try:
        headers = cbor.decode(protected, what=f"{kind} protected header") if protected else {}
    except CborError as exc:
        return bad(exc.code, str(exc))
    if not isinstance(headers, dict):
        return bad("cose-format", "protected header is not a map")
    if set(headers) & set(unprotected):
        return bad("cose-format", "a header parameter appears both protected and unprotected")
    alg = headers.get(COSE_HEADER_ALG)
    if not isinstance(alg, int) or isinstance(alg, bool):
        return bad("cose-format", "protected header has no integer 'alg'")
    kid = unprotected.get(COSE_HEADER_KID, headers.get(COSE_HEADER_KID))
    if kid is not None and not isinstance(kid, bytes):
        return bad("cose-format", "kid must be a bstr")
    return protected, alg, kid, signature


def _verify_sign1(protected: bytes, alg: int, kid: bytes | None, signature: bytes, payload: bytes,
                  anchors: list[TrustAnchor]) -> BlockResult:
    name = SIGN_ALGORITHMS.get(alg)
    if name is None:
        text = MAC_ALGORITHMS.get(alg, str(alg))
        return BlockResult("COSE_Sign1", str(alg), kid, False, "algorithm-unsupported",
                           f"COSE_Sign1 algorithm {text} is not accepted (ES256, ESP256, EdDSA, Ed25519)")
    wanted = ec.EllipticCurvePublicKey if alg in _P256_ALGS else ed25519.Ed25519PublicKey
    candidates = [a for a in anchors if isinstance(a.key, wanted)]
    if not candidates:
        kinds = ", ".join(sorted({a.kind for a in anchors})) or "none"
        return BlockResult("COSE_Sign1", name, kid, False, "key-mismatch",
                           f"{name} signature but no trusted key of that type (trusted: {kinds})")
    to_verify = _structure("Signature1", protected, payload)
    for anchor in candidates:
        if _signature_ok(anchor.key, alg, signature, to_verify):
            return BlockResult("COSE_Sign1", name, kid, True, signer=anchor.name)
    if kid is not None and all(a.kid != kid for a in anchors):
        return BlockResult("COSE_Sign1", name, kid, False, "untrusted-signer",
                           f"{name} signature by key id {kid.hex()}, which is not a trusted key")
    return BlockResult("COSE_Sign1", name, kid, False, "signature-invalid",
                       f"{name} signature does not verify with any of {len(candidates)} trusted key(s)")


def _signature_ok(key: PublicKey, alg: int, signature: bytes, data: bytes) -> bool:
    try:
        if alg in _P256_ALGS:
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            key.verify(der, data, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
        else:
            key.verify(signature, data)  # type: ignore[call-arg]
        return True
    except InvalidSignature:
        return False


def _verify_mac0(protected: bytes, alg: int, kid: bytes | None, tag: bytes, payload: bytes,
                 mac_keys: list[MacKey]) -> BlockResult:
    if alg != ALG_HMAC256:
        return BlockResult("COSE_Mac0", str(alg), kid, False, "algorithm-unsupported",
                           f"COSE_Mac0 algorithm {alg} is not accepted (HMAC 256/256 = 5)")
    if not mac_keys:
        return BlockResult("COSE_Mac0", "HMAC-256", kid, False, "key-mismatch",
                           "COSE_Mac0 block but no symmetric key is configured")
    data = _structure("MAC0", protected, payload)
    for key in mac_keys:
        import hashlib         # MAC keys are rare: hashlib and hmac (the system's libcrypto) only for them
        import hmac
        expected = hmac.new(key.secret, data, hashlib.sha256).digest()
        if hmac.compare_digest(expected, tag):
            return BlockResult("COSE_Mac0", "HMAC-256", kid, True, signer=key.name)
    return BlockResult("COSE_Mac0", "HMAC-256", kid, False, "signature-invalid",
                       f"HMAC tag does not verify with any of {len(mac_keys)} configured key(s)")
