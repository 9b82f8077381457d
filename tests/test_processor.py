"""The command interpreter, driven directly with a recording executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest

import suit_factory as f
from agent.errors import ManifestError, PolicyError, ProcessingError
from agent.manifest.envelope import Envelope
from agent.manifest.processor import MAX_NESTING, Component, DeviceIdentity, Digest, Processor
from agent.manifest.verify import VerifiedManifest

SHA = f.digest_bstr(f.IMAGE)


@dataclass
class Recorder:
    """An executor that records every call; conditions answer from its settings."""

    slots: dict[int, int] = field(default_factory=dict)  # component index -> the slot that matches
    image_ok: bool = True
    content_ok: bool = True
    calls: list[tuple] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def enter(self, sequence: str) -> None:
        self.calls.append(("enter", sequence))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def component_slot(self, component: Component, slot: int) -> bool:
        self.calls.append(("slot?", component.index, slot))
        return self.slots.get(component.index, 0) == slot

    def image_match(self, component: Component, digest: Digest, size: int | None) -> bool:
        self.calls.append(("image-match", component.index, digest.value, size))
        return self.image_ok

    def check_content(self, component: Component, content: bytes) -> bool:
        self.calls.append(("check-content", component.index, content))
        return self.content_ok

    def fetch(self, component: Component, uri: str, digest: Digest | None, size: int | None) -> None:
        self.calls.append(("fetch", component.index, uri, digest.value if digest else None, size))

    def write(self, component: Component, content: bytes) -> None:
        self.calls.append(("write", component.index, content))

    def copy(self, component: Component, source: Component) -> None:
        self.calls.append(("copy", component.index, source.index))

    def swap(self, component: Component, other: Component) -> None:
        self.calls.append(("swap", component.index, other.index))

    def invoke(self, component: Component, args: bytes | None) -> None:
        self.calls.append(("invoke", component.index, args))

    @property
    def actions(self) -> list[tuple]:
        return [c for c in self.calls if c[0] not in ("enter", "slot?")]


def manifest(components: int = 1, shared: list[Any] | None = None, **sequences: list[Any]) -> VerifiedManifest:
    return VerifiedManifest(
        envelope=Envelope(manifest=b"", authentication=b""), digest=b"\x00" * 32, sequence=1,
        components=[(bytes([i]),) for i in range(components)],
        shared=None if shared is None else f.seq(*shared),
        sequences={name.replace("_", "-"): f.seq(*commands) for name, commands in sequences.items()},
        severed=[], text=None, reference_uri=None, authenticated_by=[])


def run(verified: VerifiedManifest, procedure: str = "update", executor: Recorder | None = None,
        device: DeviceIdentity = f.DEVICE) -> Recorder:
    executor = executor or Recorder()
    Processor(verified, device, executor).run(procedure)
    return executor


def fails(verified: VerifiedManifest, code: str, procedure: str = "update",
          executor: Recorder | None = None, device: DeviceIdentity = f.DEVICE) -> ManifestError:
    with pytest.raises(ManifestError) as err:
        run(verified, procedure, executor, device)
    assert err.value.code == code, str(err.value)
    assert "\n" not in str(err.value)
    return err.value


def slot_alternative(slot: int, uri: str) -> bytes:
    return f.seq(f.OVERRIDE, {f.P_SLOT: slot}, f.SLOT, f.REPORT, f.OVERRIDE, {f.P_URI: uri})


# --- try-each ------------------------------------------------------------------------


@pytest.mark.parametrize("slot, uri", [(0, "http://a/0.bin"), (1, "http://a/1.bin"), (2, "http://a/2.bin")])
def test_try_each_picks_the_matching_alternative(slot: int, uri: str) -> None:
    verified = manifest(install=[
        f.TRY_EACH, [slot_alternative(0, "http://a/0.bin"), slot_alternative(1, "http://a/1.bin"),
                     slot_alternative(2, "http://a/2.bin")],
        f.FETCH, f.REPORT])
    recorder = run(verified, executor=Recorder(slots={0: slot}))
    assert recorder.actions == [("fetch", 0, uri, None, None)]
    assert [c for c in recorder.calls if c[0] == "slot?"] == [("slot?", 0, s) for s in range(slot + 1)]


def test_failed_alternative_leaves_no_parameters_behind() -> None:
    """Alternative 0 sets uri and overwrites size, then fails: both are undone."""
    failing = f.seq(f.OVERRIDE, {f.P_URI: "http://a/wrong.bin", f.P_SIZE: 999, f.P_SLOT: 1},
                    f.SLOT, f.REPORT)
    passing = f.seq(f.OVERRIDE, {f.P_SLOT: 0}, f.SLOT, f.REPORT)
    verified = manifest(install=[
        f.OVERRIDE, {f.P_URI: "http://a/right.bin", f.P_SIZE: 10},
        f.TRY_EACH, [failing, passing],
        f.FETCH, f.REPORT])
    assert run(verified).actions == [("fetch", 0, "http://a/right.bin", None, 10)]


def test_failed_alternative_on_another_component_is_undone_too() -> None:
    failing = f.seq(f.SET_INDEX, 1, f.OVERRIDE, {f.P_URI: "http://a/leak.bin"}, f.SET_INDEX, 0, f.ABORT, f.REPORT)
    verified = manifest(components=2, install=[
        f.SET_INDEX, 1, f.OVERRIDE, {f.P_URI: "http://a/one.bin"},
        f.SET_INDEX, 0, f.TRY_EACH, [failing, f.seq()],
        f.SET_INDEX, 1, f.FETCH, f.REPORT])
    assert run(verified).actions == [("fetch", 1, "http://a/one.bin", None, None)]


def test_successful_alternative_keeps_its_parameters() -> None:
    verified = manifest(install=[
        f.TRY_EACH, [f.seq(f.OVERRIDE, {f.P_URI: "http://a/kept.bin"}), f.seq()],
        f.FETCH, f.REPORT])
    assert run(verified).actions == [("fetch", 0, "http://a/kept.bin", None, None)]


def test_nested_try_each_undoes_only_the_failed_branch() -> None:
    inner = f.seq(f.OVERRIDE, {f.P_SIZE: 2}, f.TRY_EACH, [f.seq(f.OVERRIDE, {f.P_SIZE: 3}, f.ABORT, f.REPORT),
                                                         f.seq(f.OVERRIDE, {f.P_URI: "http://a/x"})])
    verified = manifest(install=[f.OVERRIDE, {f.P_SIZE: 1}, f.TRY_EACH, [inner, f.seq()], f.FETCH, f.REPORT])
    assert run(verified).actions == [("fetch", 0, "http://a/x", None, 2)]


def test_try_each_with_trailing_nil_when_nothing_matches() -> None:
    verified = manifest(install=[
        f.TRY_EACH, [slot_alternative(0, "http://a/0.bin"), slot_alternative(1, "http://a/1.bin"), None],
        f.INVOKE, f.REPORT])
    recorder = run(verified, executor=Recorder(slots={0: 7}))
    assert recorder.actions == [("invoke", 0, None)]
    assert any("no alternative matched" in n for n in recorder.notes)


def test_try_each_without_nil_when_nothing_matches() -> None:
    verified = manifest(install=[
        f.TRY_EACH, [slot_alternative(0, "http://a/0.bin"), slot_alternative(1, "http://a/1.bin")],
        f.INVOKE, f.REPORT])
    recorder = Recorder(slots={0: 7})
    fails(verified, "condition-failed", executor=recorder)
    assert recorder.actions == []


@pytest.mark.parametrize("argument", [[], [b"\x80"], [None, b"\x80"], [b"\x80", 1], b"\x80", {0: b"\x80"}])
def test_try_each_argument_shape(argument: Any) -> None:
    fails(manifest(install=[f.TRY_EACH, argument]), "sequence-format")


def test_hard_error_inside_try_each_is_not_soft() -> None:
    """Only a failed condition moves on to the next alternative; a malformed command does not."""
    verified = manifest(install=[f.TRY_EACH, [f.seq(99, 0), f.seq()]])
    fails(verified, "unsupported-command")


def test_soft_failure_false_inside_try_each_makes_a_failure_hard() -> None:
    verified = manifest(install=[f.TRY_EACH, [f.seq(f.OVERRIDE, {f.P_SOFT_FAILURE: False}, f.ABORT, f.REPORT),
                                              f.seq()]])
    fails(verified, "aborted")


def test_soft_failure_must_be_a_bool() -> None:
    fails(manifest(install=[f.OVERRIDE, {f.P_SOFT_FAILURE: 1}]), "sequence-format")


# --- component selection ----------------------------------------------------------------


def test_set_component_index_true_repeats_for_every_component() -> None:
    verified = manifest(components=3, install=[
        f.SET_INDEX, True, f.OVERRIDE, {f.P_URI: "http://a/all"}, f.FETCH, f.REPORT, f.INVOKE, f.REPORT])
    assert run(verified).actions == [
        ("fetch", 0, "http://a/all", None, None), ("fetch", 1, "http://a/all", None, None),
        ("fetch", 2, "http://a/all", None, None),
        ("invoke", 0, None), ("invoke", 1, None), ("invoke", 2, None)]


def test_set_component_index_array() -> None:
    verified = manifest(components=3, install=[f.SET_INDEX, [2, 0], f.INVOKE, f.REPORT,
                                               f.SET_INDEX, 1, f.INVOKE, f.REPORT])
    assert run(verified).actions == [("invoke", 2, None), ("invoke", 0, None), ("invoke", 1, None)]


def test_parameters_are_per_component() -> None:
    verified = manifest(components=2, install=[
        f.SET_INDEX, True, f.OVERRIDE, {f.P_URI: "http://a/common", f.P_SIZE: 1},
        f.SET_INDEX, 1, f.OVERRIDE, {f.P_URI: "http://a/one"},
        f.SET_INDEX, True, f.FETCH, f.REPORT])
    assert run(verified).actions == [("fetch", 0, "http://a/common", None, 1),
                                     ("fetch", 1, "http://a/one", None, 1)]


def test_run_sequence_runs_once_per_selected_component() -> None:
    verified = manifest(components=3, install=[
        f.SET_INDEX, [0, 2], f.RUN_SEQUENCE, f.seq(f.INVOKE, f.REPORT)])
    assert run(verified).actions == [("invoke", 0, None), ("invoke", 2, None)]


def test_try_each_runs_once_per_selected_component() -> None:
    verified = manifest(components=2, install=[
        f.SET_INDEX, True,
        f.TRY_EACH, [slot_alternative(0, "http://a/s0"), slot_alternative(1, "http://a/s1")],
        f.FETCH, f.REPORT])
    recorder = run(verified, executor=Recorder(slots={0: 1, 1: 0}))
    assert recorder.actions == [("fetch", 0, "http://a/s1", None, None), ("fetch", 1, "http://a/s0", None, None)]


@pytest.mark.parametrize("index", [3, -1, [], [0, 5], False, "0", None])
def test_component_index_out_of_range(index: Any) -> None:
    fails(manifest(components=3, install=[f.SET_INDEX, index, f.INVOKE, f.REPORT]), "sequence-format")


def test_several_components_need_a_selection_first() -> None:
    fails(manifest(components=2, install=[f.INVOKE, f.REPORT]), "sequence-format")


def test_one_component_is_selected_implicitly() -> None:
    assert run(manifest(install=[f.INVOKE, f.REPORT])).actions == [("invoke", 0, None)]


# --- conditions -------------------------------------------------------------------------


def test_failing_condition_outside_try_each_aborts() -> None:
    verified = manifest(install=[f.OVERRIDE, {f.P_SLOT: 1}, f.SLOT, f.REPORT, f.INVOKE, f.REPORT])
    recorder = Recorder()
    fails(verified, "slot-mismatch", executor=recorder)
    assert recorder.actions == []


def test_image_match_false_is_image_mismatch() -> None:
    verified = manifest(install=[f.OVERRIDE, {f.P_DIGEST: SHA, f.P_SIZE: len(f.IMAGE)},
                                 f.IMAGE_MATCH, f.REPORT, f.INVOKE, f.REPORT])
    recorder = Recorder(image_ok=False)
    error = fails(verified, "image-mismatch", executor=recorder)
    assert isinstance(error, ProcessingError)
    assert recorder.actions == [("image-match", 0, f.IMAGE_DIGEST, len(f.IMAGE))]


def test_image_match_needs_a_digest() -> None:
    fails(manifest(install=[f.IMAGE_MATCH, f.REPORT]), "parameter-missing")


def test_image_match_with_another_digest_algorithm() -> None:
    sha384 = cbor2.dumps([-43, b"\x00" * 48])
    fails(manifest(install=[f.OVERRIDE, {f.P_DIGEST: sha384}, f.IMAGE_MATCH, f.REPORT]), "digest-unsupported")


def test_check_content_false() -> None:
    verified = manifest(install=[f.OVERRIDE, {f.P_CONTENT: b"abc"}, f.CHECK_CONTENT, f.REPORT])
    fails(verified, "content-mismatch", executor=Recorder(content_ok=False))


def test_abort() -> None:
    fails(manifest(install=[f.ABORT, f.REPORT]), "aborted")


def test_vendor_mismatch_is_a_policy_error() -> None:
    verified = manifest(shared=f.identity_checks(vendor=b"\x09" * 16), install=[f.INVOKE, f.REPORT])
    error = fails(verified, "vendor-mismatch")
    assert isinstance(error, PolicyError)


def test_identity_conditions_pass_unchecked_without_device_identity() -> None:
    verified = manifest(shared=f.identity_checks(vendor=b"\x09" * 16), install=[f.INVOKE, f.REPORT])
    recorder = run(verified, device=DeviceIdentity())
    assert recorder.actions == [("invoke", 0, None)]
    assert any("not checked" in n for n in recorder.notes)


def test_vendor_id_as_pen_tag() -> None:
    shared = [f.OVERRIDE, {f.P_VENDOR: cbor2.CBORTag(112, f.VENDOR_ID)}, f.VENDOR, f.REPORT]
    assert run(manifest(shared=shared, install=[f.INVOKE, f.REPORT])).actions == [("invoke", 0, None)]


def test_device_identifier() -> None:
    device = DeviceIdentity(device_ids=(b"\x05" * 16,))
    ok = manifest(install=[f.OVERRIDE, {24: b"\x05" * 16}, 24, f.REPORT, f.INVOKE, f.REPORT])
    assert run(ok, device=device).actions == [("invoke", 0, None)]
    other = manifest(install=[f.OVERRIDE, {24: b"\x06" * 16}, 24, f.REPORT])
    fails(other, "device-mismatch", device=device)


# --- directives and parameters -------------------------------------------------------------


def test_directives_reach_the_executor() -> None:
    verified = manifest(components=2, install=[
        f.SET_INDEX, 0, f.OVERRIDE, {f.P_CONTENT: b"hello", f.P_SOURCE: 1, 23: b"args"},
        f.WRITE, f.REPORT, f.COPY, f.REPORT, f.SWAP, f.REPORT, f.INVOKE, f.REPORT])
    assert run(verified).actions == [("write", 0, b"hello"), ("copy", 0, 1), ("swap", 0, 1),
                                     ("invoke", 0, b"args")]


def test_copy_from_itself() -> None:
    fails(manifest(components=2, install=[f.SET_INDEX, 0, f.OVERRIDE, {f.P_SOURCE: 0}, f.COPY, f.REPORT]),
          "sequence-format")


def test_fetch_needs_a_uri() -> None:
    fails(manifest(install=[f.FETCH, f.REPORT]), "parameter-missing")


@pytest.mark.parametrize("params", [{f.P_URI: b"http://a"}, {f.P_URI: 5}, {f.P_URI: "http://a", f.P_SIZE: -1},
                                    {f.P_URI: "http://a", f.P_SIZE: True}, {f.P_URI: "http://a", f.P_DIGEST: b"\x00"}])
def test_fetch_parameter_types(params: dict) -> None:
    fails(manifest(install=[f.OVERRIDE, params, f.FETCH, f.REPORT]), "sequence-format")


@pytest.mark.parametrize("param", [4, 19, 26, 27, 28, 29, 30, 99, 1000])
def test_unknown_parameter(param: int) -> None:
    error = fails(manifest(install=[f.OVERRIDE, {param: 0}]), "unsupported-parameter")
    assert str(param) in str(error)


def test_private_parameters_are_stored_not_interpreted() -> None:
    assert run(manifest(install=[f.OVERRIDE, {-1: b"x", -300: 7}, f.INVOKE, f.REPORT])).actions == [
        ("invoke", 0, None)]


@pytest.mark.parametrize("policy", [-1, True, b"\x00", None])
def test_reporting_policy_must_be_a_uint(policy: Any) -> None:
    fails(manifest(install=[f.INVOKE, policy]), "sequence-format")


@pytest.mark.parametrize("command", [99, -1, 34, 13, "fetch", b"\x15", True, None, [21]])
def test_unknown_command(command: Any) -> None:
    fails(manifest(install=[command, 0]), "unsupported-command")


def test_shared_sequence_runs_before_each_sequence() -> None:
    verified = manifest(shared=[f.OVERRIDE, {f.P_URI: "http://a/s"}],
                        install=[f.FETCH, f.REPORT], validate=[f.INVOKE, f.REPORT])
    recorder = run(verified)
    assert [c for c in recorder.calls if c[0] == "enter"] == [
        ("enter", "shared"), ("enter", "install"), ("enter", "shared"), ("enter", "validate")]


def test_shared_sequence_may_not_act() -> None:
    verified = manifest(shared=[f.OVERRIDE, {f.P_URI: "http://a"}, f.FETCH, f.REPORT], install=[])
    fails(verified, "command-not-allowed")


def test_nested_shared_sequence_may_not_act_either() -> None:
    verified = manifest(shared=[f.RUN_SEQUENCE, f.seq(f.INVOKE, f.REPORT)], install=[])
    fails(verified, "command-not-allowed")
    verified = manifest(shared=[f.TRY_EACH, [f.seq(f.INVOKE, f.REPORT), f.seq()]], install=[])
    fails(verified, "command-not-allowed")


def test_severed_sequence_is_an_error_outside_dry_runs() -> None:
    verified = manifest(install=[f.INVOKE, f.REPORT])
    verified.severed.append("install")
    verified.sequences.pop("install")
    with pytest.raises(ProcessingError) as err:
        Processor(verified, f.DEVICE, Recorder()).run("update")
    assert err.value.code == "severed-missing"
    recorder = Recorder()
    Processor(verified, f.DEVICE, recorder, allow_severed=True).run("update")
    assert recorder.notes == ["the install sequence is severed: the envelope does not carry it"]


def test_invoke_procedure_order() -> None:
    verified = manifest(components=2,
                        validate=[f.SET_INDEX, 0, f.OVERRIDE, {f.P_DIGEST: SHA}, f.IMAGE_MATCH, f.REPORT],
                        load=[f.SET_INDEX, 1, f.OVERRIDE, {f.P_SOURCE: 0}, f.COPY, f.REPORT],
                        invoke=[f.SET_INDEX, 1, f.INVOKE, f.REPORT],
                        install=[f.SET_INDEX, 0, f.ABORT, f.REPORT])
    assert run(verified, "invoke").actions == [("image-match", 0, f.IMAGE_DIGEST, None), ("copy", 1, 0),
                                               ("invoke", 1, None)]


def test_nesting_limit_is_exact() -> None:
    sequence = f.seq(f.INVOKE, f.REPORT)
    for _ in range(MAX_NESTING):
        sequence = f.seq(f.RUN_SEQUENCE, sequence)
    assert run(manifest(install=list(cbor2.loads(sequence)))).actions == [("invoke", 0, None)]
    fails(manifest(install=[f.RUN_SEQUENCE, sequence]), "sequence-too-deep")


@pytest.mark.parametrize("encoded, code", [(b"\x81\x01", "sequence-format"), (b"\xa0", "sequence-format"),
                                           (b"\x01", "sequence-format"), (b"\x82\x01", "cbor-truncated"),
                                           (b"", "cbor-truncated"), (b"\x80\x80", "cbor-trailing-bytes")])
def test_sequence_must_be_an_array_of_pairs(encoded: bytes, code: str) -> None:
    verified = manifest(install=[])
    verified.sequences["install"] = encoded
    fails(verified, code)
