"""The update bundle: one cpio file a campaign server can carry as a single artifact.

Members, in this order: ``sw-description`` (for servers only), ``manifest.suit``
(the signed SUIT envelope), the payloads the manifest fetches as ``#name`` in
the order it fetches them, then the cpio trailer. See docs/bundle.md.
"""

from __future__ import annotations

from agent.bundle.cpio import MAX_FILESIZE, TRAILER, check_name
from agent.bundle.swdescription import NAME as SW_DESCRIPTION
from agent.errors import BundleError
from agent.manifest.check import PayloadRef

MANIFEST = "manifest.suit"
RESERVED_NAMES = frozenset({SW_DESCRIPTION, MANIFEST, TRAILER})


def carried_payloads(refs: list[PayloadRef]) -> list[PayloadRef]:
    """The payloads a bundle carries for a manifest's fetches: one per ``#name``, in fetch order.

    A carried payload must be bounded by the manifest (image-size) and checkable
    against it (image-digest), since the manifest is all the agent trusts. URIs
    that are not ``#name`` (http, https) are fetched by the device, not carried.
    """
    chosen: dict[str, PayloadRef] = {}
    for ref in refs:
        name = ref.integrated_name
        if name is None:
            continue
        if ref.digest is None or ref.size is None:
            raise BundleError(f"the manifest fetches #{name} without both image-digest and image-size; "
                              "a bundled payload needs both", code="bundle-unbounded-payload")
        if ref.size > MAX_FILESIZE:
            raise BundleError(f"#{name} has {ref.size} bytes, more than a cpio member can hold "
                              f"({MAX_FILESIZE})", code="bundle-too-large")
        check_name(name)
        if name in RESERVED_NAMES:
            raise BundleError(f"the manifest fetches #{name}, a name the bundle format reserves",
                              code="bundle-name")
        first = chosen.setdefault(name, ref)
        if (first.digest, first.size) != (ref.digest, ref.size):
            raise BundleError(f"the manifest fetches #{name} twice with different digests or sizes",
                              code="bundle-payload-conflict")
    return list(chosen.values())
