"""An Executor that only records what an update would do (for ``verify``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.manifest.processor import Component, Digest
from agent.manifest.targets import component_label, target_of


@dataclass
class DryRunExecutor:
    """Records actions; conditions on targets pass, since nothing is there to check yet.

    ``slot`` is the component slot the device would write (the inactive one);
    when unknown, the first slot a manifest tries is taken and a note says so.
    ``integrated`` names the payloads the envelope or its bundle carries.
    """

    slot: int | None = None
    integrated: frozenset[str] = frozenset()
    actions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sequence: str = ""
    _texts: dict[Any, str] = field(default_factory=dict, repr=False)
    _noted: set[str] = field(default_factory=set, repr=False)

    def enter(self, sequence: str) -> None:
        self.sequence = sequence

    def note(self, message: str) -> None:
        if message not in self._noted:
            self._noted.add(message)
            self.notes.append(message)

    def _text(self, kind: str, value: Any) -> str:
        """Labels and hex dumps, made once: a manifest may repeat an action thousands of times."""
        key = (kind, value)
        if key not in self._texts:
            self._texts[key] = (component_label(value) if kind == "label"
                                else target_of(value).describe() if kind == "target" else value.hex())
        return self._texts[key]

    def _record(self, action: str, component: Component, **details: Any) -> None:
        self.actions.append({"sequence": self.sequence, "action": action,
                             "component": self._text("label", component.id),
                             "target": self._text("target", component.id), **details})

    def component_slot(self, component: Component, slot: int) -> bool:
        if self.slot is None:
            self.note(f"component {component_label(component.id)}: the target slot is unknown here; "
                      f"slot {slot} is assumed")
            self.slot = slot
        return slot == self.slot

    def image_match(self, component: Component, digest: Digest, size: int | None) -> bool:
        self._record("check-image", component, digest=digest.value.hex(), size=size)
        return True

    def check_content(self, component: Component, content: bytes) -> bool:
        self._record("check-content", component, size=len(content))
        return True

    def fetch(self, component: Component, uri: str, digest: Digest | None, size: int | None) -> None:
        details: dict[str, Any] = {"uri": uri, "digest": digest.value.hex() if digest else None,
                                   "size": size}
        if uri.startswith("#"):
            details["integrated"] = uri in self.integrated
            if uri not in self.integrated:
                self.note(f"payload {uri} is not in the envelope; a bundle must carry it")
        self._record("fetch", component, **details)

    def write(self, component: Component, content: bytes) -> None:
        self._record("write", component, size=len(content))

    def copy(self, component: Component, source: Component) -> None:
        self._record("copy", component, source=self._text("label", source.id))

    def swap(self, component: Component, other: Component) -> None:
        self._record("swap", component, other=self._text("label", other.id))

    def invoke(self, component: Component, args: bytes | None) -> None:
        self._record("invoke", component, args=self._text("hex", args) if args else None)
