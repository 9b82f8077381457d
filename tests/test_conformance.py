"""Published SUIT vectors give the outcomes listed in tests/vectors/expected.toml.

``authorize`` (authentic, rollback policy, shared sequence) must give the
outcome the vectors' index states; ``check`` adds the dry run of the update
and invoke procedures, where extension drafts fwagent does not implement are
a clean rejection and the IETF examples produce the plan their text describes.
"""

from __future__ import annotations

import hashlib
import tomllib
import uuid
from pathlib import Path

import pytest

from agent.errors import ManifestError
from agent.manifest import cose
from agent.manifest.check import CheckResult, authorize, check
from agent.manifest.processor import DeviceIdentity
from agent.manifest.verify import Trust

VECTORS = Path(__file__).resolve().parent / "vectors"
EXPECTED = tomllib.loads((VECTORS / "expected.toml").read_text())
DEVICE_CONFIG = EXPECTED["device"]
DEVICE = DeviceIdentity(vendor_ids=(uuid.UUID(DEVICE_CONFIG["vendor_id"]).bytes,),
                        class_ids=(uuid.UUID(DEVICE_CONFIG["class_id"]).bytes,))
TRUST = Trust(anchors=(cose.load_trust_anchor(VECTORS / DEVICE_CONFIG["trust_anchor"]),),
              mac_keys=(cose.MacKey(DEVICE_CONFIG["hmac_key"].encode(), "libcsuit hmac"),))
CASES = {v["file"]: v for v in EXPECTED["vector"]}
EXTENSION_CODES = {"unsupported-parameter", "unsupported-extension", "unsupported-command"}


def load(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def checked(name: str) -> CheckResult:
    return check(load(name), TRUST, device=DEVICE)


def test_every_vector_file_is_listed() -> None:
    on_disk = {str(p.relative_to(VECTORS)) for pattern in ("*/*.cbor", "*/*.suit")
               for p in VECTORS.glob(pattern)}
    assert on_disk == set(CASES)
    assert len(CASES) == 41  # 13 IETF + 22 libcsuit + 6 zcbor


@pytest.mark.parametrize("name", sorted(CASES))
def test_bytes_are_the_published_ones(name: str) -> None:
    assert hashlib.sha256(load(name)).hexdigest().startswith(CASES[name]["sha256_prefix"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_authorize_outcome(name: str) -> None:
    case = CASES[name]
    if case["authorize"] == "accept":
        manifest = authorize(load(name), TRUST, device=DEVICE)
        assert manifest.sequence == case["sequence"]
        assert manifest.ignored_members == case.get("ignored_members", [])
        assert manifest.severed == case.get("severed", [])
        assert manifest.authenticated_by, "accepted without a verified block"
    else:
        with pytest.raises(ManifestError) as err:
            authorize(load(name), TRUST, device=DEVICE)
        assert err.value.code == case["code"]
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_outcome(name: str) -> None:
    case = CASES[name]
    outcome = case.get("check", case["authorize"])
    code = case.get("check_code", case.get("code"))
    if outcome == "accept":
        result = checked(name)
        assert result.manifest.sequence == case["sequence"]
    else:
        with pytest.raises(ManifestError) as err:
            checked(name)
        assert err.value.code == code
        assert "\n" not in str(err.value)


def test_extension_vectors_are_clean_rejections() -> None:
    """Encryption, dependencies and update management: authentic, but not executable here."""
    extensions = [n for n, c in CASES.items() if n.startswith("libcsuit/")
                  and c["authorize"] == "accept" and c.get("check") == "reject"]
    assert {Path(n).stem.removeprefix("suit_manifest_") for n in extensions} == {
        "expAF", "expAFS", "expAW", "expEW", "expED", "expS2", "expS3", "expU0", "expU1", "expU3"}
    for name in extensions:
        with pytest.raises(ManifestError) as err:
            checked(name)
        assert err.value.code in EXTENSION_CODES, name


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("ietf-manifest-spec/")
                                  and CASES[n]["authorize"] == "accept"])
def test_ietf_examples_are_accepted_by_check(name: str) -> None:
    result = checked(name)
    assert result.actions


@pytest.mark.parametrize("name", ["ietf-manifest-spec/example2.severed-signed.cbor",
                                  "libcsuit/suit_manifest_exp2A.suit"])
def test_severed_example_2(name: str) -> None:
    result = checked(name)
    assert result.manifest.severed == ["install", "text"]
    assert "the install sequence is severed: the envelope does not carry it" in result.notes
    assert not [a for a in result.actions if a["sequence"] == "install"]
    assert [a["action"] for a in result.actions if a["sequence"] == "invoke"] == ["invoke"]


def test_full_example_2_runs_its_install() -> None:
    result = checked("ietf-manifest-spec/example2.signed.cbor")
    assert result.manifest.severed == []
    assert result.manifest.text is not None
    fetches = [a for a in result.actions if a["action"] == "fetch"]
    assert [a["uri"] for a in fetches] == ["http://example.com/very/long/path/to/file/file.bin"]


@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("zcbor-draft20-legacy/")])
def test_legacy_key_17_is_never_install(name: str) -> None:
    result = checked(name)
    if name.endswith("ex0.cbor"):  # example 0 has no install sequence at all
        assert result.manifest.ignored_members == []
    else:
        assert 17 in result.manifest.ignored_members
        assert "manifest members of other drafts are ignored: 17" in result.notes
    assert "install" not in result.manifest.sequences
    assert not [a for a in result.actions if a["sequence"] == "install"]


EX_DIGEST = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210"
EX_DIGEST_2 = "0123456789abcdeffedcba987654321000112233445566778899aabbccddeeff"


def _plan(result: CheckResult) -> list[tuple]:
    return [(a["sequence"], a["action"], a["component"], a.get("uri"), a.get("digest"), a.get("size"))
            for a in result.actions]


def test_example_1_fetches_then_matches() -> None:
    result = checked("ietf-manifest-spec/example1.signed.cbor")
    assert _plan(result) == [
        ("install", "fetch", "[h'00']", "http://example.com/file.bin", EX_DIGEST, 34768),
        ("install", "check-image", "[h'00']", None, EX_DIGEST, 34768),
        ("validate", "check-image", "[h'00']", None, EX_DIGEST, 34768),
    ]
    (payload,) = result.payloads
    assert payload.uri == "http://example.com/file.bin"
    assert payload.digest == bytes.fromhex(EX_DIGEST) and payload.size == 34768
    assert payload.component == (b"\x00",)


def test_example_3_try_each_picks_slot_0() -> None:
    result = checked("ietf-manifest-spec/example3.signed.cbor")
    fetches = [a for a in result.actions if a["action"] == "fetch"]
    assert [(a["uri"], a["digest"], a["size"]) for a in fetches] == [
        ("http://example.com/file1.bin", EX_DIGEST, 34768)]
    assert any("slot 0 is assumed" in n for n in result.notes)


def test_example_3_slot_1_takes_the_other_image() -> None:
    result = check(load("ietf-manifest-spec/example3.signed.cbor"), TRUST, device=DEVICE, slot=1)
    fetches = [a for a in result.actions if a["action"] == "fetch"]
    assert [(a["uri"], a["digest"], a["size"]) for a in fetches] == [
        ("http://example.com/file2.bin", EX_DIGEST_2, 76834)]


def test_example_5_two_components() -> None:
    result = checked("ietf-manifest-spec/example5.signed.cbor")
    assert result.manifest.components == [(b"\x00",), (b"\x01",)]
    install = [p for p in _plan(result) if p[0] == "install"]
    assert install == [
        ("install", "fetch", "[h'00']", "http://example.com/file1.bin", EX_DIGEST, 34768),
        ("install", "check-image", "[h'00']", None, EX_DIGEST, 34768),
        ("install", "fetch", "[h'01']", "http://example.com/file2.bin", EX_DIGEST_2, 76834),
        ("install", "check-image", "[h'01']", None, EX_DIGEST_2, 76834),
    ]
    invoke = [p for p in _plan(result) if p[0] == "invoke"]
    assert invoke == [("invoke", "invoke", "[h'00']", None, None, None)]
    assert [(p.component, p.uri) for p in result.payloads] == [
        ((b"\x00",), "http://example.com/file1.bin"), ((b"\x01",), "http://example.com/file2.bin")]


def test_example_4_loads_from_external_storage() -> None:
    result = checked("ietf-manifest-spec/example4.signed.cbor")
    assert len(result.manifest.components) == 3
    steps = [(a["sequence"], a["action"]) for a in result.actions]
    assert steps[:2] == [("payload-fetch", "fetch"), ("payload-fetch", "check-image")]
    assert ("install", "copy") in steps and ("load", "copy") in steps
    assert steps[-1] == ("invoke", "invoke")


def test_example_0_secure_boot_only() -> None:
    result = checked("ietf-manifest-spec/example0.signed.cbor")
    # validate runs in both procedures: after an update and before each boot
    assert [(a["sequence"], a["action"]) for a in result.actions] == [
        ("validate", "check-image"), ("validate", "check-image"), ("invoke", "invoke")]


def test_ietf_and_libcsuit_copies_of_one_example_agree() -> None:
    """libcsuit re-signed the draft-34 examples with ESP256: same manifests, same plans."""
    for ietf, libcsuit in (("example1.signed.cbor", "suit_manifest_exp1.suit"),
                           ("example3.signed.cbor", "suit_manifest_exp3.suit"),
                           ("example5.signed.cbor", "suit_manifest_exp5.suit")):
        a, b = checked(f"ietf-manifest-spec/{ietf}"), checked(f"libcsuit/{libcsuit}")
        assert a.manifest.digest == b.manifest.digest
        assert a.actions == b.actions


def test_mac0_vectors_need_the_hmac_key() -> None:
    no_mac = Trust(anchors=TRUST.anchors)
    with pytest.raises(ManifestError) as err:
        authorize(load("libcsuit/suit_manifest_expAW.suit"), no_mac, device=DEVICE)
    assert err.value.code == "key-mismatch"
    wrong = Trust(anchors=TRUST.anchors, mac_keys=(cose.MacKey(b"b" * 32, "wrong"),))
    with pytest.raises(ManifestError) as err:
        authorize(load("libcsuit/suit_manifest_expAW.suit"), wrong, device=DEVICE)
    assert err.value.code == "signature-invalid"


def test_signed_vectors_need_the_draft_key() -> None:
    other = cose.generate_private_key("es256")
    untrusted = Trust(anchors=(cose.TrustAnchor(other.public_key(), cose.key_id(other.public_key()), "other"),))
    with pytest.raises(ManifestError) as err:
        authorize(load("ietf-manifest-spec/example1.signed.cbor"), untrusted, device=DEVICE)
    assert err.value.code == "signature-invalid"  # the draft examples carry no kid


def test_other_device_identity_is_refused() -> None:
    other = DeviceIdentity(vendor_ids=DEVICE.vendor_ids, class_ids=(uuid.uuid4().bytes,))
    with pytest.raises(ManifestError) as err:
        authorize(load("ietf-manifest-spec/example1.signed.cbor"), TRUST, device=other)
    assert err.value.code == "class-mismatch"
