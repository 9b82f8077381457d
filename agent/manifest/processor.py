"""The SUIT command interpreter (pure: every effect goes through an Executor).

It runs the procedures of draft-ietf-suit-manifest-37 §6 on a manifest that
verify.py has already authenticated:

* update: payload-fetch, install, validate, each preceded by the shared sequence;
* invoke: validate, load, invoke, each preceded by the shared sequence.

Identity conditions (vendor, class, device) are decided here against the
device's identity; everything that touches a target (slot checks, image
match, fetch, write, copy, swap, invoke) is delegated to the Executor. A dry
run plugs in an executor that only records; the installer plugs in one that
acts. Unknown commands and commands outside their allowed place are a clean
rejection. Execution is bounded in nesting depth and in command count, so a
hostile manifest cannot make the processor recurse or loop without end.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from agent.errors import ManifestFormatError, PolicyError, ProcessingError
from agent.manifest import cbor
from agent.manifest.cbor import Tag
from agent.manifest.constants import (ALG_SHA256, COMMAND_NAMES, COND_ABORT, COND_CHECK_CONTENT,
                                      COND_CLASS_ID, COND_COMPONENT_SLOT, COND_DEVICE_ID,
                                      COND_IMAGE_MATCH, COND_VENDOR_ID, CONDITIONS, DIR_COPY,
                                      DIR_FETCH, DIR_INVOKE, DIR_OVERRIDE_PARAMETERS,
                                      DIR_RUN_SEQUENCE, DIR_SET_COMPONENT_INDEX, DIR_SWAP,
                                      DIR_TRY_EACH, DIR_WRITE, P_CLASS_ID, P_COMPONENT_SLOT,
                                      P_CONTENT, P_DEVICE_ID, P_IMAGE_DIGEST, P_IMAGE_SIZE,
                                      P_INVOKE_ARGS, P_SOFT_FAILURE, P_SOURCE_COMPONENT, P_URI,
                                      P_VENDOR_ID, PARAMETER_NAMES, SHARED_ALLOWED)
from agent.manifest.verify import VerifiedManifest

MAX_NESTING = 8
MAX_COMMANDS = 10_000

UPDATE = ("payload-fetch", "install", "validate")
INVOKE = ("validate", "load", "invoke")
PROCEDURES = {"update": UPDATE, "invoke": INVOKE}


@dataclass(frozen=True)
class Component:
    index: int
    id: tuple[bytes, ...]


@dataclass(frozen=True)
class Digest:
    algorithm: int
    value: bytes


@dataclass(frozen=True)
class DeviceIdentity:
    """Identifiers the device answers to; an empty tuple means "not checked"."""

    vendor_ids: tuple[bytes, ...] = ()
    class_ids: tuple[bytes, ...] = ()
    device_ids: tuple[bytes, ...] = ()


class Executor(Protocol):
    """What the processor asks of the device. Conditions return bool; directives act."""

    def enter(self, sequence: str) -> None: ...
    def note(self, message: str) -> None: ...
    def component_slot(self, component: Component, slot: int) -> bool: ...
    def image_match(self, component: Component, digest: Digest, size: int | None) -> bool: ...
    def check_content(self, component: Component, content: bytes) -> bool: ...
    def fetch(self, component: Component, uri: str, digest: Digest | None, size: int | None) -> None: ...
    def write(self, component: Component, content: bytes) -> None: ...
    def copy(self, component: Component, source: Component) -> None: ...
    def swap(self, component: Component, other: Component) -> None: ...
    def invoke(self, component: Component, args: bytes | None) -> None: ...


_IDENTITY = {COND_VENDOR_ID: (P_VENDOR_ID, "vendor_ids", "vendor-mismatch"),
             COND_CLASS_ID: (P_CLASS_ID, "class_ids", "class-mismatch"),
             COND_DEVICE_ID: (P_DEVICE_ID, "device_ids", "device-mismatch")}


# Parameters of companion drafts, named in errors. They change what commands
# mean (encryption-info makes fetch decrypt), so a manifest using them is refused.
_EXTENSION_PARAMETERS = {4: "4 (use-before)", 19: "19 (encryption-info)", 26: "26 (minimum-battery)",
                         27: "27 (update-priority)", 28: "28 (version)", 29: "29 (wait-info)",
                         30: "30 (component-metadata)"}


class _SoftFailure(Exception):
    """A condition failed where soft-failure is set: the sequence ends, unsuccessfully."""


_UNSET = object()


class Processor:
    def __init__(self, manifest: VerifiedManifest, device: DeviceIdentity, executor: Executor,
                 *, allow_severed: bool = False) -> None:
        """``allow_severed``: a severed sequence the envelope lacks is noted, not an error (dry runs)."""
        self.manifest = manifest
        self.allow_severed = allow_severed
        self.device = device
        self.executor = executor
        self.components = [Component(i, cid) for i, cid in enumerate(manifest.components)]
        self.parameters: list[dict[int, Any]] = [{} for _ in self.components]
        self.commands_run = 0
        # (component, parameter, previous value) of every parameter set, so that a
        # failed try-each alternative is undone without copying all parameters.
        self._undo: list[tuple[int, int, Any]] = []
        self._decoded: dict[bytes, Any] = {}  # a nested sequence run per component is decoded once

    # --- procedures ------------------------------------------------------------

    def check_shared(self) -> None:
        """Run the shared sequence alone: identity and compatibility checks."""
        self._run_named("shared", self.manifest.shared)

    def run(self, procedure: str) -> None:
        names = PROCEDURES[procedure]
        for name in names:
            if name in self.manifest.severed:
                if self.allow_severed:
                    self.executor.note(f"the {name} sequence is severed: the envelope does not carry it")
                    continue
                raise ProcessingError(f"the {name} sequence is severed and the envelope does not carry it",
                                      code="severed-missing")
            if name not in self.manifest.sequences:
                continue
            self._run_named("shared", self.manifest.shared)
            self._run_named(name, self.manifest.sequences[name])

    def _run_named(self, name: str, encoded: bytes | None) -> None:
        if encoded is None:
            return
        self.executor.enter(name)
        try:
            self._sequence(encoded, name, shared=(name == "shared"), soft=False, depth=0)
        except _SoftFailure:  # cannot escape a top-level sequence: soft is False there
            raise ProcessingError(f"{name}: a condition failed", code="condition-failed") from None

    # --- sequences -------------------------------------------------------------

    def _sequence(self, encoded: bytes, where: str, *, shared: bool, soft: bool, depth: int,
                  selected: list[int] | None = None) -> None:
        """Run one sequence. Nested sequences start with the selection of their caller."""
        if depth > MAX_NESTING:
            raise ProcessingError(f"{where}: command sequences nested deeper than {MAX_NESTING}",
                                  code="sequence-too-deep")
        commands = self._decoded.get(encoded)
        if commands is None:
            commands = self._decoded[encoded] = cbor.decode(encoded, what=f"{where} sequence")
        if not isinstance(commands, list) or len(commands) % 2:
            raise ManifestFormatError(f"{where}: a command sequence must be an array of "
                                      "(command, argument) pairs", code="sequence-format")
        if selected is None and len(self.components) == 1:
            selected = [0]
        elif selected is None and commands and isinstance(commands[0], int) \
                and commands[0] in COMMAND_NAMES and commands[0] != DIR_SET_COMPONENT_INDEX:
            # §6.2: with several components every sequence starts by selecting one.
            raise ManifestFormatError(f"{where}: with {len(self.components)} components the sequence must "
                                      "start with set-component-index", code="sequence-format")
        for position in range(0, len(commands), 2):
            command, argument = commands[position], commands[position + 1]
            self._spend(len(selected) if selected else 1)  # a command runs once per selected component
            if not isinstance(command, int) or isinstance(command, bool) or command not in COMMAND_NAMES:
                raise ProcessingError(f"{where}[{position // 2}]: unknown or unsupported command {command!r}",
                                      code="unsupported-command")
            label = f"{where}[{position // 2}] {COMMAND_NAMES[command]}"
            if shared and command not in SHARED_ALLOWED:
                raise ProcessingError(f"{label}: not allowed in the shared sequence",
                                      code="command-not-allowed")
            if command == DIR_SET_COMPONENT_INDEX:
                selected = self._select(argument, label)
                continue
            assert selected is not None
            if command == DIR_OVERRIDE_PARAMETERS:
                soft = self._override(argument, selected, label, soft)
            elif command == DIR_RUN_SEQUENCE:
                if not isinstance(argument, bytes):
                    raise ManifestFormatError(f"{label}: argument must be a bstr sequence",
                                              code="sequence-format")
                for index in selected:
                    self._sequence(argument, label, shared=shared, soft=False, depth=depth + 1,
                                   selected=[index])
            elif command == DIR_TRY_EACH:
                for index in selected:
                    self._try_each(argument, index, label, shared, depth)
            else:
                for index in selected:
                    self._command(command, argument, index, label, soft)

    def _spend(self, count: int) -> None:
        self.commands_run += count
        if self.commands_run > MAX_COMMANDS:
            raise ProcessingError(f"more than {MAX_COMMANDS} commands executed", code="too-many-commands")

    def _select(self, argument: Any, label: str) -> list[int]:
        count = len(self.components)
        if argument is True:
            return list(range(count))
        indices = argument if isinstance(argument, list) else [argument]
        if (not indices or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices)
                or not all(0 <= i < count for i in indices)):
            raise ManifestFormatError(f"{label}: component index {argument!r} is not one of the "
                                      f"{count} component(s)", code="sequence-format")
        return list(indices)

    def _override(self, argument: Any, selected: list[int], label: str, soft: bool) -> bool:
        if not isinstance(argument, dict) or not all(isinstance(k, int) for k in argument):
            raise ManifestFormatError(f"{label}: parameters must be a map with integer keys",
                                      code="sequence-format")
        unknown = [k for k in argument if k >= 0 and k not in PARAMETER_NAMES]
        if unknown:
            names = ", ".join(_EXTENSION_PARAMETERS.get(k, str(k)) for k in unknown)
            raise ProcessingError(f"{label}: parameter(s) {names} of SUIT extensions are not supported",
                                  code="unsupported-parameter")
        self._spend(len(selected) * len(argument))  # every parameter set counts, for each component
        for index in selected:
            params = self.parameters[index]
            for key, value in argument.items():
                self._undo.append((index, key, params.get(key, _UNSET)))
                params[key] = value
        if P_SOFT_FAILURE in argument:
            if not isinstance(argument[P_SOFT_FAILURE], bool):
                raise ManifestFormatError(f"{label}: soft-failure must be a bool", code="sequence-format")
            return argument[P_SOFT_FAILURE]
        return soft

    def _try_each(self, argument: Any, index: int, label: str, shared: bool, depth: int) -> None:
        """Run alternatives with soft failure until one completes (§8.4.10.2)."""
        if (not isinstance(argument, list) or len(argument) < 2
                or not all(isinstance(a, bytes) for a in argument[:-1])
                or not (argument[-1] is None or isinstance(argument[-1], bytes))):
            raise ManifestFormatError(f"{label}: try-each takes two or more bstr sequences and an "
                                      "optional trailing nil", code="sequence-format")
        for number, alternative in enumerate(argument):
            if alternative is None:
                self.executor.note(f"{label}: no alternative matched; the empty alternative is taken")
                return
            mark = len(self._undo)
            try:
                self._sequence(alternative, f"{label}/{number}", shared=shared, soft=True,
                               depth=depth + 1, selected=[index])
                return
            except _SoftFailure:
                self._rollback(mark)  # a failed alternative leaves no parameters behind
        raise ProcessingError(f"{label}: none of the {len(argument)} alternatives matched",
                              code="condition-failed")

    def _rollback(self, mark: int) -> None:
        while len(self._undo) > mark:
            index, key, previous = self._undo.pop()
            if previous is _UNSET:
                del self.parameters[index][key]
            else:
                self.parameters[index][key] = previous

    # --- single commands ---------------------------------------------------------

    def _command(self, command: int, argument: Any, index: int, label: str, soft: bool) -> None:
        if command in CONDITIONS or command in (DIR_WRITE, DIR_FETCH, DIR_COPY, DIR_INVOKE, DIR_SWAP):
            if not isinstance(argument, int) or isinstance(argument, bool) or argument < 0:
                raise ManifestFormatError(f"{label}: the argument must be a reporting policy (uint)",
                                          code="sequence-format")
        component = self.components[index]
        params = self.parameters[index]
        if command in CONDITIONS:
            ok, code, why = self._condition(command, component, params, label)
            if ok:
                return
            if soft:
                raise _SoftFailure()
            raise (PolicyError if code.endswith("-mismatch") and command != COND_IMAGE_MATCH
                   else ProcessingError)(f"{label}: {why}", code=code)
        if command == DIR_FETCH:
            uri = self._param(params, P_URI, str, label)
            self.executor.fetch(component, uri, self._digest(params, label, required=False),
                                self._size(params, label))
        elif command == DIR_WRITE:
            self.executor.write(component, self._param(params, P_CONTENT, bytes, label))
        elif command in (DIR_COPY, DIR_SWAP):
            source = self._param(params, P_SOURCE_COMPONENT, int, label)
            if not 0 <= source < len(self.components) or source == index:
                raise ManifestFormatError(f"{label}: source-component {source} is not another component",
                                          code="sequence-format")
            action = self.executor.copy if command == DIR_COPY else self.executor.swap
            action(component, self.components[source])
        elif command == DIR_INVOKE:
            args = params.get(P_INVOKE_ARGS)
            if args is not None and not isinstance(args, bytes):
                raise ManifestFormatError(f"{label}: invoke-args must be a bstr", code="sequence-format")
            self.executor.invoke(component, args)

    def _condition(self, command: int, component: Component, params: dict[int, Any],
                   label: str) -> tuple[bool, str, str]:
        if command in _IDENTITY:
            key, field, code = _IDENTITY[command]
            expected = params.get(key)
            name = PARAMETER_NAMES[key]
            if expected is None:
                raise ProcessingError(f"{label}: no {name} parameter is set", code="parameter-missing")
            if isinstance(expected, Tag):  # CBOR PEN (tag 112) for vendor-id
                expected = expected.value
            if not isinstance(expected, bytes):
                raise ManifestFormatError(f"{label}: {name} must be a bstr", code="sequence-format")
            known: tuple[bytes, ...] = getattr(self.device, field)
            if not known:
                self.executor.note(f"{name} {_show_id(expected)} not checked: the device's is not configured")
                return True, "", ""
            if expected in known:
                return True, "", ""
            return False, code, (f"manifest {name} {_show_id(expected)} does not match the device "
                                 f"({', '.join(_show_id(k) for k in known)})")
        if command == COND_COMPONENT_SLOT:
            slot = self._param(params, P_COMPONENT_SLOT, int, label)
            return self.executor.component_slot(component, slot), "slot-mismatch", f"slot {slot} is not the target"
        if command == COND_IMAGE_MATCH:
            digest = self._digest(params, label, required=True)
            assert digest is not None
            ok = self.executor.image_match(component, digest, self._size(params, label))
            return ok, "image-mismatch", "the image does not match the digest and size in the manifest"
        if command == COND_CHECK_CONTENT:
            content = self._param(params, P_CONTENT, bytes, label)
            return self.executor.check_content(component, content), "content-mismatch", "content differs"
        assert command == COND_ABORT
        return False, "aborted", "the manifest asks to abort"

    def _param(self, params: dict[int, Any], key: int, kind: type, label: str) -> Any:
        name = PARAMETER_NAMES[key]
        if key not in params:
            raise ProcessingError(f"{label}: no {name} parameter is set", code="parameter-missing")
        value = params[key]
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise ManifestFormatError(f"{label}: {name} must be of type {kind.__name__}",
                                      code="sequence-format")
        return value

    def _digest(self, params: dict[int, Any], label: str, *, required: bool) -> Digest | None:
        if P_IMAGE_DIGEST not in params and not required:
            return None
        raw = self._param(params, P_IMAGE_DIGEST, bytes, label)
        item = cbor.decode(raw, what="image-digest")
        if (not isinstance(item, list) or len(item) < 2 or not isinstance(item[0], int)
                or not isinstance(item[1], bytes)):
            raise ManifestFormatError(f"{label}: image-digest is not a SUIT_Digest", code="sequence-format")
        if item[0] != ALG_SHA256 or len(item[1]) != 32:
            raise ProcessingError(f"{label}: image-digest algorithm {item[0]} is not supported (SHA-256 only)",
                                  code="digest-unsupported")
        return Digest(item[0], item[1])

    def _size(self, params: dict[int, Any], label: str) -> int | None:
        if P_IMAGE_SIZE not in params:
            return None
        size = self._param(params, P_IMAGE_SIZE, int, label)
        if size < 0:
            raise ManifestFormatError(f"{label}: image-size must not be negative", code="sequence-format")
        return size


def _show_id(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw)) if len(raw) == 16 else raw.hex()
