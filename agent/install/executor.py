"""The SUIT Executor that acts: fetch into a slot, check what was written.

The processor (agent/manifest/processor.py) decides; this executor performs
on the gateway's slots. Each component maps to a target slot of the group
being written (the one not booted). Nothing is switched here: activation is
the ``switch`` step of the update flow, after every image has been checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from agent.errors import ProcessingError
from agent.install.slots import SLOT_INDEX, Slot, SlotWriter, WriteBehind, buffer_size, read_digest
from agent.manifest.targets import target_of

if TYPE_CHECKING:
    from agent.delta.param import DeltaRef
    from agent.manifest.processor import Component, Digest

# (slot label, bytes done, total or None, and by keyword ``full``: a delta's image size, its
# total being the bytes it predicts to fetch)
Progress = Callable[..., None]
# A payload streamed from the network is synced and its position recorded once at least this many
# bytes and this many seconds have passed since the last time: a power cut costs at most the larger
# of 8 MiB and a second's transfer, and a fast link is not slowed down by a sync every 8 MiB.
CHECKPOINT_BYTES = 8 << 20
CHECKPOINT_SECONDS = 1.0


class PayloadSource(Protocol):
    """Where fetched payloads come from: a bundle, or files beside a manifest.

    ``open`` yields the payload's bytes. A source that itself hashes each payload
    (a bundle) returns instead a stream with ``readinto``, ``skip_written`` and
    ``checked_digest``: the SHA-256 it computed once the payload was read to its
    end (None before). The slot writer then leaves the hashing to it instead of
    hashing twice, and writes behind the reading.
    """

    def open(self, uri: str, size: int | None) -> Iterable[bytes | memoryview]: ...

    def finish(self) -> None:
        """Once the install sequence ran: check what is left of the source (a bundle is read
        to its end). The installer calls it before the switch."""


def slot_for(component_id: tuple[bytes, ...], slots: dict[str, Slot], things: dict[str, Slot] | None = None) -> Slot:
    """Where a component is written: a slot, or a Thing's image kept until it is flashed;
    or a clear refusal."""
    target = target_of(component_id)
    if target.kind == "thing":
        if things is None or target.name not in things:
            raise ProcessingError(f"component {target.describe()}: no Thing {target.name!r} is configured "
                                  f"([things.{target.name}])", code="unknown-thing")
        return things[target.name]
    if target.kind != "slot":
        raise ProcessingError(f"component {target.name} names no gateway slot class", code="unknown-target")
    if target.name not in slots:
        raise ProcessingError(f"slot class {target.name!r} is not configured ([slots.{target.name}])",
                              code="unknown-slot-class")
    return slots[target.name]


@dataclass
class SlotExecutor:
    """Fetches into ``slots`` (slot class -> the slot to write), records what went where."""

    slots: dict[str, Slot]
    source: PayloadSource
    progress: Progress | None = None
    # http(s) payloads go straight into the slot through this, resumable, by delta when the
    # manifest names delta files for the payload (see Installer._download)
    download: Callable[[str, Slot, int | None, bytes | None, DeltaRef | None], tuple[bytes, int]] | None = None
    links: dict[str, str] = field(default_factory=dict)   # "#name" -> the URL it is downloaded from
    things: dict[str, Slot] = field(default_factory=dict)  # Thing name -> where its image is kept
    written: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # slot label -> (sha256, size)
    sequence: str = ""
    # A source streamed from the network: slot label -> bytes an earlier process wrote and synced,
    # and where to record each new durable position (label, bytes). None: a payload is synced once.
    resume: dict[str, int] = field(default_factory=dict)
    checkpoint: Callable[[str, int], None] | None = None
    clock: Callable[[], float] = time.monotonic
    # The processor's parameters of each component (Processor.parameters), for the private ones
    parameters: list[dict[int, Any]] = field(default_factory=list)

    def enter(self, sequence: str) -> None:
        self.sequence = sequence

    def note(self, message: str) -> None:
        """Notes matter for dry runs; an install has already passed one."""

    def slot_for(self, component: Component) -> Slot:
        return slot_for(component.id, self.slots, self.things)

    def component_slot(self, component: Component, slot: int) -> bool:
        return SLOT_INDEX[self.slot_for(component).name] == slot

    def fetch(self, component: Component, uri: str, digest: Digest | None, size: int | None) -> None:
        slot = self.slot_for(component)
        url = self.links.get(uri, uri)
        if self.download is not None and url.startswith(("http://", "https://")):
            written = self.download(url, slot, size, digest.value if digest else None, self._delta(component))
        else:
            written = self._stream(slot, url, size)     # a bundle's member, a file beside, a fetched file
        # Checked here, whether or not the manifest asks for image-match afterwards.
        if (digest is not None and written[0] != digest.value) or (size is not None and written[1] != size):
            raise ProcessingError(f"{slot.label}: {uri} is not the image the manifest describes "
                                  f"({written[1]} bytes written)", code="image-mismatch")
        self.written[slot.label] = written

    def _delta(self, component: Component) -> DeltaRef | None:
        """The payload's delta files, when the manifest names them for a slot and both can be
        fetched over http(s) (a ``#name`` through the links the server gave)."""
        from agent.delta.param import P_DELTA, DeltaRef, decode

        params = self.parameters[component.index] if component.index < len(self.parameters) else {}
        if P_DELTA not in params or target_of(component.id).kind != "slot":
            return None         # a Thing's image is small, and there is no old one on the gateway
        ref = decode(params[P_DELTA])
        frames, index = (replace(a, uri=self.links.get(a.uri, a.uri)) for a in (ref.frames, ref.index))
        if not all(a.uri.startswith(("http://", "https://")) for a in (frames, index)):
            return None
        return DeltaRef(frames, index)

    def _stream(self, slot: Slot, uri: str, size: int | None) -> tuple[bytes, int]:
        payload = self.source.open(uri, size)
        if hasattr(payload, "readinto"):
            return self._stream_checked(slot, uri, size, payload)
        writer = SlotWriter(slot, size)
        try:
            for chunk in payload:
                writer.write(chunk)
                if self.progress:
                    self.progress(slot.label, writer.written, size)
            digest, written = writer.finish()
        finally:
            writer.close()
        assert digest is not None
        return digest, written

    def _stream_checked(self, slot: Slot, uri: str, size: int | None, payload: Any) -> tuple[bytes, int]:
        """A payload its source checks (a bundle member): read and hashed here while the slot is
        written behind; synced once at its end, or, streamed from the network, every
        ``CHECKPOINT_BYTES`` and ``CHECKPOINT_SECONDS`` too, each durable position recorded, so that
        a cut costs no more."""
        writer = SlotWriter(slot, size, hashing=False)
        try:
            done = self.resume.get(slot.label, 0)
            if done:           # an earlier process wrote and synced these: hashed from the slot
                done = payload.skip_written(writer.read_back(done))
                writer.restart(done)
            behind = WriteBehind(writer, buffer_size(slot.device))
            synced, synced_at = done, self.clock()
            try:
                while True:
                    buffer = behind.buffer()
                    count = payload.readinto(buffer)
                    if not count:
                        behind.give_back(buffer)
                        break
                    behind.put(buffer, count)
                    done += count
                    if self.checkpoint is not None and done - synced >= CHECKPOINT_BYTES \
                            and self.clock() - synced_at >= CHECKPOINT_SECONDS:
                        behind.drain()
                        writer.sync()
                        self.checkpoint(slot.label, done)
                        synced, synced_at = done, self.clock()
                    if self.progress:
                        self.progress(slot.label, done, size)
            finally:
                behind.close()
            _, written = writer.finish()
        finally:
            writer.close()
        if self.checkpoint is not None and written > synced:
            self.checkpoint(slot.label, written)
        digest = payload.checked_digest
        if digest is None:
            raise ProcessingError(f"{slot.label}: the payload source did not check {uri}", code="image-mismatch")
        return digest, written

    def image_match(self, component: Component, digest: Digest, size: int | None) -> bool:
        slot = self.slot_for(component)
        if slot.label in self.written:
            sha, written = self.written[slot.label]
            return sha == digest.value and (size is None or size == written)
        if size is None:
            raise ProcessingError(f"{slot.label}: image-match on a slot not written now needs an image-size",
                                  code="parameter-missing")
        return read_digest(slot.device, size) == digest.value

    def check_content(self, component: Component, content: bytes) -> bool:
        slot = self.slot_for(component)
        with open(slot.device, "rb") as stream:
            return stream.read(len(content)) == content

    def write(self, component: Component, content: bytes) -> None:
        slot = self.slot_for(component)
        writer = SlotWriter(slot, len(content))
        try:
            writer.write(content)
            self.written[slot.label] = writer.finish()
        finally:
            writer.close()

    def copy(self, component: Component, source: Component) -> None:
        raise ProcessingError("copy between components is not supported on gateway slots",
                              code="unsupported-command")

    def swap(self, component: Component, other: Component) -> None:
        raise ProcessingError("swap is not supported on gateway slots: A/B switching does it",
                              code="unsupported-command")

    def invoke(self, component: Component, args: bytes | None) -> None:
        """Activation happens in the update flow's switch step, once every image is checked."""
