"""`fwagent install` from a file and from a URL, side by side with the physical baselines.

Not a timed test. The fwagent part of ``../shared/tools/peers-bench.sh`` (which
adds RAUC, SWUpdate and Mender; run it as root with
``FWAGENT=.venv/bin/fwagent``), reproduced here so the project measures itself:
a random image of each ``--sizes`` (MiB), its signed bundle (ES256, newc cpio),
file-backed slots zero-filled and synced before every run, the source warm in
the page cache, ``--no-reboot`` (verify, mark-bad, write, switch), and nginx on
loopback. Side by side, in one run, medians of ``--runs``:

* baselines: ``cat image > slot``, ``openssl dgst -sha256 image``, and
  ``curl -s URL | tee slot | openssl dgst -sha256``;
* fwagent from the bundle file, and streamed from its URL;

with wall and CPU time (user + system of the children), fwagent's peak RSS
(VmHWM), how much the state directory grew during the HTTP install, and the
ratios the targets are stated in: local wall against ``cat`` + ``openssl``,
HTTP wall and CPU against ``curl | tee | openssl``. Last, a cut: a proxy ends
the first GET after a quarter of the bundle; the Range request that resumes it
and the bytes fetched beyond the bundle's size.

Run: uv run python bench/bench_stream.py [--sizes 256,4095] [--runs 3]
(4095: a cpio member holds less than 4 GiB.)
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_install import WITH_RSS, byte_compile, write_image  # noqa: E402
from httpfaults import Cut, FaultProxy, nginx_server, require_nginx  # noqa: E402
from measure import Run, measure  # noqa: E402

VENDOR, CLASS = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe", "1492af14-2569-5e48-bf42-9b2d51f2ab45"
CONFIG = """\
[device]
id = "bench"
vendor_id = "{vendor}"
class_id = "{klass}"
state_dir = "{root}/state"
[trust]
keys = ["{root}/rel.pub.pem"]
[bootloader]
type = "file"
env_file = "{root}/bootenv"
cmdline = "{root}/cmdline"
reboot = ["true"]
[slots.rootfs.A]
device = "{root}/fw-A.img"
[slots.rootfs.B]
device = "{root}/fw-B.img"
"""


class Site:
    """The image, its bundle served by nginx, a gateway's slots and configuration."""

    def __init__(self, root: Path, size_mib: int) -> None:
        self.root, self.size = root, size_mib << 20
        self.image, self.www = root / "rootfs.img", root / "www"
        self.www.mkdir()
        write_image(self.image, self.size)
        (root / "spec.toml").write_text(f'sequence = 7\nvendor_id = "{VENDOR}"\nclass_id = "{CLASS}"\n'
                                        f'[[component]]\nid = ["rootfs"]\nfile = "{self.image}"\n'
                                        'uri = "#rootfs.img"\n')
        self.bundle = self.www / "update.fwb"
        for command in (["manifest", "keygen", "--alg", "es256", "--out", str(root / "rel.pem")],
                        ["manifest", "create", str(root / "spec.toml"), "--out", str(root / "m.suit")],
                        ["manifest", "sign", str(root / "m.suit"), "--key", str(root / "rel.pem"),
                         "--out", str(root / "s.suit")],
                        ["bundle", "create", "--manifest", str(root / "s.suit"), "--version", "2.0.0",
                         str(self.image), "--out", str(self.bundle)]):
            subprocess.run([sys.executable, "-m", "agent", *command], check=True, capture_output=True, cwd=ROOT)
        os.link(self.image, self.www / "rootfs.img")
        slot_size = self.size + self.size // 8 + (4 << 20)
        for name in ("fw-A.img", "fw-B.img", "base.img"):
            with open(root / name, "wb") as slot:
                slot.truncate(slot_size)
        (root / "cmdline").write_text("fwagent.slot=A\n")
        self.config = root / "agent.toml"
        self.config.write_text(CONFIG.format(vendor=VENDOR, klass=CLASS, root=root))

    def zero(self, slot: str) -> None:
        """As the script does before each run: the slot rewritten with zeros and synced."""
        subprocess.run(["dd", "if=/dev/zero", f"of={self.root / slot}", "bs=1M", f"count={self.size >> 20}",
                        "conv=notrunc,fsync", "status=none"], check=True)

    def reset(self) -> None:
        subprocess.run(["rm", "-rf", str(self.root / "state"), str(self.root / "bootenv")], check=True)
        self.zero("fw-B.img")

    def warm(self, path: Path) -> None:
        subprocess.run(["cat", str(path)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["sync"], check=True)

    def install(self, source: str) -> tuple[Run, float, int]:
        """fwagent's run, its peak RSS (MiB), and the state directory's size after it (bytes)."""
        run = measure([sys.executable, "-c", WITH_RSS, "install", source, "--no-reboot", "--config",
                       str(self.config)], cwd=ROOT)
        state = sum(p.stat().st_size for p in (self.root / "state").rglob("*") if p.is_file())
        with open(self.root / "fw-B.img", "rb") as slot, open(self.image, "rb") as image:
            for _ in range(self.size >> 20):
                assert slot.read(1 << 20) == image.read(1 << 20), "the slot does not hold the image"
        return run, int(run.stderr.strip().splitlines()[-1]) / 1024, state


def run_size(size_mib: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        site = Site(Path(tmp), size_mib)
        with nginx_server(site.www, Path(tmp) / "nginx") as server:
            url = f"{server.url}/update.fwb"
            rows: dict[str, list[tuple[float, float, float]]] = {}

            def add(name: str, run: Run, rss: float = 0.0) -> None:
                rows.setdefault(name, []).append((run.wall, run.cpu, rss))

            grew = 0
            for _ in range(runs):              # alternate, so that every case sees the same machine
                site.zero("base.img")
                site.warm(site.image)
                add("baseline: cat image > slot", measure(["sh", "-c", f"cat '{site.image}' > '{site.root}/base.img'"]))
                add("baseline: openssl dgst -sha256", measure(["openssl", "dgst", "-sha256", str(site.image)]))
                site.zero("base.img")
                add("baseline: curl | tee slot | openssl dgst",
                    measure(["sh", "-c", f"set -e; curl -sS '{server.url}/rootfs.img' | tee '{site.root}/base.img' "
                                         "| openssl dgst -sha256 >/dev/null"]))
                site.reset()
                site.warm(site.bundle)
                run, rss, _ = site.install(str(site.bundle))
                add("fwagent, local", run, rss)
                site.reset()
                site.warm(site.bundle)
                run, rss, state = site.install(url)
                add("fwagent, HTTP streamed", run, rss)
                grew = max(grew, state)
            median = {name: [statistics.median(column) for column in zip(*values)] for name, values in rows.items()}
            peak = {name: max(v[2] for v in values) for name, values in rows.items()}
            print(f"\n{size_mib} MiB image, medians of {runs}\n")
            print("| case | wall s | CPU s | peak RSS MiB |")
            print("|---|---:|---:|---:|")
            for name, (wall, cpu, _) in median.items():
                rss = f"{peak[name]:.1f}" if peak[name] else "-"
                print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rss} |")
            base = median["baseline: cat image > slot"][0] + median["baseline: openssl dgst -sha256"][0]
            local, http = median["fwagent, local"], median["fwagent, HTTP streamed"]
            curl = median["baseline: curl | tee slot | openssl dgst"]
            print(f"\nlocal wall / (cat + openssl): {local[0] / base:.2f}x (target at most 1.2x)")
            print(f"HTTP wall / curl|tee|openssl: {http[0] / curl[0]:.2f}x; CPU: {http[1] / curl[1]:.2f}x")
            print(f"peak RSS: local {peak['fwagent, local']:.1f} MiB, HTTP {peak['fwagent, HTTP streamed']:.1f} MiB "
                  "(target at most 30)")
            print(f"state directory after the HTTP install: {grew} bytes (target under 1 MiB of growth)")
            cut(site, server.port)


def cut(site: Site, port: int) -> None:
    size = site.bundle.stat().st_size
    site.reset()
    with FaultProxy(port, [Cut(size // 4)]) as proxy:
        site.install(f"{proxy.url}/update.fwb")
    ranges = [r.headers.get("Range") for r in proxy.requests]
    print(f"cut after a quarter: GETs {len(ranges)}, ranges {ranges}, "
          f"fetched beyond the bundle: {proxy.bytes_served - size} bytes (target at most 1 MiB)")


def main() -> None:
    require_nginx()
    byte_compile()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256", help="image sizes in MiB, comma-separated (at most 4095)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        run_size(size, args.runs)


if __name__ == "__main__":
    main()
