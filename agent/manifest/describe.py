"""Readable and JSON views of manifests and of what an update would do."""

from __future__ import annotations

from typing import Any

from agent.manifest import cbor
from agent.manifest.check import CheckResult
from agent.manifest.constants import (SIGN_ALGORITHMS, MAC_ALGORITHMS, TAG_COSE_MAC0,
                                      TAG_COSE_SIGN1, TEXT_COMPONENT_KEYS)
from agent.manifest.targets import component_label, target_of
from agent.manifest.verify import VerifiedManifest


def manifest_view(manifest: VerifiedManifest) -> dict[str, Any]:
    """A JSON-able summary of a manifest (verified or only inspected)."""
    text = _text_view(manifest.text)
    return {
        "sequence": manifest.sequence,
        "digest": manifest.digest.hex(),
        "tagged": manifest.envelope.tagged,
        "components": [{"id": component_label(c), "target": target_of(c).describe(),
                        **text.get("components", {}).get(component_label(c), {})}
                       for c in manifest.components],
        "sequences": sorted(manifest.sequences),
        "severed": manifest.severed,
        "description": text.get("description"),
        "authentication": [_block_view(b) for b in _blocks(manifest)],
        "signers": [b.signer for b in manifest.authenticated_by],
        "integrated_payloads": {k: len(v) for k, v in manifest.envelope.integrated.items()},
        "ignored_members": manifest.ignored_members,
    }


def manifest_version(manifest: VerifiedManifest) -> str | None:
    """The update's version: the first component version the manifest's text gives. The device
    reports it (``sw_version``) once the update is installed; a bundle is labelled with it."""
    for component in manifest_view(manifest)["components"]:
        if component.get("component-version"):
            return component["component-version"]
    return None


def unversioned_slot_components(manifest: VerifiedManifest) -> list[str]:
    """The components written to a gateway slot whose text gives no version."""
    texts = _text_view(manifest.text).get("components", {})
    return [component_label(c) for c in manifest.components
            if target_of(c).kind == "slot" and not texts.get(component_label(c), {}).get("component-version")]


def check_view(result: CheckResult) -> dict[str, Any]:
    return {"accepted": True, **manifest_view(result.manifest), "actions": result.actions,
            "notes": result.notes}


def render_manifest(view: dict[str, Any]) -> list[str]:
    lines = [f"sequence number: {view['sequence']}",
             f"manifest digest: sha256:{view['digest']}"]
    if view.get("description"):
        lines.append(f"description:     {view['description']}")
    for block in view["authentication"]:
        kid = f", kid {block['kid']}" if block.get("kid") else ""
        lines.append(f"authentication:  {block['kind']} {block['algorithm']}{kid}")
    if not view["authentication"]:
        lines.append("authentication:  none (digest only: no device accepts this)")
    for signer in view.get("signers", []):
        lines.append(f"verified with:   {signer}")
    for component in view["components"]:
        extra = "".join(f", {k} {v}" for k, v in component.items() if k not in ("id", "target"))
        lines.append(f"component {component['id']}: {component['target']}{extra}")
    lines.append("sequences:       " + (", ".join(view["sequences"]) or "none"))
    for name in view["severed"]:
        lines.append(f"severed:         {name} (not carried in this envelope)")
    if view["ignored_members"]:
        lines.append("ignored members: " + ", ".join(map(str, view["ignored_members"])))
    return lines


def render_actions(result: CheckResult) -> list[str]:
    lines = ["the update would:"]
    for number, action in enumerate(result.actions, 1):
        what = action["action"]
        detail = ""
        if what == "fetch":
            size = f", {action['size']} bytes" if action.get("size") is not None else ""
            digest = f", sha256 {action['digest'][:16]}..." if action.get("digest") else ""
            detail = f" {action['uri']}{size}{digest}"
        elif what == "check-image":
            detail = f" sha256 {action['digest'][:16]}..."
        elif what in ("copy", "swap"):
            detail = f" from {action.get('source') or action.get('other')}"
        lines.append(f"  {number}. [{action['sequence']}] {what} {action['component']} -> "
                     f"{action['target']}{detail}")
    if not result.actions:
        lines.append("  nothing")
    lines += [f"note: {n}" for n in result.notes]
    return lines


def _blocks(manifest: VerifiedManifest) -> list[Any]:
    wrapper = cbor.decode(manifest.envelope.authentication, what="authentication wrapper")
    return [cbor.decode(b, what="authentication block") for b in wrapper[1:]]


def _block_view(block: Any) -> dict[str, Any]:
    if not isinstance(block, cbor.Tag) or block.number not in (TAG_COSE_SIGN1, TAG_COSE_MAC0):
        return {"kind": "unknown", "algorithm": "?"}
    kind = "COSE_Sign1" if block.number == TAG_COSE_SIGN1 else "COSE_Mac0"
    alg: Any = "?"
    kid = None
    if isinstance(block.value, list) and len(block.value) == 4:
        protected, unprotected = block.value[0], block.value[1]
        try:
            headers = cbor.decode(protected, what="protected header") if protected else {}
        except ValueError:
            headers = {}
        if isinstance(headers, dict):
            alg = headers.get(1, "?")
        if isinstance(unprotected, dict) and isinstance(unprotected.get(4), bytes):
            kid = unprotected[4].hex()
    name = SIGN_ALGORITHMS.get(alg) or MAC_ALGORITHMS.get(alg) or str(alg)
    return {"kind": kind, "algorithm": name, "kid": kid}


def _text_view(text: dict | None) -> dict[str, Any]:
    """Description and per-component text (English first, else any language)."""
    if not text:
        return {}
    lmap = text.get("en") or text.get("en-US") or next(iter(text.values()), {})
    if not isinstance(lmap, dict):
        return {}
    view: dict[str, Any] = {"components": {}}
    if isinstance(lmap.get(1), str):
        view["description"] = lmap[1]
    for key, value in lmap.items():
        if isinstance(key, tuple) and isinstance(value, dict):
            label = component_label(tuple(p for p in key if isinstance(p, bytes)))
            view["components"][label] = {TEXT_COMPONENT_KEYS.get(k, str(k)): v for k, v in value.items()
                                         if isinstance(v, str)}
    return view
