"""Build SUIT manifests from a SPEC.toml (the device maker's side).

A spec names the anti-rollback sequence number, the vendor and class, and one
``[[component]]`` per image. Digests and sizes are computed from the files.
The manifest checks vendor and class in its shared sequence, fetches every
image in its install sequence and checks each with image-match in both the
install and the validate sequences. See docs/manifest.md for the format.
"""

from __future__ import annotations

import hashlib
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from agent.errors import ConfigError, InputFileError
from agent.manifest.cbor import DEFAULT_MAX_SIZE
from agent.manifest.constants import (ALG_SHA256, C_COMPONENTS, C_SHARED_SEQUENCE,
                                      COND_CLASS_ID, COND_COMPONENT_SLOT, COND_IMAGE_MATCH,
                                      COND_VENDOR_ID, DIR_FETCH, DIR_OVERRIDE_PARAMETERS,
                                      DIR_SET_COMPONENT_INDEX, M_COMMON, M_INSTALL, M_SEQUENCE,
                                      M_TEXT, M_VALIDATE, M_VERSION, P_CLASS_ID, P_COMPONENT_SLOT,
                                      P_IMAGE_DIGEST, P_IMAGE_SIZE, P_URI, P_VENDOR_ID,
                                      TEXT_MANIFEST_DESCRIPTION)
from agent.manifest.envelope import encode_envelope
from agent.manifest.ids import class_from_name, parse_uuid, vendor_from_domain

REPORT_ALL = 15       # reporting policy: record and sysinfo on success and failure
REPORT_FAILURE = 2
_TOP_KEYS = {"sequence", "vendor_id", "vendor_domain", "class_id", "class_name", "description",
             "component"}
_COMPONENT_KEYS = {"id", "file", "uri", "slot", "version", "text", "delta", "delta_frame_size"}
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ComponentSpec:
    id: tuple[str, ...]
    file: Path
    uri: str
    slot: int | None = None
    version: str | None = None
    text: str | None = None
    delta_frame_size: int | None = None     # set: the image is also offered as delta frames


@dataclass(frozen=True)
class ManifestSpec:
    sequence: int
    vendor_id: uuid.UUID
    class_id: uuid.UUID
    components: tuple[ComponentSpec, ...]
    description: str | None = None


def load_spec(path: Path) -> ManifestSpec:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFileError(f"{path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_spec(data, Path(path).parent, str(path))


def parse_spec(data: dict[str, Any], base: Path, where: str = "spec") -> ManifestSpec:
    _no_unknown(data, _TOP_KEYS, where)
    sequence = _typed(data, "sequence", int, where, required=True)
    if sequence < 0:
        raise ConfigError(f"{where}: sequence must not be negative")
    vendor = _identity(data, "vendor_id", "vendor_domain", where, None)
    klass = _identity(data, "class_id", "class_name", where, vendor)
    raw_components = data.get("component")
    if not isinstance(raw_components, list) or not raw_components:
        raise ConfigError(f"{where}: at least one [[component]] table is required")
    components = []
    for number, raw in enumerate(raw_components):
        label = f"{where}: component[{number}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{label} must be a table")
        _no_unknown(raw, _COMPONENT_KEYS, label)
        ident = _typed(raw, "id", list, label, required=True)
        if not ident or not all(isinstance(p, str) and p for p in ident):
            raise ConfigError(f"{label}.id must be a non-empty list of non-empty strings")
        uri = _typed(raw, "uri", str, label, required=True)
        if not (uri.startswith(("http://", "https://")) or (uri.startswith("#") and len(uri) > 1)):
            raise ConfigError(f"{label}.uri {uri!r} must be http(s)://... or #name for a bundled payload")
        slot = _typed(raw, "slot", int, label)
        if slot is not None and slot < 0:
            raise ConfigError(f"{label}.slot must not be negative")
        components.append(ComponentSpec(id=tuple(ident), file=base / _typed(raw, "file", str, label, required=True),
                                        uri=uri, slot=slot, version=_typed(raw, "version", str, label),
                                        text=_typed(raw, "text", str, label),
                                        delta_frame_size=_delta(raw, label)))
    ids = [c.id for c in components]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: two components have the same id")
    return ManifestSpec(sequence=sequence, vendor_id=vendor, class_id=klass, components=tuple(components),
                        description=_typed(data, "description", str, where))


def _delta(raw: dict[str, Any], label: str) -> int | None:
    from agent.delta.frames import DEFAULT_FRAME_SIZE, check_frame_size
    from agent.errors import DeltaError

    frame_size = _typed(raw, "delta_frame_size", int, label)
    if not _typed(raw, "delta", bool, label):
        if frame_size is not None:
            raise ConfigError(f"{label}.delta_frame_size is only meaningful with delta = true")
        return None
    try:
        return check_frame_size(DEFAULT_FRAME_SIZE if frame_size is None else frame_size)
    except DeltaError as err:
        raise ConfigError(f"{label}.delta_frame_size: {err.detail}") from None


def _no_unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _typed(table: dict[str, Any], key: str, kind: type, where: str, required: bool = False) -> Any:
    if key not in table:
        if required:
            raise ConfigError(f"{where}: {key!r} is required")
        return None
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key!r} must be of type {kind.__name__}, got {type(value).__name__}")
    return value


def _identity(data: dict[str, Any], id_key: str, name_key: str, where: str,
              vendor: uuid.UUID | None) -> uuid.UUID:
    if (id_key in data) == (name_key in data):
        raise ConfigError(f"{where}: give exactly one of {id_key!r} and {name_key!r}")
    if id_key in data:
        return parse_uuid(_typed(data, id_key, str, where), f"{where}: {id_key}")
    name = _typed(data, name_key, str, where)
    if not name:
        raise ConfigError(f"{where}: {name_key!r} must not be empty")
    return vendor_from_domain(name) if vendor is None else class_from_name(vendor, name)


def file_digest(path: Path) -> tuple[bytes, int]:
    """SHA-256 and size of a file, read in chunks (images can be GiB)."""
    sha = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                sha.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InputFileError(f"{path}: {exc.strerror}") from None
    return sha.digest(), size


def build_manifest(spec: ManifestSpec) -> bytes:
    """The encoded SUIT_Manifest (contents of the envelope's manifest bstr)."""
    components = [[p.encode("utf-8") for p in c.id] for c in spec.components]
    shared: list[Any] = []
    install: list[Any] = []
    validate: list[Any] = []
    for index, component in enumerate(spec.components):
        digest, size = file_digest(component.file)
        params = {P_VENDOR_ID: spec.vendor_id.bytes, P_CLASS_ID: spec.class_id.bytes,
                  P_IMAGE_DIGEST: cbor2.dumps([ALG_SHA256, digest]), P_IMAGE_SIZE: size}
        checks = [COND_VENDOR_ID, REPORT_ALL, COND_CLASS_ID, REPORT_ALL]
        if component.slot is not None:
            params[P_COMPONENT_SLOT] = component.slot
            checks += [COND_COMPONENT_SLOT, REPORT_ALL]
        shared += [DIR_SET_COMPONENT_INDEX, index, DIR_OVERRIDE_PARAMETERS, params, *checks]
        install += [DIR_SET_COMPONENT_INDEX, index, DIR_OVERRIDE_PARAMETERS, _fetch_parameters(component),
                    DIR_FETCH, REPORT_FAILURE, COND_IMAGE_MATCH, REPORT_ALL]
        validate += [DIR_SET_COMPONENT_INDEX, index, COND_IMAGE_MATCH, REPORT_ALL]
    common = {C_COMPONENTS: components, C_SHARED_SEQUENCE: cbor2.dumps(shared)}
    manifest: dict[int, Any] = {M_VERSION: 1, M_SEQUENCE: spec.sequence,
                                M_COMMON: cbor2.dumps(common, canonical=True),
                                M_VALIDATE: cbor2.dumps(validate), M_INSTALL: cbor2.dumps(install)}
    text = _text(spec)
    if text:
        manifest[M_TEXT] = cbor2.dumps(text, canonical=True)
    return cbor2.dumps(manifest, canonical=True)


def _fetch_parameters(component: ComponentSpec) -> dict[int, Any]:
    """The uri; with delta, the frames file and index too (written beside the image now)."""
    if component.delta_frame_size is None:
        return {P_URI: component.uri}
    from agent.delta.build import Artifact, write_delta
    from agent.delta.param import P_DELTA, DeltaRef, delta_uris

    files = write_delta(component.file, component.delta_frame_size)
    frames_uri, index_uri = delta_uris(component.uri)
    ref = DeltaRef(Artifact(frames_uri, files.frames_digest, files.frames_size),
                   Artifact(index_uri, files.index_digest, files.index_size))
    return {P_URI: component.uri, P_DELTA: ref.encode()}


def _text(spec: ManifestSpec) -> dict[str, Any] | None:
    lmap: dict[Any, Any] = {}
    if spec.description:
        lmap[TEXT_MANIFEST_DESCRIPTION] = spec.description
    for component in spec.components:
        entry = {}
        if component.text:
            entry[5] = component.text      # component-description
        if component.version:
            entry[6] = component.version   # component-version
        if entry:
            lmap[tuple(p.encode("utf-8") for p in component.id)] = entry
    return {"en": lmap} if lmap else None


def unsigned_envelope(manifest: bytes) -> bytes:
    """An envelope whose authentication wrapper holds only the manifest digest."""
    digest = hashlib.sha256(cbor2.dumps(manifest)).digest()
    wrapper = cbor2.dumps([cbor2.dumps([ALG_SHA256, digest])])
    envelope = encode_envelope(wrapper, manifest)
    if len(envelope) > DEFAULT_MAX_SIZE:
        raise ConfigError(f"the envelope is {len(envelope)} bytes, more than devices accept "
                          f"({DEFAULT_MAX_SIZE}); use fewer components")
    return envelope
