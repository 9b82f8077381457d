"""The manifest parameter that names a component's delta files (pure).

A private SUIT parameter (negative keys are stored and not interpreted by a
device that does not know them), set with the payload's ``uri`` in the install
sequence. Its value is a map: 1 = the frames file, 2 = the index, each
``[uri, SHA-256, size]``. A device that does not do delta ignores it and
fetches the solid payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.delta.build import Artifact
from agent.errors import DeltaError

P_DELTA = -70017
_FRAMES, _INDEX = 1, 2
MAX_INDEX_SIZE = 64 << 20        # a 384 MiB image's index is about 0.3 MiB


@dataclass(frozen=True)
class DeltaRef:
    frames: Artifact
    index: Artifact

    def encode(self) -> dict[int, Any]:
        return {_FRAMES: _encode(self.frames), _INDEX: _encode(self.index)}

    def as_dict(self) -> dict[str, Any]:
        return {name: {"uri": a.uri, "digest": a.digest.hex(), "size": a.size}
                for name, a in (("frames", self.frames), ("index", self.index))}


def delta_uris(uri: str) -> tuple[str, str]:
    """Where a payload's frames and index are, beside it: ``URI.frames`` and ``URI.index``."""
    return f"{uri}.frames", f"{uri}.index"


def decode(value: Any) -> DeltaRef:
    if not isinstance(value, dict) or set(value) != {_FRAMES, _INDEX}:
        raise DeltaError("the delta parameter is not a map of the frames file and the index", code="delta-param")
    ref = DeltaRef(_decode(value[_FRAMES], "frames file"), _decode(value[_INDEX], "index"))
    if ref.index.size > MAX_INDEX_SIZE:
        raise DeltaError(f"delta index of {ref.index.size} bytes: more than {MAX_INDEX_SIZE}", code="delta-param")
    return ref


def _encode(artifact: Artifact) -> list[Any]:
    return [artifact.uri, artifact.digest, artifact.size]


def _decode(value: Any, what: str) -> Artifact:
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
            or not isinstance(value[1], bytes) or len(value[1]) != 32
            or not isinstance(value[2], int) or isinstance(value[2], bool) or value[2] <= 0):
        raise DeltaError(f"the delta {what} is not [uri, SHA-256, size]", code="delta-param")
    return Artifact(value[0], value[1], value[2])


def delta_references(envelope: bytes) -> dict[tuple[bytes, ...], DeltaRef]:
    """The delta files an (unverified) envelope names, by component: for bundle show."""
    from agent.manifest.dryrun import DryRunExecutor
    from agent.manifest.processor import DeviceIdentity, Processor
    from agent.manifest.verify import inspect_envelope

    processor = Processor(inspect_envelope(envelope), DeviceIdentity(), DryRunExecutor(), allow_severed=True)
    processor.check_shared()
    processor.run("update")
    return {component.id: decode(params[P_DELTA])
            for component, params in zip(processor.components, processor.parameters) if P_DELTA in params}
