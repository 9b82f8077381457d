"""Manifest verification time: the IETF examples and a 64-component manifest.

Not a timed test. For each manifest, in one run and side by side:

* baseline: the cryptographic floor, SHA-256 of the manifest bstr plus one
  signature verification with `cryptography`;
* authorize: strict decoding, digest, signature, anti-rollback, shared sequence;
* check: authorize plus the dry run of every sequence (what `verify` does).

Times are medians of repeated runs; ratios are against the baseline.
Run: uv run python bench/bench_verify.py
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cbor2  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402

from agent.manifest import cbor, cose  # noqa: E402
from agent.manifest.check import authorize, check  # noqa: E402
from agent.manifest.envelope import parse_envelope  # noqa: E402
from agent.manifest.processor import DeviceIdentity  # noqa: E402
from agent.manifest.sign import add_signature  # noqa: E402
from agent.manifest.spec import ComponentSpec, ManifestSpec, build_manifest, unsigned_envelope  # noqa: E402
from agent.manifest.verify import Trust  # noqa: E402

VECTORS = ROOT / "tests" / "vectors" / "ietf-manifest-spec"
VENDOR = uuid.UUID("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe")
CLASS = uuid.UUID("1492af14-2569-5e48-bf42-9b2d51f2ab45")


def median_us(func, repeat: int) -> float:
    func()  # warm up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def baseline(data: bytes, key: ec.EllipticCurvePublicKey):
    """SHA-256 of the manifest bstr and one ECDSA verification: nothing less is possible."""
    envelope = parse_envelope(data)
    wrapper = cbor.decode(envelope.authentication)
    block = cbor.decode(wrapper[1]).value
    to_sign = cbor2.dumps(["Signature1", block[0], b"", wrapper[0]])
    signature = block[3]
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    manifest_encoded = envelope.manifest_encoded

    def run() -> None:
        hashlib.sha256(manifest_encoded).digest()
        key.verify(der, to_sign, ec.ECDSA(hashes.SHA256()))
    return run


def many_components(count: int, workdir: Path) -> tuple[bytes, cose.TrustAnchor]:
    key = cose.generate_private_key("es256")
    components = []
    for number in range(count):
        image = workdir / f"mcu{number}.bin"
        image.write_bytes(bytes([number]) * 1024)
        components.append(ComponentSpec(id=("thing", f"mcu{number}"), file=image, uri=f"#mcu{number}.bin"))
    spec = ManifestSpec(sequence=1, vendor_id=VENDOR, class_id=CLASS, components=tuple(components))
    signed = add_signature(unsigned_envelope(build_manifest(spec)), key)
    return signed, cose.TrustAnchor(key.public_key(), cose.key_id(key.public_key()), "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    device = DeviceIdentity((VENDOR.bytes,), (CLASS.bytes,))
    draft = cose.load_trust_anchor(VECTORS / "public_key.pem")
    cases = [(f"IETF {p.stem.split('.')[0]}", p.read_bytes(), draft)
             for p in sorted(VECTORS.glob("example*.signed.cbor"))]
    with tempfile.TemporaryDirectory() as tmp:
        data, anchor = many_components(64, Path(tmp))
        cases.append(("64 components", data, anchor))
    print("| manifest | bytes | baseline us | authorize us | check us | authorize/baseline | check/baseline |")
    print("|---|---|---|---|---|---|---|")
    for name, data, anchor in cases:
        trust = Trust((anchor,))
        base = median_us(baseline(data, anchor.key), args.repeat)
        auth = median_us(lambda: authorize(data, trust, device=device), args.repeat)
        full = median_us(lambda: check(data, trust, device=device), args.repeat)
        print(f"| {name} | {len(data)} | {base:.0f} | {auth:.0f} | {full:.0f} | "
              f"{auth / base:.2f}x | {full / base:.2f}x |")


if __name__ == "__main__":
    main()
