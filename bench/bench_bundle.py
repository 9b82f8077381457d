"""How fast and how small bundle verification is. Not a test: run it by hand.

    uv run python bench/bench_bundle.py [--size 1G] [--formats crc,newc] [--dir /var/tmp]

In a temporary directory it writes a payload of ``--size`` random bytes and a
signed manifest for it, makes a bundle of each cpio format, and then, side by
side on the same file (page cache warm, best of ``--repeat``):

* ``openssl dgst -sha256`` over the whole bundle, and
* ``verify_bundle`` (signature, dry run, then every payload's SHA-256 and,
  for "crc", its cpio checksum).

It then runs ``verify_bundle`` in a fresh child process for a 64 MiB and a
``--size`` payload and reads the child's peak RSS (VmHWM), once after the
imports and once after the verification: the second must not grow with the
payload. Targets: ours/openssl >= 0.9, peak RSS < 40 MiB. Prints markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from agent.bundle.reader import verify_bundle
from agent.bundle.writer import create_bundle
from agent.manifest.cose import load_trust_anchor, public_key_pem, sign1
from agent.manifest.envelope import encode_envelope
from agent.manifest.verify import Trust

MiB = 1 << 20
UNITS = {"K": 1 << 10, "M": MiB, "G": 1 << 30}

CHILD = """
import sys
from pathlib import Path
from agent.bundle.reader import verify_bundle
from agent.manifest.cose import load_trust_anchor
from agent.manifest.verify import Trust

def peak_kib():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])

trust = Trust(anchors=(load_trust_anchor(Path(sys.argv[2])),))
imported = peak_kib()
verify_bundle(Path(sys.argv[1]), trust)
print(imported, peak_kib())
"""


def idle_percent(seconds: float = 1.0) -> float:
    """How idle the CPUs were over ``seconds``: the crc checksum runs on a second core."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)
    idle, total = sample()
    time.sleep(seconds)
    idle2, total2 = sample()
    return 100 * (idle2 - idle) / max(1, total2 - total)


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


def write_payload(path: Path, size: int) -> bytes:
    """Random bytes (random per MiB: nothing compresses or repeats); returns their SHA-256."""
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        for start in range(0, size, MiB):
            block = os.urandom(min(MiB, size - start))
            sha.update(block)
            f.write(block)
    return sha.digest()


def signed_envelope(key: ec.EllipticCurvePrivateKey, name: str, digest: bytes, size: int) -> bytes:
    """One component, installed from the bundled ``#name`` and checked against digest and size."""
    image = {3: cbor2.dumps([-16, digest]), 14: size}
    install = cbor2.dumps([20, {21: "#" + name, **image}, 21, 2, 3, 15])
    common = cbor2.dumps({2: [[b"rootfs"]], 4: cbor2.dumps([20, image])})
    manifest = cbor2.dumps({1: 1, 2: 1, 3: common, 20: install})
    manifest_digest = cbor2.dumps([-16, hashlib.sha256(cbor2.dumps(manifest)).digest()])
    wrapper = cbor2.dumps([manifest_digest, cbor2.dumps(sign1(manifest_digest, key))])
    return encode_envelope(wrapper, manifest)


def make_bundle(work: Path, key: ec.EllipticCurvePrivateKey, size: int, fmt: str,
                digests: dict[int, bytes]) -> Path:
    """The bundle of a ``size``-byte payload, written once and shared by both formats."""
    payload = work / f"payload-{size}"
    if size not in digests:
        digests[size] = write_payload(payload, size)
    out = work / f"bundle-{size}.{fmt}"
    envelope = signed_envelope(key, "rootfs.img", digests[size], size)
    create_bundle(out, envelope, [("rootfs.img", payload)], "1.0.0", fmt=fmt)
    return out


def best_seconds(run, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(bundle: Path, trust: Trust, repeat: int) -> tuple[float, float]:
    """MiB/s of openssl and of verify_bundle over the same bundle file."""
    openssl = ["openssl", "dgst", "-sha256", str(bundle)]
    subprocess.run(openssl, check=True, capture_output=True)     # warm the page cache
    size = bundle.stat().st_size / MiB
    theirs = best_seconds(lambda: subprocess.run(openssl, check=True, capture_output=True), repeat)
    ours = best_seconds(lambda: verify_bundle(bundle, trust), repeat)
    return size / theirs, size / ours


def peak_rss(bundle: Path, public_key: Path) -> tuple[float, float]:
    """Peak RSS in MiB of a child after its imports, and after verifying ``bundle``."""
    run = subprocess.run([sys.executable, "-c", CHILD, str(bundle), str(public_key)],
                         check=True, capture_output=True, text=True)
    imported, verified = run.stdout.split()
    return int(imported) / 1024, int(verified) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="payload size (default 1G)")
    parser.add_argument("--small", type=parse_size, default=64 * MiB,
                        help="the other payload size for the memory check (default 64M)")
    parser.add_argument("--formats", default="crc,newc", help="cpio formats to time (default crc,newc)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each, best kept")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        sys.exit("openssl is not installed")
    key = ec.generate_private_key(ec.SECP256R1())
    idle = idle_percent()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-bundle-") as name:
        work = Path(name)
        public_key = work / "key.pub"
        public_key.write_bytes(public_key_pem(key.public_key()))
        trust = Trust(anchors=(load_trust_anchor(public_key),))
        digests: dict[int, bytes] = {}
        print(f"## Bundle verification, {args.size / MiB:g} MiB payload\n")
        print("| cpio format | openssl dgst -sha256 | verify_bundle | ours / openssl |")
        print("|---|---:|---:|---:|")
        for fmt in args.formats.split(","):
            bundle = make_bundle(work, key, args.size, fmt, digests)
            theirs, ours = throughput(bundle, trust, args.repeat)
            print(f"| {fmt} | {theirs:.0f} MiB/s | {ours:.0f} MiB/s | {ours / theirs:.2f}x |", flush=True)
            if fmt != "crc":
                bundle.unlink()
        print("\n| payload | peak RSS after imports | peak RSS after verify_bundle |")
        print("|---:|---:|---:|")
        for size in (args.small, args.size):
            bundle = work / f"bundle-{size}.crc"
            if not bundle.exists():
                bundle = make_bundle(work, key, size, "crc", digests)
            imported, verified = peak_rss(bundle, public_key)
            print(f"| {size / MiB:g} MiB | {imported:.1f} MiB | {verified:.1f} MiB |", flush=True)
        print(f"\nTargets: ours / openssl >= 0.9x; peak RSS < 40 MiB and flat. {os.cpu_count()} CPU(s), "
              f"{idle:.0f}% idle before the run (the crc sum runs on a second core), "
              f"Python {sys.version.split()[0]}.")


if __name__ == "__main__":
    main()
