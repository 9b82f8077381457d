"""What a DDI deployment asks the device to fetch (pure).

A deployment carries either one bundle artifact (a fwagent bundle: the signed
manifest and its payloads in one file) or a signed SUIT manifest artifact
(``*.suit``) with its payloads as further artifacts, which the manifest names
``#<filename>``. Either way the signed manifest stays the root of trust: the
DDI hashes are checked as well (sha256, else sha1, else md5), never instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.ddi.codec import Artifact, Deployment
from agent.errors import FwagentError
from agent.net.policy import LinkError, LinkPolicy

MANIFEST_SUFFIXES = (".suit",)
HASHES = ("sha256", "sha1", "md5")        # strongest first


class PlanError(FwagentError, ValueError):
    """The deployment cannot be installed as given; the action is closed as failed."""

    code = "ddi-artifacts"


@dataclass(frozen=True)
class ActionPlan:
    kind: str                              # "bundle" | "manifest"
    main: Artifact                         # the bundle, or the manifest
    payloads: tuple[Artifact, ...] = ()    # a manifest's payloads, by filename
    version: str = ""                      # the chunks' versions, for the reports

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ActionPlan":
        return cls(kind=data["kind"], main=Artifact(**data["main"]),
                   payloads=tuple(Artifact(**a) for a in data["payloads"]), version=data["version"])

    def fetch_first(self, may_install: bool) -> tuple[Artifact, ...]:
        """Fetched before the install: a manifest (its payloads stream into their slots at the
        install); when the install must wait (a closed maintenance window), everything, bundle or
        manifest and payloads, so that the wait ends with everything in hand. A bundle that may
        be installed at once is not fetched beforehand: it streams into the slots."""
        if not may_install:
            return (self.main, *self.payloads)
        return () if self.kind == "bundle" else (self.main,)

    def local_names(self) -> dict[str, str]:
        """Artifact name -> the name of its file on the device: chosen by the agent, never the server's."""
        return {a.filename: f"artifact-{i}" for i, a in enumerate((self.main, *self.payloads))}

    def links(self, fetched: dict[str, str]) -> dict[str, str]:
        """``#name`` -> where the install reads each payload: its file when it was fetched
        beforehand (``fetched``: name -> path), else its URL, streamed straight into the slot."""
        return {f"#{a.filename}": Path(fetched[a.filename]).as_uri() if a.filename in fetched else a.url
                for a in self.payloads if a.filename in fetched or a.url}


def download_dir(incoming: Path, action: str) -> Path:
    """Where an action's downloads go: named by the agent (a digest of the id), never by the server."""
    return incoming / ("action-" + hashlib.sha256(action.encode()).hexdigest()[:16])


def plan_action(deployment: Deployment, policy: LinkPolicy) -> ActionPlan:
    """``policy``: where artifacts may be downloaded from (the server, hosts the configuration
    lists; https only from an https server)."""
    artifacts = [a for chunk in deployment.chunks for a in chunk.artifacts]
    version = ", ".join(sorted({c.version for c in deployment.chunks}))
    if any(c.encrypted for c in deployment.chunks):
        raise PlanError("encrypted artifacts are not supported", code="ddi-encrypted")
    for artifact in artifacts:
        if artifact.url is None:
            raise PlanError(f"artifact {artifact.filename} has no download link")
        try:
            policy.admit(artifact.url)
        except LinkError as err:
            raise PlanError(f"artifact {artifact.filename}: {err.detail}", code=err.code) from None
        if not any(name in artifact.hashes for name in HASHES):
            raise PlanError(f"artifact {artifact.filename} has no sha256, sha1 or md5 hash")
    names = [a.filename for a in artifacts]
    if len(set(names)) != len(names):
        raise PlanError("two artifacts share a file name")
    manifests = [a for a in artifacts if a.filename.endswith(MANIFEST_SUFFIXES)]
    if len(manifests) > 1:
        raise PlanError(f"{len(manifests)} manifest artifacts (*.suit); one action installs one manifest")
    if manifests:
        return ActionPlan("manifest", manifests[0], tuple(a for a in artifacts if a is not manifests[0]),
                          version)
    if len(artifacts) != 1:
        raise PlanError(f"{len(artifacts)} artifacts and no manifest (*.suit): a deployment carries one "
                        "bundle, or a signed manifest and its payloads")
    return ActionPlan("bundle", artifacts[0], (), version)


def check_payloads(plan: ActionPlan, references: list[tuple[str, bytes | None]]) -> None:
    """The manifest's ``#name`` payloads are the deployment's artifacts, with the same SHA-256
    when the server gives one. ``references``: (uri, sha256 from the signed manifest).
    A bundle carries its payloads itself: the bundle reader checks them."""
    if plan.kind == "bundle":
        return
    by_uri = {f"#{a.filename}": a for a in plan.payloads}
    for uri, digest in references:
        if not uri.startswith("#"):
            continue
        artifact = by_uri.get(uri)
        if artifact is None:
            raise PlanError(f"the manifest fetches {uri}, which the deployment does not carry")
        expected = artifact.hashes.get("sha256")
        if expected and digest is not None and bytes.fromhex(expected) != digest:
            raise PlanError(f"artifact {artifact.filename}: the server's sha256 is not the signed manifest's",
                            code="ddi-hash-mismatch")


def strongest_hash(artifact: Artifact) -> tuple[str, str]:
    """(algorithm, hex digest) of the best hash the server gives."""
    name = next(n for n in HASHES if n in artifact.hashes)
    return name, artifact.hashes[name]

