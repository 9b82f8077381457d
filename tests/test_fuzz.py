"""Fuzzing ``check``: whatever the bytes, the answer is acceptance or a ManifestError.

Inputs are valid envelopes (the IETF signed examples and envelopes from the
factory) mutated at the byte level (bit flips, inserts, deletes, truncation,
splices) and at the CBOR level (a value anywhere in the decoded structure,
bstr-wrapped CBOR included, replaced, removed or duplicated and the whole
re-encoded), optionally re-signed with the trusted test key so that the
mutation reaches the manifest reader and the command processor. Random bytes
and random CBOR are fed in too. No input may raise anything but a
ManifestError, run longer than the deadline, or allocate more than 16 MiB.

The default run does a few hundred cases per test; ``--slow`` runs
``test_mutated_envelopes_slow`` with 10,000.
"""

from __future__ import annotations

import signal
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import suit_factory as f
from agent.errors import FwagentError, ManifestError
from agent.manifest import cbor
from agent.manifest.check import check

KEY = f.draft_private_key()
TRUST = f.trust(f.draft_anchor(), mac=[f.HMAC_SECRET])
MEMORY_LIMIT = 16 * 1024 * 1024
HARD_TIME_LIMIT = 20  # seconds; a hang fails the test instead of blocking the run
DEADLINE = timedelta(seconds=2)

SETTINGS = dict(deadline=DEADLINE, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                          HealthCheck.filter_too_much])


def _seeds() -> list[bytes]:
    ietf = [(f.IETF / f"example{n}.signed.cbor").read_bytes() for n in range(6)]
    ietf.append((f.IETF / "example2.severed-signed.cbor").read_bytes())
    two = [[b"\x00"], [b"\x01"]]
    slots = [f.TRY_EACH, [f.seq(f.OVERRIDE, {f.P_SLOT: 0}, f.SLOT, f.REPORT, f.OVERRIDE, {f.P_URI: "http://a/0"}),
                          f.seq(f.OVERRIDE, {f.P_SLOT: 1}, f.SLOT, f.REPORT, f.OVERRIDE, {f.P_URI: "http://a/1"}),
                          None]]
    multi = f.manifest(7, components=two,
                       shared=[f.SET_INDEX, True] + f.identity_checks()
                       + [f.OVERRIDE, {f.P_DIGEST: f.digest_bstr(f.IMAGE), f.P_SIZE: len(f.IMAGE)}],
                       install=[f.SET_INDEX, [0, 1], *slots, f.FETCH, f.REPORT,
                                f.RUN_SEQUENCE, f.seq(f.IMAGE_MATCH, f.REPORT)],
                       validate=[f.SET_INDEX, True, f.IMAGE_MATCH, f.REPORT],
                       load=[f.SET_INDEX, 1, f.OVERRIDE, {f.P_SOURCE: 0}, f.COPY, f.REPORT],
                       invoke=[f.SET_INDEX, 1, f.OVERRIDE, {23: b"args"}, f.INVOKE, f.REPORT])
    severed_body = f.simple_manifest(3)
    severed_body[23] = cbor2.dumps({1: "text", (b"\x00",): {1: "vendor"}})
    severed_body, severed = f.sever(severed_body, 20, 23)
    return ietf + [
        f.envelope(f.simple_manifest(), KEY),
        f.envelope(multi, KEY),
        f.envelope(severed_body, KEY, severed=severed, integrated={"#image": f.IMAGE[:16]}),
        f.envelope(f.simple_manifest(2), f.HMAC_SECRET),
    ]


SEEDS = _seeds()


class Hang(BaseException):
    """Raised by the alarm: an input took longer than HARD_TIME_LIMIT."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"check() ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_clean(data: bytes) -> str:
    """Run check(); return "accept" or the rejection code. Anything else fails the test."""
    tracemalloc.start()
    try:
        with time_limit(HARD_TIME_LIMIT):
            try:
                check(data, TRUST, device=f.DEVICE)
                outcome = "accept"
            except FwagentError as err:
                assert isinstance(err, ManifestError), f"{type(err).__name__} is not a ManifestError"
                assert err.code and "\n" not in str(err), repr(err)
                outcome = err.code
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"check() allocated {peak} bytes at its peak"
    return outcome


def test_seeds_are_accepted() -> None:
    for seed in SEEDS:
        assert assert_clean(seed) == "accept"


# --- byte-level mutations ----------------------------------------------------------


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "replace", "truncate", "splice", "splice-other"]))
        n = len(out)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if kind == "flip" and n:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and n:
            del out[pos:pos + draw(st.integers(1, 4))]
        elif kind == "replace" and n:
            out[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del out[pos:]
        elif kind in ("splice", "splice-other"):
            source = bytes(out) if kind == "splice" else draw(st.sampled_from(SEEDS))
            start = draw(st.integers(0, len(source)))
            piece = source[start:start + draw(st.integers(0, 64))]
            end = pos + draw(st.integers(0, 16))
            out[pos:end] = piece
    return bytes(out)


# --- CBOR-level mutations ----------------------------------------------------------


@dataclass
class Nested:
    """A bstr holding encoded CBOR (``bstr .cbor``), decoded for mutation."""

    value: Any


def explode(value: Any) -> Any:
    """The strict decoder's output as a tree cbor2 can write back, bstr .cbor opened up."""
    if isinstance(value, cbor.Tag):
        return cbor2.CBORTag(value.number, explode(value.value))
    if isinstance(value, list):
        return [explode(v) for v in value]
    if isinstance(value, dict):
        return {k: explode(v) for k, v in value.items()}
    if isinstance(value, bytes) and value[:1] and value[0] >> 5 in (4, 5, 6):
        try:
            return Nested(explode(cbor.decode(value)))
        except ManifestError:
            return value
    return value


def implode(value: Any) -> Any:
    if isinstance(value, Nested):
        return cbor2.dumps(implode(value.value))
    if isinstance(value, cbor2.CBORTag):
        return cbor2.CBORTag(value.tag, implode(value.value))
    if isinstance(value, list):
        return [implode(v) for v in value]
    if isinstance(value, dict):
        return {k: implode(v) for k, v in value.items()}
    return value


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, Nested):
        yield from paths(value.value, prefix + ("nested",))
    elif isinstance(value, cbor2.CBORTag):
        yield from paths(value.value, prefix + ("tag",))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (("key", k),))


def get(value: Any, path: tuple) -> Any:
    for step in path:
        if step == "nested":
            value = value.value
        elif step == "tag":
            value = value.value
        elif isinstance(step, tuple):
            value = value[step[1]]
        else:
            value = value[step]
    return value


def put(value: Any, path: tuple, new: Any, *, delete: bool = False) -> Any:
    """A copy of ``value`` with the node at ``path`` replaced (or removed from its container)."""
    if not path:
        return new
    step, rest = path[0], path[1:]
    if step == "nested":
        return Nested(put(value.value, rest, new, delete=delete))
    if step == "tag":
        return cbor2.CBORTag(value.tag, put(value.value, rest, new, delete=delete))
    if isinstance(step, tuple):
        copy = dict(value)
        if delete and not rest:
            del copy[step[1]]
        else:
            copy[step[1]] = put(value[step[1]], rest, new, delete=delete)
        return copy
    copy = list(value)
    if delete and not rest:
        del copy[step]
    else:
        copy[step] = put(value[step], rest, new, delete=delete)
    return copy


INTERESTING_INTS = [0, 1, 2, 3, 5, 12, 14, 15, 20, 21, 23, 24, 32, 34, 255, 256, 65535, 65536,
                    2**32 - 1, 2**32, 2**63, 2**64 - 1, -1, -7, -8, -9, -16, -19, -24, -25, -256, -(2**64)]

small_values = st.deferred(lambda: st.one_of(
    st.sampled_from(INTERESTING_INTS),
    st.integers(-40, 40),
    st.integers(-(2**64), 2**64 - 1),
    st.binary(max_size=40),
    st.sampled_from([f.VENDOR_ID, f.CLASS_ID, b"\x00", b""]),
    st.text(max_size=20),
    st.sampled_from([None, True, False, "#image", "http://example.com/x"]),
    st.lists(st.integers(-30, 40), max_size=6),
    st.dictionaries(st.integers(-30, 40), st.integers(0, 40) | st.binary(max_size=8), max_size=4),
    st.builds(lambda c, a: Nested([c, a]), st.integers(0, 40), st.integers(0, 20) | st.booleans()),
))


MANIFEST_PATH = ("tag", ("key", 3), "nested")


@st.composite
def cbor_mutation(draw: st.DrawFn, data: bytes, in_manifest: bool = False) -> bytes:
    """Mutate anywhere, or (``in_manifest``) only inside the manifest, when it decodes."""
    tree = explode(cbor.decode(data))
    for _ in range(draw(st.integers(1, 3))):
        candidates = list(paths(tree))
        if in_manifest:
            candidates = [p for p in candidates if p[:3] == MANIFEST_PATH and len(p) > 3] or candidates
        path = draw(st.sampled_from(candidates))
        node = get(tree, path)
        kind = draw(st.sampled_from(["replace", "delete", "duplicate", "insert", "tweak"]))
        parent = get(tree, path[:-1]) if path else None
        if kind == "delete" and isinstance(parent, (list, dict)):
            tree = put(tree, path, None, delete=True)
        elif kind == "duplicate" and isinstance(parent, list):
            copy = list(parent)
            copy.insert(path[-1], node)
            tree = put(tree, path[:-1], copy)
        elif kind == "insert" and isinstance(node, list):
            copy = list(node)
            copy.insert(draw(st.integers(0, len(copy))), draw(small_values))
            tree = put(tree, path, copy)
        elif kind == "insert" and isinstance(node, dict):
            copy = dict(node)
            copy[draw(st.integers(-30, 40))] = draw(small_values)
            tree = put(tree, path, copy)
        elif kind == "tweak" and isinstance(node, int) and not isinstance(node, bool):
            tree = put(tree, path, node + draw(st.sampled_from([-1, 1, 2**8, 2**32])))
        elif kind == "tweak" and isinstance(node, bytes) and node:
            i = draw(st.integers(0, len(node) - 1))
            tree = put(tree, path, node[:i] + bytes([node[i] ^ 0xFF]) + node[i + 1:])
        else:
            tree = put(tree, path, draw(small_values))
    return cbor2.dumps(implode(tree))


def _envelope(data: bytes) -> tuple[int | None, dict] | None:
    """(tag, map) of an envelope-shaped input, or None."""
    try:
        item = cbor.decode(data)
    except ManifestError:
        return None
    tag = item.number if isinstance(item, cbor.Tag) else None
    body = item.value if tag is not None else item
    if not isinstance(body, dict) or not isinstance(body.get(3), bytes):
        return None
    return tag, {k: implode(explode(v)) for k, v in body.items()}


def _rebuild(tag: int | None, body: dict) -> bytes:
    return cbor2.dumps(body if tag is None else cbor2.CBORTag(tag, body))


def resign(data: bytes) -> bytes:
    """Give a mutated envelope a fresh digest and signature by the trusted key, when it has a manifest."""
    parsed = _envelope(data)
    if parsed is None:
        return data
    tag, body = parsed
    manifest = body[3]
    wrapper = f.wrapper(manifest, [f.sign1_block(f.manifest_digest(manifest), KEY, kid=False)])
    return _rebuild(tag, {2: wrapper, 3: manifest, **{k: v for k, v in body.items() if k not in (2, 3)}})


@st.composite
def mutated_manifest_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte-level mutation of the manifest bstr alone (to be signed again)."""
    parsed = _envelope(data)
    if parsed is None:
        return data
    tag, body = parsed
    return _rebuild(tag, {**body, 3: draw(byte_mutation(body[3]))})


@st.composite
def mutated_envelope(draw: st.DrawFn) -> bytes:
    seed = draw(st.sampled_from(SEEDS))
    how = draw(st.sampled_from(["bytes", "cbor", "manifest-cbor+sign", "manifest-cbor+sign", "manifest-cbor+sign",
                                "manifest-bytes+sign", "cbor+manifest-bytes+sign"]))
    data = seed
    if "cbor" in how:
        data = draw(cbor_mutation(data, in_manifest=how.startswith("manifest")))
    if how == "bytes":
        data = draw(byte_mutation(data))
    if "manifest-bytes" in how:
        data = draw(mutated_manifest_bytes(data))
    if how.endswith("sign"):
        data = resign(data)
    return data


@settings(max_examples=400, **SETTINGS)
@given(mutated_envelope())
def test_mutated_envelopes(data: bytes) -> None:
    assert_clean(data)


# --- random input ----------------------------------------------------------------------


@settings(max_examples=300, **SETTINGS)
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    assert_clean(data)


@settings(max_examples=300, **SETTINGS)
@given(st.binary(max_size=256))
def test_random_bytes_behind_an_envelope_tag(data: bytes) -> None:
    assert_clean(b"\xd8\x6b" + data)
    assert_clean(b"\xd8\x6b\xa2\x02" + data)


cbor_values = st.recursive(
    st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=24) | st.text(max_size=12) | st.booleans() | st.none(),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.integers(-30, 30) | st.text(max_size=4), children, max_size=6),
        st.builds(cbor2.CBORTag, st.sampled_from([107, 1070, 17, 18, 98, 112, 1, 55799]), children),
        st.builds(cbor2.dumps, children),  # bstr .cbor
    ),
    max_leaves=30,
)


@settings(max_examples=300, **SETTINGS)
@given(cbor_values)
def test_random_cbor(value: Any) -> None:
    assert_clean(cbor2.dumps(value))


@settings(max_examples=300, **SETTINGS)
@given(cbor_values, cbor_values)
def test_random_cbor_in_envelope_shape(wrapper: Any, manifest: Any) -> None:
    assert_clean(cbor2.dumps(cbor2.CBORTag(107, {2: cbor2.dumps(wrapper), 3: cbor2.dumps(manifest)})))


@settings(max_examples=300, **SETTINGS)
@given(st.dictionaries(st.integers(-5, 30), cbor_values, max_size=8))
def test_random_signed_manifest(members: dict) -> None:
    """Arbitrary manifest members behind a valid signature reach the manifest reader."""
    body = {1: 1, 2: 1, 3: cbor2.dumps({2: [[b"\x00"]]})}
    body.update(members)
    assert_clean(f.envelope(cbor2.dumps(body), KEY))


KNOWN_PARAMETERS = [f.P_VENDOR, f.P_CLASS, f.P_DIGEST, f.P_SLOT, 12, f.P_SOFT_FAILURE, f.P_SIZE, f.P_CONTENT,
                    f.P_URI, f.P_SOURCE, 23, 24, 25, -1]
parameter_values = st.one_of(
    st.integers(0, 3), st.integers(0, 2**32), st.booleans(), st.binary(max_size=33), st.text(max_size=8),
    st.sampled_from([f.VENDOR_ID, f.CLASS_ID, f.digest_bstr(f.IMAGE), "http://a/b", "#image"]))
command_pairs = st.one_of(
    st.tuples(st.sampled_from([1, 2, 3, 5, 6, 14, 24, 18, 21, 22, 23, 31]), st.sampled_from([0, 2, 15])),
    st.tuples(st.just(f.SET_INDEX), st.integers(0, 3) | st.just(True) | st.lists(st.integers(0, 3), max_size=3)),
    st.tuples(st.just(f.OVERRIDE), st.dictionaries(st.sampled_from(KNOWN_PARAMETERS), parameter_values, max_size=4)),
    st.tuples(st.sampled_from([f.TRY_EACH, f.RUN_SEQUENCE]), st.none()),  # filled in by command_sequence
    st.tuples(st.integers(0, 40), st.one_of(  # anything at all
        st.integers(0, 20), st.booleans(), st.none(), st.binary(max_size=8),
        st.lists(st.integers(0, 3), max_size=3),
        st.dictionaries(st.integers(-3, 30), parameter_values, max_size=4))),
)
commands = st.lists(command_pairs, max_size=8)


@st.composite
def command_sequence(draw: st.DrawFn, depth: int = 0, components: int = 1) -> bytes:
    flat: list[Any] = []
    if components > 1 and draw(st.integers(0, 9)):  # usually start by selecting, as §6.2 asks
        flat += [f.SET_INDEX, draw(st.just(True) | st.integers(0, components - 1))]
    for command, argument in draw(commands):
        if command in (f.TRY_EACH, f.RUN_SEQUENCE) and argument is None:
            nested = ([draw(command_sequence(depth + 1)) for _ in range(draw(st.integers(1, 2)))]
                      if depth < 2 else [f.seq()])
            argument = nested if command == f.TRY_EACH else nested[0]
            if command == f.TRY_EACH and draw(st.booleans()):
                argument.append(None)
        flat += [command, argument]
    return f.seq(*flat)


@st.composite
def signed_command_sequences(draw: st.DrawFn) -> bytes:
    """An envelope signed by the trusted key whose sequences are random commands."""
    components = draw(st.integers(1, 3))
    shared = draw(command_sequence(components=components))
    if draw(st.booleans()):  # most real manifests check their identity first
        prefix = [f.SET_INDEX, True] if components > 1 else []
        shared = f.seq(*prefix, *f.identity_checks(), *cbor.decode(shared)[len(prefix):])
    body = f.manifest(components=[[bytes([i])] for i in range(components)], shared=shared,
                      install=draw(command_sequence(components=components)),
                      validate=draw(command_sequence(components=components)),
                      invoke=draw(command_sequence(components=components)))
    return f.envelope(body, KEY)


@settings(max_examples=300, **SETTINGS)
@given(signed_command_sequences())
def test_random_signed_command_sequences(data: bytes) -> None:
    """Random commands behind a valid signature reach the processor."""
    assert_clean(data)


# --- the long run ------------------------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=10_000, **SETTINGS)
@given(st.data())
def test_mutated_envelopes_slow(data: st.DataObject) -> None:
    """10,000 cases: mostly mutated envelopes, some random signed command sequences."""
    kind = data.draw(st.sampled_from(["mutated"] * 3 + ["commands"]))
    assert_clean(data.draw(mutated_envelope() if kind == "mutated" else signed_command_sequences()))
