"""Authenticate a SUIT envelope and read its manifest (pure, no I/O).

Order matters and follows §6 of the draft: structure of the envelope, digest
of the manifest bstr, at least one authentication block that verifies with a
trusted key, and only then the manifest itself, its version, its sequence
number against the device's anti-rollback counter, and the digests of the
severable elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.errors import AuthenticationError, ManifestFormatError, PolicyError
from agent.manifest import cbor
from agent.manifest.cbor import Limits
from agent.manifest.constants import (ALG_SHA256, C_COMPONENTS, C_SHARED_SEQUENCE,
                                      M_COMMON, M_REFERENCE_URI, M_SEQUENCE, M_TEXT, M_VERSION,
                                      MEMBER_NAMES, SEQUENCE_MEMBERS, SEVERABLE_MEMBERS)
from agent.manifest.cose import BlockResult, MacKey, TrustAnchor, verify_block
from agent.manifest.envelope import Envelope, parse_envelope
from agent.sha256 import sha256


@dataclass(frozen=True)
class Trust:
    """What the device trusts: any one valid block by one of these keys is enough."""

    anchors: tuple[TrustAnchor, ...] = ()
    mac_keys: tuple[MacKey, ...] = ()


@dataclass(frozen=True)
class RollbackState:
    """The device's anti-rollback counter: the last installed manifest."""

    sequence: int
    manifest_digest: bytes | None = None  # SHA-256 of that manifest's encoded bstr


@dataclass(frozen=True)
class VerifiedManifest:
    """An authentic manifest; its fields are safe to act on."""

    envelope: Envelope
    digest: bytes                       # SHA-256 over the encoded manifest bstr
    sequence: int
    components: list[tuple[bytes, ...]]
    shared: bytes | None                # encoded shared sequence
    sequences: dict[str, bytes]         # name -> encoded command sequence (present ones)
    severed: list[str]                  # severable members whose content is absent
    text: dict | None
    reference_uri: str | None
    authenticated_by: list[BlockResult]
    ignored_members: list[Any] = field(default_factory=list)   # manifest keys of other drafts
    ignored_common: list[Any] = field(default_factory=list)    # SUIT_Common keys of other drafts


def verify_envelope(data: bytes, trust: Trust, rollback: RollbackState | None = None,
                    limits: Limits = Limits()) -> VerifiedManifest:
    """Authenticate ``data`` and read its manifest; raise a ManifestError on any failure."""
    envelope = parse_envelope(data, limits)
    digest, blocks = authenticate(envelope, trust)
    return _read_manifest(envelope, digest, blocks, rollback, limits)


def inspect_envelope(data: bytes, limits: Limits = Limits()) -> VerifiedManifest:
    """Read a manifest whose signature is NOT checked, for tools (show, bundle create).

    The manifest digest is still checked. Nothing returned here may be acted on
    by a device: ``authenticated_by`` is empty.
    """
    envelope = parse_envelope(data, limits)
    wrapper = cbor.decode(envelope.authentication, what="authentication wrapper")
    if not isinstance(wrapper, list) or not wrapper or not isinstance(wrapper[0], bytes):
        raise ManifestFormatError("authentication wrapper must be an array of bstr", code="envelope-format")
    _, expected = _digest(cbor.decode(wrapper[0], what="manifest digest"), "manifest digest")
    actual = sha256(envelope.manifest_encoded).digest()
    if actual != expected:
        raise AuthenticationError("manifest does not match the digest in its authentication wrapper",
                                  code="digest-mismatch")
    return _read_manifest(envelope, actual, [], None, limits)


def _read_manifest(envelope: Envelope, digest: bytes, blocks: list[BlockResult],
                   rollback: RollbackState | None, limits: Limits) -> VerifiedManifest:
    manifest = cbor.decode(envelope.manifest, what="manifest", limits=limits)
    if not isinstance(manifest, dict):
        raise ManifestFormatError("manifest is not a CBOR map")
    version = manifest.get(M_VERSION)
    if version != 1 or isinstance(version, bool):  # True == 1 in Python, not in CBOR
        raise ManifestFormatError(f"manifest-version {version!r} is not supported (expected 1)",
                                  code="manifest-version")
    sequence = manifest.get(M_SEQUENCE)
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        raise ManifestFormatError("sequence-number (key 2) must be an unsigned integer")
    check_rollback(sequence, digest, rollback)
    components, shared, ignored_common = _common(manifest.get(M_COMMON))
    sequences, severed, text = _members(manifest, envelope, limits)
    reference = manifest.get(M_REFERENCE_URI)
    if reference is not None and not isinstance(reference, str):
        raise ManifestFormatError("reference-uri (key 4) must be a text string")
    ignored = [k for k in manifest if k not in MEMBER_NAMES]
    return VerifiedManifest(envelope=envelope, digest=digest, sequence=sequence,
                            components=components, shared=shared, sequences=sequences,
                            severed=severed, text=text, reference_uri=reference,
                            authenticated_by=[b for b in blocks if b.ok], ignored_members=ignored,
                            ignored_common=ignored_common)


def authenticate(envelope: Envelope, trust: Trust) -> tuple[bytes, list[BlockResult]]:
    """Check the manifest digest and the authentication blocks; return the digest."""
    wrapper = cbor.decode(envelope.authentication, what="authentication wrapper")
    if not isinstance(wrapper, list) or not wrapper or not all(isinstance(b, bytes) for b in wrapper):
        raise ManifestFormatError("authentication wrapper must be an array of bstr", code="envelope-format")
    digest_item = cbor.decode(wrapper[0], what="manifest digest")
    algorithm, expected = _digest(digest_item, "manifest digest")
    actual = sha256(envelope.manifest_encoded).digest()
    if actual != expected:
        raise AuthenticationError(f"manifest SHA-256 is {actual.hex()[:16]}..., the authentication "
                                  f"wrapper says {expected.hex()[:16]}...", code="digest-mismatch")
    if len(wrapper) == 1:
        raise AuthenticationError("the authentication wrapper holds a digest but no signature or MAC",
                                  code="no-authentication")
    results = [verify_block(block, wrapper[0], list(trust.anchors), list(trust.mac_keys))
               for block in wrapper[1:]]
    if not any(r.ok for r in results):
        first = results[0]
        detail = "; ".join(r.detail for r in results)
        raise AuthenticationError(detail, code=first.code or "signature-invalid")
    return actual, results


def check_rollback(sequence: int, digest: bytes, state: RollbackState | None) -> None:
    """Lower is refused; equal only for the very manifest that was installed."""
    if state is None:
        return
    if sequence < state.sequence:
        raise PolicyError(f"sequence number {sequence} is lower than the installed {state.sequence}",
                          code="rollback")
    if sequence == state.sequence and digest != state.manifest_digest:
        raise PolicyError(f"sequence number {sequence} equals the installed one but the manifest "
                          "differs", code="rollback")


def _digest(item: Any, what: str) -> tuple[int, bytes]:
    if (not isinstance(item, list) or len(item) < 2 or not isinstance(item[0], int)
            or not isinstance(item[1], bytes)):
        raise ManifestFormatError(f"{what} is not a SUIT_Digest [algorithm, bytes]")
    if item[0] != ALG_SHA256:
        raise ManifestFormatError(f"{what} uses digest algorithm {item[0]}; only SHA-256 (-16) is "
                                  "supported", code="digest-unsupported")
    if len(item[1]) != 32:
        raise ManifestFormatError(f"{what} has {len(item[1])} digest bytes, SHA-256 needs 32")
    return item[0], item[1]


def _common(raw: Any) -> tuple[list[tuple[bytes, ...]], bytes | None, list[Any]]:
    if not isinstance(raw, bytes):
        raise ManifestFormatError("common (key 3) must be a bstr")
    common = cbor.decode(raw, what="common")
    if not isinstance(common, dict):
        raise ManifestFormatError("common is not a map")
    components = common.get(C_COMPONENTS)
    if (not isinstance(components, list) or not components
            or not all(isinstance(c, list) and all(isinstance(p, bytes) for p in c) for c in components)):
        raise ManifestFormatError("components (common key 2) must be a non-empty array of arrays of bstr")
    shared = common.get(C_SHARED_SEQUENCE)
    if shared is not None and not isinstance(shared, bytes):
        raise ManifestFormatError("shared-sequence (common key 4) must be a bstr")
    ignored = [k for k in common if k not in (C_COMPONENTS, C_SHARED_SEQUENCE)]
    return [tuple(c) for c in components], shared, ignored


def _members(manifest: dict, envelope: Envelope,
             limits: Limits) -> tuple[dict[str, bytes], list[str], dict | None]:
    """Command sequences and text, with severable members checked against their digests."""
    sequences: dict[str, bytes] = {}
    severed: list[str] = []
    text = None
    for key, element in envelope.severed.items():
        name = SEVERABLE_MEMBERS.get(key, f"member {key}")
        if key not in manifest or not isinstance(manifest[key], list):
            raise ManifestFormatError(f"envelope carries {name} ({key}) but the manifest holds no "
                                      "digest for it", code="severable-unexpected")
        _, expected = _digest(manifest[key], f"{name} digest")
        encoded = cbor.encoded_bstr_header(len(element)) + element
        if sha256(encoded).digest() != expected:
            raise AuthenticationError(f"severable element {name} ({key}) does not match its digest "
                                      "in the manifest", code="severable-digest-mismatch")
    for key, name in MEMBER_NAMES.items():
        if key not in SEQUENCE_MEMBERS and key != M_TEXT:
            continue
        value = manifest.get(key)
        if value is None:
            continue
        if isinstance(value, list) and key in SEVERABLE_MEMBERS:
            if key not in envelope.severed:
                severed.append(name)
                continue
            value = envelope.severed[key]  # its digest was checked above
        if not isinstance(value, bytes):
            raise ManifestFormatError(f"{name} ({key}) must be a bstr")
        if key == M_TEXT:
            decoded = cbor.decode(value, what="text", limits=limits)
            if not isinstance(decoded, dict):
                raise ManifestFormatError("text is not a map")
            text = decoded
        else:
            sequences[name] = value
    return sequences, severed, text
