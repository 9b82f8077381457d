"""The strict CBOR decoder: what it reads, and every construct it refuses."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import CborError, ManifestError
from agent.manifest.cbor import Limits, Tag, decode, encoded_bstr_header


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


VALID = [
    # unsigned integers at every width boundary
    ("00", 0),
    ("17", 23),
    ("18 18", 24),
    ("18 ff", 255),
    ("19 0100", 256),
    ("19 ffff", 65535),
    ("1a 00010000", 65536),
    ("1a ffffffff", 2**32 - 1),
    ("1b 0000000100000000", 2**32),
    ("1b ffffffffffffffff", 2**64 - 1),
    # negative integers
    ("20", -1),
    ("37", -24),
    ("38 18", -25),
    ("38 ff", -256),
    ("39 0100", -257),
    ("39 ffff", -65536),
    ("3a 00010000", -65537),
    ("3a ffffffff", -(2**32)),
    ("3b 0000000100000000", -(2**32) - 1),
    ("3b ffffffffffffffff", -(2**64)),
    # byte and text strings
    ("40", b""),
    ("43 010203", b"\x01\x02\x03"),
    ("57" + "00" * 23, b"\x00" * 23),
    ("58 18" + "ab" * 24, b"\xab" * 24),
    ("59 0100" + "00" * 256, b"\x00" * 256),
    ("60", ""),
    ("64 49455446", "IETF"),
    ("62 c3bc", "\u00fc"),
    ("64 f0908591", "\U00010151"),
    ("78 18" + "61" * 24, "a" * 24),
    # arrays and maps
    ("80", []),
    ("83 010203", [1, 2, 3]),
    ("82 01 82 02 03", [1, [2, 3]]),
    ("98 19" + "01" * 25, [1] * 25),
    ("a0", {}),
    ("a2 01 02 03 04", {1: 2, 3: 4}),
    ("a2 61 61 01 61 62 82 02 03", {"a": 1, "b": [2, 3]}),
    ("a1 20 40", {-1: b""}),
    ("a1 41 00 f6", {b"\x00": None}),
    ("a1 82 01 61 78 f5", {(1, "x"): True}),  # array keys become tuples (SUIT text)
    ("a2 02 00 01 00", {2: 0, 1: 0}),  # key order is not enforced
    # tags
    ("c1 1a 514b67b0", Tag(1, 1363896240)),
    ("d8 6b a0", Tag(107, {})),
    ("d9 042e a0", Tag(1070, {})),
    ("d2 84 40 a0 f6 40", Tag(18, [b"", {}, None, b""])),
    ("da 00010000 00", Tag(65536, 0)),
    # simple values
    ("f4", False),
    ("f5", True),
    ("f6", None),
]


@pytest.mark.parametrize("hexed, value", VALID, ids=[v[0] for v in VALID])
def test_valid_item(hexed: str, value: object) -> None:
    decoded = decode(h(hexed))
    assert decoded == value
    assert type(decoded) is type(value)


def test_bool_is_not_int() -> None:
    assert decode(h("f5")) is True
    assert decode(h("01")) == 1 and decode(h("01")) is not True


def test_accepts_bytearray_and_memoryview() -> None:
    assert decode(bytearray(h("83 010203"))) == [1, 2, 3]
    assert decode(memoryview(h("43 010203"))) == b"\x01\x02\x03"


def test_refuses_non_bytes() -> None:
    with pytest.raises(CborError):
        decode("00")  # type: ignore[arg-type]


REJECTED = [
    # trailing bytes after one complete item
    ("00 00", "cbor-trailing-bytes"),
    ("80 ff", "cbor-trailing-bytes"),
    ("a0 a0", "cbor-trailing-bytes"),
    # duplicate map keys
    ("a2 01 00 01 00", "cbor-duplicate-key"),
    ("a2 61 61 00 61 61 01", "cbor-duplicate-key"),
    ("a2 41 00 00 41 00 01", "cbor-duplicate-key"),
    ("a2 82 01 02 00 82 01 02 00", "cbor-duplicate-key"),
    ("a1 00 a2 03 00 03 01", "cbor-duplicate-key"),  # in a nested map
    # non-minimal integers, at each width
    ("18 00", "cbor-non-minimal"),
    ("18 17", "cbor-non-minimal"),
    ("19 0000", "cbor-non-minimal"),
    ("19 00ff", "cbor-non-minimal"),
    ("1a 00000000", "cbor-non-minimal"),
    ("1a 0000ffff", "cbor-non-minimal"),
    ("1b 0000000000000000", "cbor-non-minimal"),
    ("1b 00000000ffffffff", "cbor-non-minimal"),
    ("38 17", "cbor-non-minimal"),
    ("39 00ff", "cbor-non-minimal"),
    ("3a 0000ffff", "cbor-non-minimal"),
    ("3b 00000000ffffffff", "cbor-non-minimal"),
    # non-minimal lengths
    ("58 00", "cbor-non-minimal"),
    ("58 01 00", "cbor-non-minimal"),
    ("59 0017" + "00" * 23, "cbor-non-minimal"),
    ("78 03 616263", "cbor-non-minimal"),
    ("98 01 00", "cbor-non-minimal"),
    ("99 0001 00", "cbor-non-minimal"),
    ("9a 00000001 00", "cbor-non-minimal"),
    ("b8 01 00 00", "cbor-non-minimal"),
    ("b9 0001 00 00", "cbor-non-minimal"),
    # non-minimal tags
    ("d8 12 80", "cbor-non-minimal"),
    ("d9 006b a0", "cbor-non-minimal"),
    ("da 0000006b a0", "cbor-non-minimal"),
    ("db 000000000000006b a0", "cbor-non-minimal"),
    # indefinite lengths and the break code
    ("5f 41 00 ff", "cbor-malformed"),
    ("7f 61 61 ff", "cbor-malformed"),
    ("9f 01 ff", "cbor-malformed"),
    ("bf 01 02 ff", "cbor-malformed"),
    ("ff", "cbor-malformed"),
    ("1f", "cbor-malformed"),
    ("df 00", "cbor-malformed"),
    # floating point (half, single, double)
    ("f9 3c00", "cbor-malformed"),
    ("fa 3f800000", "cbor-malformed"),
    ("fb 3ff0000000000000", "cbor-malformed"),
    ("81 f9 0000", "cbor-malformed"),
    # reserved additional information 28-30, in every major type
    ("1c", "cbor-malformed"),
    ("1d", "cbor-malformed"),
    ("1e", "cbor-malformed"),
    ("3c", "cbor-malformed"),
    ("5d", "cbor-malformed"),
    ("7e", "cbor-malformed"),
    ("9c", "cbor-malformed"),
    ("bd", "cbor-malformed"),
    ("de 00", "cbor-malformed"),
    ("fc", "cbor-malformed"),
    # other simple values: unassigned, and the two-byte form
    ("e0", "cbor-malformed"),
    ("f7", "cbor-malformed"),  # undefined
    ("f8 20", "cbor-malformed"),
    ("f8 f5", "cbor-malformed"),
    # truncated header
    ("", "cbor-truncated"),
    ("18", "cbor-truncated"),
    ("19 01", "cbor-truncated"),
    ("1a 000100", "cbor-truncated"),
    ("1b 00000001000000", "cbor-truncated"),
    ("d8", "cbor-truncated"),
    ("f8", "cbor-truncated"),
    # truncated body
    ("43 0102", "cbor-truncated"),
    ("64 4945", "cbor-truncated"),
    ("59 0100 00", "cbor-truncated"),
    ("82 01", "cbor-truncated"),
    ("a1 01", "cbor-truncated"),
    ("d8 6b", "cbor-truncated"),
    ("82 01 43 00", "cbor-truncated"),
    # a container counting more items than bytes remain
    ("9b 0000000100000000", "cbor-truncated"),
    ("9b ffffffffffffffff 00", "cbor-truncated"),
    ("bb ffffffffffffffff 00", "cbor-truncated"),
    ("9a ffffffff" + "00" * 8, "cbor-truncated"),
    ("b9 ffff" + "00" * 100, "cbor-truncated"),
    ("5b ffffffffffffffff 00", "cbor-truncated"),
    ("7b ffffffffffffffff 00", "cbor-truncated"),
    # invalid UTF-8
    ("61 ff", "cbor-malformed"),
    ("62 c328", "cbor-malformed"),
    ("63 eda080", "cbor-malformed"),  # a UTF-16 surrogate
    ("62 c0af", "cbor-malformed"),  # overlong
    ("a1 61 80 00", "cbor-malformed"),  # in a map key
    # map keys that are not int, str, bstr or arrays of them
    ("a1 a0 00", "cbor-malformed"),
    ("a1 c1 00 00", "cbor-malformed"),
    ("a1 f6 00", "cbor-malformed"),
    ("a1 81 f5 00", "cbor-malformed"),
]


@pytest.mark.parametrize("hexed, code", REJECTED, ids=[r[0] or "empty" for r in REJECTED])
def test_rejected(hexed: str, code: str) -> None:
    with pytest.raises(CborError) as err:
        decode(h(hexed))
    assert err.value.code == code
    assert isinstance(err.value, ManifestError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)


def test_one_and_true_cannot_collide_as_keys() -> None:
    """1 == True in Python: a map with both must not quietly lose one. Bool keys are refused."""
    for hexed in ("a2 01 00 f5 01", "a2 f5 00 01 01"):
        with pytest.raises(CborError) as err:
            decode(h(hexed))
        assert err.value.code == "cbor-malformed"
        assert "map key must be an integer, a string or an array of them" in str(err.value)


def test_duplicate_key_names_the_offset() -> None:
    with pytest.raises(CborError) as err:
        decode(h("a2 01 00 01 00"), what="envelope")
    assert str(err.value) == "envelope: duplicate map key 1 at offset 3"


def test_error_names_what_and_offset() -> None:
    with pytest.raises(CborError) as err:
        decode(h("82 01 19 0001"), what="manifest")
    assert str(err.value).startswith("manifest: non-minimal encoding")
    assert str(err.value).endswith("at offset 2")


def _nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


def test_depth_limit() -> None:
    assert decode(_nested(32)) is not None  # the innermost item sits at depth 32
    with pytest.raises(CborError) as err:
        decode(_nested(33))
    assert err.value.code == "cbor-too-deep"
    assert decode(_nested(4), limits=Limits(max_depth=4)) == [[[[0]]]]
    with pytest.raises(CborError) as err:
        decode(_nested(5), limits=Limits(max_depth=4))
    assert err.value.code == "cbor-too-deep"


def test_depth_limit_counts_maps_and_tags() -> None:
    with pytest.raises(CborError) as err:
        decode(b"\xa1\x00" * 3 + b"\x00", limits=Limits(max_depth=2))
    assert err.value.code == "cbor-too-deep"
    with pytest.raises(CborError) as err:
        decode(b"\xc1" * 3 + b"\x00", limits=Limits(max_depth=2))
    assert err.value.code == "cbor-too-deep"


def test_very_deep_input_is_a_clean_error() -> None:
    with pytest.raises(CborError) as err:
        decode(b"\x81" * 60_000 + b"\x00")
    assert err.value.code == "cbor-too-deep"


def test_size_limit_before_anything_is_read() -> None:
    big = cbor2.dumps(b"\x00" * 100)
    assert decode(big, limits=Limits(max_size=len(big))) == b"\x00" * 100
    with pytest.raises(CborError) as err:
        decode(big, limits=Limits(max_size=len(big) - 1))
    assert err.value.code == "cbor-too-large"
    with pytest.raises(CborError) as err:
        decode(b"\xff" * (64 * 1024 + 1))  # the default limit is 64 KiB; nothing is parsed
    assert err.value.code == "cbor-too-large"


def test_encoded_bstr_header() -> None:
    for length in (0, 23, 24, 255, 256, 65535, 65536):
        assert encoded_bstr_header(length) == cbor2.dumps(b"\x00" * length)[:-length or None]


# --- property: whatever cbor2 writes canonically, the strict decoder reads back ---

scalars = (st.integers(min_value=-(2**64), max_value=2**64 - 1) | st.binary(max_size=64)
           | st.text(max_size=32) | st.booleans() | st.none())
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.integers(-(2**64), 2**64 - 1) | st.text(max_size=8), children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip_of_canonical_cbor(value: object) -> None:
    assert decode(cbor2.dumps(value, canonical=True), limits=Limits(max_depth=64)) == value


@settings(max_examples=200, deadline=None)
@given(values)
def test_round_trip_of_cbor2_default_encoding(value: object) -> None:
    """cbor2's default encoder also writes preferred serialisation; only key order differs."""
    assert decode(cbor2.dumps(value), limits=Limits(max_depth=64)) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    try:
        decode(data)
    except CborError as err:
        assert err.code.startswith("cbor-")
