"""Envelopes built to be wrong in exactly one way, and the reason each is refused.

Every rejection is a ManifestError with a specific code and a one-line message;
nothing else may escape. The envelopes come from tests/suit_factory.py.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import cbor2
import pytest

import suit_factory as f
from agent.errors import ManifestError
from agent.manifest import cose
from agent.manifest.check import authorize, check
from agent.manifest.processor import MAX_COMMANDS, MAX_NESTING, DeviceIdentity
from agent.manifest.verify import RollbackState, Trust, verify_envelope

KEY = f.draft_private_key()
TRUST = f.trust(KEY)
OTHER = cose.generate_private_key("es256")
ED = cose.generate_private_key("ed25519")


def rejects(data: bytes, code: str, *, stage: Callable[..., Any] = check, trust: Trust = TRUST,
            rollback: RollbackState | None = None, device: DeviceIdentity = f.DEVICE) -> ManifestError:
    with pytest.raises(ManifestError) as err:
        stage(data, trust, rollback=rollback, device=device)
    assert err.value.code == code, str(err.value)
    message = str(err.value)
    assert message and "\n" not in message and "\r" not in message
    assert "\n" not in err.value.one_line()
    return err.value


def accepts(data: bytes, trust: Trust = TRUST, **kwargs: Any):
    return check(data, trust, device=f.DEVICE, **kwargs)


def good(sequence: int = 1) -> bytes:
    return f.envelope(f.simple_manifest(sequence), KEY)


def parts(data: bytes) -> tuple[list[bytes], bytes, dict]:
    """The authentication blocks, the manifest bstr and the rest of an envelope."""
    body = cbor2.loads(data).value
    return cbor2.loads(body[2]), body[3], {k: v for k, v in body.items() if k not in (2, 3)}


# --- the positive baseline ---------------------------------------------------


def test_factory_envelope_is_accepted() -> None:
    result = accepts(good())
    assert result.manifest.sequence == 1
    assert [(a["sequence"], a["action"]) for a in result.actions] == [
        ("install", "fetch"), ("install", "check-image"), ("validate", "check-image"),
        ("validate", "check-image"), ("invoke", "invoke")]
    assert result.payloads[0].digest == f.IMAGE_DIGEST and result.payloads[0].size == len(f.IMAGE)


def test_untagged_envelope_is_accepted() -> None:
    untagged = cbor2.dumps(cbor2.loads(good()).value)
    assert accepts(untagged).manifest.envelope.tagged is False


# --- digest and signature ------------------------------------------------------


def test_tampered_manifest() -> None:
    blocks, manifest, _ = parts(good())
    tampered = manifest.replace(b"file.bin", b"evil.bin")
    assert tampered != manifest
    rejects(f.encode_envelope(cbor2.dumps(blocks), tampered), "digest-mismatch")


def test_tampered_manifest_with_matching_digest_but_old_signature() -> None:
    blocks, manifest, _ = parts(good())
    tampered = manifest.replace(b"file.bin", b"evil.bin")
    rewrapped = f.wrapper(tampered, blocks[1:])  # digest recomputed, signature kept
    rejects(f.encode_envelope(rewrapped, tampered), "signature-invalid")


@pytest.mark.parametrize("bit", [0, 7, 8 * 31, 8 * 63 + 7])
def test_bit_flip_in_signature(bit: int) -> None:
    blocks, manifest, _ = parts(good())
    protected, unprotected, payload, signature = cbor2.loads(blocks[1]).value
    flipped = bytearray(signature)
    flipped[bit // 8] ^= 1 << (bit % 8)
    sign1 = cbor2.CBORTag(18, [protected, unprotected, payload, bytes(flipped)])
    wrapper = cbor2.dumps([blocks[0], cbor2.dumps(sign1)])
    rejects(f.encode_envelope(wrapper, manifest), "signature-invalid")


def test_bit_flip_in_protected_header() -> None:
    manifest = f.encode(f.simple_manifest())
    block = f.sign1_block(f.manifest_digest(manifest), KEY, alg=-9)
    _, unprotected, payload, signature = cbor2.loads(block).value
    # still P-256, another algorithm id: the signed bytes differ
    tampered = cbor2.CBORTag(18, [cbor2.dumps({1: -7}), unprotected, payload, signature])
    rejects(f.encode_envelope(f.wrapper(manifest, [cbor2.dumps(tampered)]), manifest), "signature-invalid")


def test_untrusted_signer_with_kid() -> None:
    error = rejects(f.envelope(f.simple_manifest(), OTHER), "untrusted-signer")
    assert cose.key_id(OTHER.public_key()).hex() in str(error)


def test_untrusted_signer_without_kid() -> None:
    rejects(f.envelope(f.simple_manifest(), (OTHER, {"kid": None})), "signature-invalid")


def test_trusted_kid_but_wrong_key() -> None:
    """A kid can be copied; it decides nothing, the signature does."""
    kid = cose.key_id(KEY.public_key())
    rejects(f.envelope(f.simple_manifest(), (OTHER, {"kid": kid})), "signature-invalid")


def test_unsigned_envelope() -> None:
    rejects(f.envelope(f.simple_manifest()), "no-authentication")


def test_bare_manifest_without_envelope() -> None:
    bare = cbor2.dumps(cbor2.CBORTag(1070, f.simple_manifest()))
    rejects(bare, "no-authentication")


def test_envelope_without_authentication_wrapper() -> None:
    rejects(cbor2.dumps(cbor2.CBORTag(107, {3: f.encode(f.simple_manifest())})), "no-authentication")


def test_attached_payload() -> None:
    rejects(f.envelope(f.simple_manifest(), (KEY, {"attach": True})), "cose-attached-payload")


def test_es256_header_with_only_an_ed25519_key() -> None:
    rejects(f.envelope(f.simple_manifest(), (KEY, {"alg": -7})), "key-mismatch", trust=f.trust(ED))


def test_ed25519_header_with_only_a_p256_key() -> None:
    rejects(f.envelope(f.simple_manifest(), ED), "key-mismatch", trust=TRUST)


def test_mac0_without_a_symmetric_key() -> None:
    rejects(f.envelope(f.simple_manifest(), f.HMAC_SECRET), "key-mismatch", trust=TRUST)


@pytest.mark.parametrize("alg", [-35, -36, -37, -47, 0, 5])
def test_unsupported_signature_algorithm(alg: int) -> None:
    rejects(f.envelope(f.simple_manifest(), (KEY, {"alg": alg})), "algorithm-unsupported")


def test_mac0_with_a_signature_algorithm() -> None:
    manifest = f.encode(f.simple_manifest())
    block = cbor2.dumps(cbor2.CBORTag(17, [cbor2.dumps({1: -7}), {}, None, b"\x00" * 32]))
    rejects(f.encode_envelope(f.wrapper(manifest, [block]), manifest), "algorithm-unsupported",
            trust=f.trust(KEY, mac=[f.HMAC_SECRET]))


def test_cose_sign_multi_signer_structure_is_unsupported() -> None:
    manifest = f.encode(f.simple_manifest())
    block = cbor2.dumps(cbor2.CBORTag(98, [b"", {}, None, []]))
    rejects(f.encode_envelope(f.wrapper(manifest, [block]), manifest), "cose-unsupported")


def test_sha384_manifest_digest_is_unsupported() -> None:
    manifest = f.encode(f.simple_manifest())
    digest = cbor2.dumps([-43, b"\x00" * 48])
    block = f.sign1_block(digest, KEY)
    rejects(f.encode_envelope(f.wrapper(manifest, [block], digest=digest), manifest), "digest-unsupported")


# --- accepted algorithms and keys ----------------------------------------------


@pytest.mark.parametrize("alg", [-7, -9])
def test_p256_algorithms(alg: int) -> None:
    result = accepts(f.envelope(f.simple_manifest(), (KEY, {"alg": alg})))
    assert result.manifest.authenticated_by[0].algorithm == {-7: "ES256", -9: "ESP256"}[alg]


@pytest.mark.parametrize("alg", [-8, -19])
def test_ed25519_algorithms(alg: int) -> None:
    result = accepts(f.envelope(f.simple_manifest(), (ED, {"alg": alg})), trust=f.trust(ED))
    assert result.manifest.authenticated_by[0].algorithm == {-8: "EdDSA", -19: "Ed25519"}[alg]


def test_mac0_with_the_right_key() -> None:
    result = accepts(f.envelope(f.simple_manifest(), f.HMAC_SECRET), trust=f.trust(mac=[f.HMAC_SECRET]))
    assert result.manifest.authenticated_by[0].kind == "COSE_Mac0"


def test_mac0_with_a_wrong_key() -> None:
    rejects(f.envelope(f.simple_manifest(), b"b" * 32), "signature-invalid", trust=f.trust(mac=[f.HMAC_SECRET]))


def test_key_rotation_either_trusted_key() -> None:
    rotated = f.trust(KEY, OTHER)
    for key in (KEY, OTHER):
        assert accepts(f.envelope(f.simple_manifest(), key), trust=rotated).manifest.sequence == 1
    rejects(f.envelope(f.simple_manifest(), ED), "key-mismatch", trust=rotated)


def test_first_signature_untrusted_second_trusted() -> None:
    result = accepts(f.envelope(f.simple_manifest(), OTHER, KEY))
    assert [b.signer for b in result.manifest.authenticated_by] == ["test key"]


def test_first_signature_broken_second_trusted() -> None:
    manifest = f.encode(f.simple_manifest())
    payload = f.manifest_digest(manifest)
    broken = f.sign1_block(payload, KEY, attach=True)
    wrapper = f.wrapper(manifest, [broken, b"\xff", f.sign1_block(payload, KEY)])
    assert accepts(f.encode_envelope(wrapper, manifest)).manifest.sequence == 1


def test_mixed_ed25519_and_p256_anchors() -> None:
    both = f.trust(ED, KEY)
    assert accepts(f.envelope(f.simple_manifest(), ED), trust=both)
    assert accepts(f.envelope(f.simple_manifest(), (KEY, {"alg": -7})), trust=both)


def test_published_draft_key_signs_like_the_examples() -> None:
    """The factory's signatures verify with the public key printed in the draft."""
    assert accepts(good(), trust=Trust(anchors=(f.draft_anchor(),)))


# --- device identity -----------------------------------------------------------


def test_wrong_vendor() -> None:
    body = f.manifest(shared=f.identity_checks(vendor=b"\x01" * 16), invoke=[f.INVOKE, f.REPORT])
    error = rejects(f.envelope(body, KEY), "vendor-mismatch", stage=authorize)
    assert "01010101-0101-0101-0101-010101010101" in str(error)


def test_wrong_class() -> None:
    body = f.manifest(shared=f.identity_checks(class_id=b"\x02" * 16), invoke=[f.INVOKE, f.REPORT])
    rejects(f.envelope(body, KEY), "class-mismatch", stage=authorize)


def test_device_with_other_class() -> None:
    other = DeviceIdentity(vendor_ids=(f.VENDOR_ID,), class_ids=(b"\x03" * 16,))
    rejects(good(), "class-mismatch", device=other)


def test_identity_condition_without_its_parameter() -> None:
    body = f.manifest(shared=[f.VENDOR, f.REPORT])
    rejects(f.envelope(body, KEY), "parameter-missing", stage=authorize)


# --- rollback --------------------------------------------------------------------


def test_rollback_lower_sequence() -> None:
    rejects(good(4), "rollback", rollback=RollbackState(5), stage=authorize)


def test_rollback_equal_sequence_other_manifest() -> None:
    installed = verify_envelope(good(5), TRUST)
    other = f.envelope(f.simple_manifest(5, uri="http://example.com/other.bin"), KEY)
    rejects(other, "rollback", rollback=RollbackState(5, installed.digest), stage=authorize)
    rejects(good(5), "rollback", rollback=RollbackState(5), stage=authorize)  # digest unknown


def test_rollback_equal_and_identical_manifest_is_accepted() -> None:
    data = good(5)
    installed = verify_envelope(data, TRUST)
    assert accepts(data, rollback=RollbackState(5, installed.digest)).manifest.sequence == 5
    # the same manifest signed again (ECDSA signatures differ) is still the same manifest
    assert accepts(good(5), rollback=RollbackState(5, installed.digest)).manifest.sequence == 5


def test_higher_sequence_is_accepted() -> None:
    assert accepts(good(6), rollback=RollbackState(5, b"\x00" * 32)).manifest.sequence == 6


def test_sequence_number_must_be_unsigned() -> None:
    body = f.simple_manifest()
    body[2] = -1
    rejects(f.envelope(body, KEY), "manifest-format")
    body[2] = True
    rejects(f.envelope(body, KEY), "manifest-format")


# --- envelope structure ------------------------------------------------------------


def test_truncation_at_every_offset() -> None:
    data = good()
    codes = set()
    for end in range(len(data)):
        with pytest.raises(ManifestError) as err:
            check(data[:end], TRUST, device=f.DEVICE)
        assert "\n" not in str(err.value)
        codes.add(err.value.code)
    assert codes == {"cbor-truncated"}


def test_trailing_bytes() -> None:
    rejects(good() + b"\x00", "cbor-trailing-bytes")
    rejects(good() + good(), "cbor-trailing-bytes")


def test_duplicate_manifest_key_in_envelope() -> None:
    blocks, manifest, _ = parts(good())
    wrapper = cbor2.dumps(blocks)
    evil = f.encode(f.simple_manifest(uri="http://example.com/evil.bin"))
    for second in (manifest, evil):
        data = (b"\xd8\x6b\xa3" + b"\x02" + cbor2.dumps(wrapper) + b"\x03" + cbor2.dumps(manifest)
                + b"\x03" + cbor2.dumps(second))
        rejects(data, "cbor-duplicate-key")


def test_duplicate_key_inside_the_signed_manifest() -> None:
    """A signed manifest that two parsers could read differently is refused after signing."""
    body = f.encode(f.simple_manifest(sequence=1))
    assert body[:1] == b"\xa6" and body[1:5] == b"\x01\x01\x02\x01"
    duplicated = b"\xa7" + body[1:] + b"\x02\x09"  # a second sequence-number
    rejects(f.envelope(duplicated, KEY), "cbor-duplicate-key")


def test_wrapper_after_manifest() -> None:
    blocks, manifest, _ = parts(good())
    data = cbor2.dumps(cbor2.CBORTag(107, {3: manifest, 2: cbor2.dumps(blocks)}))
    rejects(data, "envelope-format")


def test_wrong_envelope_tag() -> None:
    blocks, manifest, _ = parts(good())
    rejects(cbor2.dumps(cbor2.CBORTag(108, {2: cbor2.dumps(blocks), 3: manifest})), "envelope-format")


def test_envelope_is_not_a_map() -> None:
    rejects(cbor2.dumps(cbor2.CBORTag(107, [1, 2])), "envelope-format")
    rejects(cbor2.dumps(b"\x00"), "envelope-format")


def test_delegation_chain_is_unsupported() -> None:
    blocks, manifest, _ = parts(good())
    data = cbor2.dumps(cbor2.CBORTag(107, {1: b"", 2: cbor2.dumps(blocks), 3: manifest}))
    rejects(data, "unsupported-extension")


def test_manifest_version_2() -> None:
    rejects(f.envelope(f.manifest(version=2, invoke=[f.INVOKE, f.REPORT]), KEY), "manifest-version")


def test_manifest_version_true_is_not_1() -> None:
    rejects(f.envelope(f.manifest(version=True, invoke=[f.INVOKE, f.REPORT]), KEY), "manifest-version")


def test_manifest_is_not_a_map() -> None:
    rejects(f.envelope(cbor2.dumps([1, 2, 3]), KEY), "manifest-format")


# --- severable elements -------------------------------------------------------------


def severed_manifest() -> tuple[dict, dict[int, bytes]]:
    body = f.simple_manifest()
    body[23] = cbor2.dumps({1: "update for the test component"})
    return f.sever(body, 20, 23)


def test_severed_elements_that_match_are_used() -> None:
    body, severed = severed_manifest()
    result = accepts(f.envelope(body, KEY, severed=severed))
    assert result.manifest.severed == []
    assert result.manifest.text == {1: "update for the test component"}
    assert any(a["action"] == "fetch" for a in result.actions)


def test_severed_elements_left_out() -> None:
    body, _ = severed_manifest()
    result = accepts(f.envelope(body, KEY))
    assert result.manifest.severed == ["install", "text"]
    assert not any(a["sequence"] == "install" for a in result.actions)


@pytest.mark.parametrize("key", [20, 23])
def test_tampered_severable_element(key: int) -> None:
    body, severed = severed_manifest()
    severed[key] = severed[key].replace(b"file.bin", b"evil.bin").replace(b"test", b"evil")
    rejects(f.envelope(body, KEY, severed=severed), "severable-digest-mismatch")


def test_severable_element_the_manifest_does_not_expect() -> None:
    body = f.simple_manifest()
    rejects(f.envelope(body, KEY, severed={23: cbor2.dumps({1: "x"})}), "severable-unexpected")


# --- commands ------------------------------------------------------------------------


def test_unknown_command_in_install() -> None:
    body = f.manifest(install=[99, 0])
    assert authorize(f.envelope(body, KEY), TRUST, device=f.DEVICE)  # authentic, for this device
    rejects(f.envelope(body, KEY), "unsupported-command")


def test_unknown_command_in_shared() -> None:
    body = f.manifest(shared=f.identity_checks() + [34, [0, 1]])  # override-multiple (update-management)
    rejects(f.envelope(body, KEY), "unsupported-command", stage=authorize)


@pytest.mark.parametrize("command", [f.FETCH, f.WRITE, f.COPY, f.SWAP, f.INVOKE])
def test_command_not_allowed_in_shared(command: int) -> None:
    body = f.manifest(shared=f.identity_checks() + [f.OVERRIDE, {f.P_URI: "http://x/y"}, command, f.REPORT])
    rejects(f.envelope(body, KEY), "command-not-allowed", stage=authorize)


@pytest.mark.parametrize("param", [19, 28, 30, 99])
def test_extension_parameter(param: int) -> None:
    body = f.manifest(install=[f.OVERRIDE, {param: b"\x00"}])
    rejects(f.envelope(body, KEY), "unsupported-parameter")


def test_dependencies_in_common() -> None:
    body = f.manifest(common_extra={1: {0: {}}}, install=[f.INVOKE, f.REPORT])
    rejects(f.envelope(body, KEY), "unsupported-extension")


def test_command_sequence_of_odd_length() -> None:
    rejects(f.envelope(f.manifest(install=[f.INVOKE]), KEY), "sequence-format")


def test_multi_component_sequence_starting_with_a_list() -> None:
    """Found by fuzzing: an unhashable first element used to raise TypeError."""
    two = [[b"\x00"], [b"\x01"]]
    for first in ([1], {1: 2}):
        body = f.manifest(components=two, shared=[first, 0])
        rejects(f.envelope(body, KEY), "unsupported-command", stage=authorize)


# --- bounded execution ------------------------------------------------------------------


def nested_run_sequence(depth: int, innermost: bytes = f.seq()) -> bytes:
    sequence = innermost
    for _ in range(depth):
        sequence = f.seq(f.RUN_SEQUENCE, sequence)
    return sequence


def test_run_sequence_nested_50_deep() -> None:
    body = f.manifest(install=nested_run_sequence(50))
    rejects(f.envelope(body, KEY), "sequence-too-deep")
    body = f.manifest(shared=f.identity_checks() + list(cbor2.loads(nested_run_sequence(50))))
    rejects(f.envelope(body, KEY), "sequence-too-deep", stage=authorize)


def test_run_sequence_nesting_limit() -> None:
    assert accepts(f.envelope(f.manifest(install=nested_run_sequence(MAX_NESTING)), KEY))
    rejects(f.envelope(f.manifest(install=nested_run_sequence(MAX_NESTING + 1)), KEY), "sequence-too-deep")


def test_try_each_nested_too_deep() -> None:
    sequence = f.seq(f.ABORT, f.REPORT)
    for _ in range(MAX_NESTING + 2):
        sequence = f.seq(f.TRY_EACH, [sequence, None])
    rejects(f.envelope(f.manifest(install=sequence), KEY), "sequence-too-deep")


COMPONENTS = [[bytes([i])] for i in range(10)]
ALL = [f.SET_INDEX, True]
SHARED_ALL = ALL + f.identity_checks()


def test_run_sequence_fan_out_exceeds_the_budget() -> None:
    sequence = f.seq(*ALL, f.VENDOR, f.REPORT)
    for _ in range(5):  # 10 ** 5 vendor checks
        sequence = f.seq(*ALL, f.RUN_SEQUENCE, sequence)
    body = f.manifest(components=COMPONENTS, shared=SHARED_ALL, validate=sequence)
    started = time.monotonic()
    rejects(f.envelope(body, KEY), "too-many-commands")
    assert time.monotonic() - started < 5


def test_try_each_fan_out_exceeds_the_budget() -> None:
    sequence = f.seq(f.ABORT, f.REPORT)
    for _ in range(7):  # 10 components, two alternatives each, seven levels
        sequence = f.seq(*ALL, f.TRY_EACH, [sequence, sequence, None])
    body = f.manifest(components=COMPONENTS, shared=SHARED_ALL + [f.TRY_EACH, [sequence, None]])
    started = time.monotonic()
    rejects(f.envelope(body, KEY), "too-many-commands", stage=authorize)
    assert time.monotonic() - started < 5


def test_one_command_on_many_components_counts_once_per_component() -> None:
    """12,true then N commands runs N x components commands: the budget must see that."""
    many = [[] for _ in range(20_000)]
    shared = [*ALL, f.OVERRIDE, {f.P_VENDOR: f.VENDOR_ID}] + [f.VENDOR, f.REPORT] * 8_000
    body = f.manifest(components=many, shared=shared)
    started = time.monotonic()
    rejects(f.envelope(body, KEY), "too-many-commands", stage=authorize)
    assert time.monotonic() - started < 5


def test_try_each_on_many_components_is_quick() -> None:
    """A failed alternative is undone without copying the parameters of every component."""
    many = [[] for _ in range(20_000)]
    body = f.manifest(components=many, shared=[*ALL, f.TRY_EACH, [f.seq(f.ABORT, f.REPORT), None]])
    started = time.monotonic()
    rejects(f.envelope(body, KEY), "too-many-commands", stage=authorize)
    assert time.monotonic() - started < 5


def test_override_with_many_parameters_counts_each() -> None:
    many = [[] for _ in range(5_000)]
    private = {-(i + 1): 0 for i in range(5_000)}  # negative (private) parameters are stored
    body = f.manifest(components=many, shared=[*ALL, f.OVERRIDE, private])
    rejects(f.envelope(body, KEY), "too-many-commands", stage=authorize)


def test_large_value_repeated_per_component_is_shared() -> None:
    """A nested sequence run for each component is decoded once: its values are not copied."""
    import tracemalloc

    many = [[] for _ in range(3_000)]
    nested = f.seq(f.OVERRIDE, {-1: b"\x00" * 40_000})
    body = f.manifest(components=many, shared=[*ALL, f.RUN_SEQUENCE, nested])
    data = f.envelope(body, KEY)
    tracemalloc.start()
    try:
        authorize(data, TRUST, device=f.DEVICE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_repeated_actions_share_their_texts() -> None:
    """The dry run records each action; long component ids and invoke-args are not copied each time."""
    import tracemalloc

    long_id = [[b"\x01" * 20_000]]
    invoke = [f.OVERRIDE, {23: b"\x02" * 20_000}] + [f.INVOKE, f.REPORT] * 4_000
    body = f.manifest(components=long_id, invoke=invoke)
    data = f.envelope(body, KEY)
    tracemalloc.start()
    try:
        result = check(data, TRUST, device=f.DEVICE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(result.actions) == 4_000
    assert peak < 16 * 1024 * 1024


def test_many_distinct_payloads_are_listed_quickly() -> None:
    install: list = [f.OVERRIDE, {f.P_URI: "http://example.com/file.bin"}]
    for size in range(3_000):
        install += [f.OVERRIDE, {f.P_SIZE: size}, f.FETCH, f.REPORT]
    body = f.manifest(install=install)
    result = accepts(f.envelope(body, KEY))
    started = time.monotonic()
    assert len(result.payloads) == 3_000
    assert time.monotonic() - started < 2


def test_budget_is_not_hit_by_ordinary_manifests() -> None:
    assert MAX_COMMANDS >= 10_000
    components = [[bytes([i])] for i in range(8)]
    validate = [*ALL] + [f.IMAGE_MATCH, f.REPORT] * 100
    body = f.manifest(components=components, shared=SHARED_ALL + [f.OVERRIDE, {f.P_DIGEST: f.digest_bstr(f.IMAGE)}],
                      validate=validate)
    assert len(accepts(f.envelope(body, KEY)).actions) == 8 * 100


@pytest.mark.parametrize("alg", ["es256", "ed25519"])
def test_a_plain_public_key_loads_as_the_general_loader_loads_it(tmp_path, alg: str) -> None:
    """Trust anchors of the usual shape are read without cryptography's serialization module:
    the same key and key id as the general loader, which reads every other shape."""
    from cryptography.hazmat.primitives import serialization
    private = cose.generate_private_key(alg)
    pem = cose.public_key_pem(private.public_key())
    (tmp_path / "plain.pem").write_bytes(b"\n" + pem + b"\n")
    (tmp_path / "private.pem").write_bytes(cose.private_key_pem(private))
    (tmp_path / "key.der").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert cose._plain_public_key(pem) is not None
    assert cose._plain_public_key(cose.private_key_pem(private)) is None
    anchors = [cose.load_trust_anchor(tmp_path / name) for name in ("plain.pem", "private.pem", "key.der")]
    assert {a.kid for a in anchors} == {cose.key_id(private.public_key())}
    assert {a.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            for a in anchors} == {(tmp_path / "key.der").read_bytes()}


def test_a_plain_public_key_off_the_curve_is_refused(tmp_path) -> None:
    import base64

    from agent.errors import KeyFileError
    pem = cose.public_key_pem(cose.generate_private_key("es256").public_key())
    der = bytearray(base64.b64decode(b"".join(pem.split(b"\n")[1:-2])))
    der[-1] ^= 1                                   # the point is no longer on P-256
    bad = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(bytes(der)) + b"-----END PUBLIC KEY-----\n"
    (tmp_path / "bad.pem").write_bytes(bad)
    assert cose._plain_public_key(bad) is None
    with pytest.raises(KeyFileError):
        cose.load_trust_anchor(tmp_path / "bad.pem")
