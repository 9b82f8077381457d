"""Everything a device decides about a manifest before it acts, in one call.

``check`` authenticates the envelope, applies the anti-rollback policy, runs
the shared sequence against the device identity and then dry-runs the update
and invocation procedures, so that the caller learns both whether the manifest
is acceptable and what it would make the device do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.errors import ProcessingError
from agent.manifest.cbor import Limits
from agent.manifest.dryrun import DryRunExecutor
from agent.manifest.processor import DeviceIdentity, Processor
from agent.manifest.targets import component_label
from agent.manifest.verify import (RollbackState, Trust, VerifiedManifest, inspect_envelope,
                                   verify_envelope)


@dataclass(frozen=True)
class PayloadRef:
    """A payload the update procedure fetches: where from, and what it must be."""

    component: tuple[bytes, ...]
    uri: str
    digest: bytes | None
    size: int | None

    @property
    def integrated_name(self) -> str | None:
        """For ``#name`` URIs, the name of the payload carried with the manifest."""
        return self.uri[1:] if self.uri.startswith("#") else None


@dataclass
class CheckResult:
    manifest: VerifiedManifest
    actions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def payloads(self) -> list[PayloadRef]:
        return _payloads(self.actions, self.manifest)


def authorize(data: bytes, trust: Trust, *, rollback: RollbackState | None = None,
              device: DeviceIdentity = DeviceIdentity(), limits: Limits = Limits()) -> VerifiedManifest:
    """Authentic, not a rollback, and meant for this device (its shared sequence passes)."""
    manifest = verify_envelope(data, trust, rollback, limits)
    Processor(manifest, device, DryRunExecutor()).check_shared()
    return manifest


def check(data: bytes, trust: Trust, *, rollback: RollbackState | None = None,
          device: DeviceIdentity = DeviceIdentity(), slot: int | None = None,
          limits: Limits = Limits()) -> CheckResult:
    """``authorize``, then what the update would do: every sequence must be executable."""
    return plan(authorize(data, trust, rollback=rollback, device=device, limits=limits), device, slot)


def plan(manifest: VerifiedManifest, device: DeviceIdentity = DeviceIdentity(),
         slot: int | None = None) -> CheckResult:
    """Dry-run the update and invocation procedures of a manifest."""
    if manifest.ignored_common:
        keys = ", ".join(map(str, manifest.ignored_common))
        raise ProcessingError(f"common holds key(s) {keys} of SUIT extensions fwagent does not "
                              "implement (1 = dependencies)", code="unsupported-extension")
    executor = DryRunExecutor(slot=slot, integrated=frozenset(manifest.envelope.integrated))
    if manifest.ignored_members:
        executor.note("manifest members of other drafts are ignored: "
                      + ", ".join(map(str, manifest.ignored_members)))
    Processor(manifest, device, executor, allow_severed=True).check_shared()
    Processor(manifest, device, executor, allow_severed=True).run("update")
    if {"load", "invoke"} & set(manifest.sequences):  # boot-time procedure, when there is one
        Processor(manifest, device, executor, allow_severed=True).run("invoke")
    return CheckResult(manifest, executor.actions, executor.notes)


def payload_references(data: bytes) -> list[PayloadRef]:
    """The payloads an (unverified) envelope fetches, in order: for tools such as bundle create."""
    return plan(inspect_envelope(data)).payloads


def _payloads(actions: list[dict[str, Any]], manifest: VerifiedManifest) -> list[PayloadRef]:
    labels = {component_label(c): c for c in manifest.components}
    refs: dict[PayloadRef, None] = {}   # ordered and de-duplicated in linear time
    for action in actions:
        if action["action"] == "fetch":
            refs[PayloadRef(labels[action["component"]], action["uri"],
                            bytes.fromhex(action["digest"]) if action["digest"] else None, action["size"])] = None
    return list(refs)
