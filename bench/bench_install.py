"""A/B install throughput: a bundle from a local file into a file-backed slot.

Not a timed test. For each image size, side by side in one run:

* baseline: ``cat image > slot && sync`` then ``openssl dgst -sha256 image``;
* fwagent: ``fwagent install bundle`` on a simulated gateway (file bootloader,
  simulated reboot, health ``true``): manifest verified, payload streamed into
  the slot while hashed, fsynced, checked, switched, committed.

The code is byte-compiled first, as it is on a device (Debian packages and
pip install .pyc files; uv and PYTHONDONTWRITEBYTECODE=1 do not), so that
start-up is not spent compiling sources.

Wall and CPU time (user + system of the child processes), medians of three
alternating runs, and the peak RSS of the fwagent process; ratios against the
baseline.
Run: uv run python bench/bench_install.py [--sizes 256,1024]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEAT = 3
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from install_bench import make_gateway  # noqa: E402
from measure import measure  # noqa: E402


# Runs one fwagent command and reports its own peak RSS (KiB) on the last line of stderr.
# VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts at its parent's RSS at fork.
WITH_RSS = ("import sys; from agent.cli import main; code = main(sys.argv[1:]); "
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
            "print(hwm.split()[1], file=sys.stderr); sys.exit(code)")


def write_image(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        for _ in range(size >> 20):
            out.write(block)


def run_size(size_mib: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        root = Path(tmp)
        gateway = make_gateway(root)
        size = size_mib << 20
        for name in ("rootfs-a.img", "rootfs-b.img"):
            with open(root / name, "wb") as f:
                f.truncate(size)
        image = root / "image.img"
        write_image(image, size)
        # The bundle, made by the device maker's tools (not measured).
        spec = root / "spec.toml"
        spec.write_text('sequence = 2\nvendor_domain = "example.com"\nclass_name = "gw-test"\n'
                        '[[component]]\nid = ["rootfs"]\nfile = "image.img"\nuri = "#image.img"\n')
        fw = [sys.executable, "-m", "agent"]
        subprocess.run([*fw, "manifest", "create", str(spec), "--out", str(root / "m.suit")], check=True,
                       capture_output=True)
        subprocess.run([*fw, "manifest", "sign", str(root / "m.suit"), "--key", str(root / "release.pem"),
                        "--out", str(root / "s.suit")], check=True, capture_output=True)
        subprocess.run([*fw, "bundle", "create", "--manifest", str(root / "s.suit"), "--version", "2",
                        str(image), "--out", str(root / "u.fwb")], check=True, capture_output=True)
        slot = root / "baseline-slot.img"
        runs = []
        for _ in range(REPEAT):           # alternate, so that both see the same machine
            slot.unlink(missing_ok=True)
            _reset(gateway)
            subprocess.run(["sync"], check=True)
            base = measure(["sh", "-c", f"cat '{image}' > '{slot}' && sync && openssl dgst -sha256 '{image}'"])
            subprocess.run(["sync"], check=True)
            ours = measure([sys.executable, "-c", WITH_RSS, "install", str(root / "u.fwb"), "--config",
                            str(gateway.config_path)], cwd=ROOT)
            assert gateway.booted() == "B", "the install did not commit"
            runs.append((base.wall, base.cpu, ours.wall, ours.cpu, int(ours.stderr.strip().splitlines()[-1]) / 1024))
        median = [statistics.median(column) for column in zip(*runs)]
        return {"size": size_mib, "base_wall": median[0], "base_cpu": median[1], "wall": median[2],
                "cpu": median[3], "rss": max(r[4] for r in runs)}


def _reset(gateway) -> None:  # type: ignore[no-untyped-def]
    """Back to a device booted from slot A with no update history."""
    for name in ("state/journal.json", "state/simulated-boot-id", "bootenv.json"):
        (gateway.root / name).unlink(missing_ok=True)
    (gateway.root / "cmdline").write_text("root=PARTLABEL=rootfs_A ro fwagent.slot=A\n")


def byte_compile() -> None:
    import compileall
    import site
    for directory in [ROOT / "agent", ROOT / "bootloader_bridge", *map(Path, site.getsitepackages())]:
        compileall.compile_dir(str(directory), quiet=1, workers=2)


def main() -> None:
    byte_compile()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024", help="image sizes in MiB, comma-separated")
    args = parser.parse_args()
    print("| image | baseline wall s | fwagent wall s | wall ratio | baseline CPU s | fwagent CPU s | "
          "CPU ratio | fwagent peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        r = run_size(size)
        print(f"| {size} MiB | {r['base_wall']:.2f} | {r['wall']:.2f} | {r['wall'] / r['base_wall']:.2f}x | "
              f"{r['base_cpu']:.2f} | {r['cpu']:.2f} | {r['cpu'] / r['base_cpu']:.2f}x | {r['rss']:.1f} |")


if __name__ == "__main__":
    main()
