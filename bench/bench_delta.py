"""`fwagent install` by delta on a pair of ext4 images, beside zchunk, casync and xdelta3.

Not a timed test. A pair is two ext4 images (4 KiB blocks, ``mke2fs -d``, with
the UUID, hash seed, root owner and time pinned, so that an image depends on its
tree only) of two directory trees:

* ``--old-tree`` and ``--new-tree``;
* or the trees of two sets of Debian packages (``--old-debs DIR``,
  ``--new-debs DIR``: every ``*.deb`` in DIR extracted with ``dpkg-deb -x``;
  fetch them with ``apt-get download``);
* or ``--debian A`` / ``--debian B``, two pairs of Debian root file systems, built with
  mmdebstrap (as root, from ``--mirror``; 384 MiB images unless ``--size``):
  A: Debian 12 (bookworm) minbase with python3 -> the same with curl,
  openssh-client and less; B: A's new tree -> the same with
  bookworm-updates and bookworm-security (a typical security update);
* with none of these, this project's virtual environment (old) and the same
  with two packages removed and 40 files changed (new): a small but real
  file-system change.

Trees and images are cached under ``--cache`` (default
``~/.cache/fwagent-bench/delta``), never in the repository.

Every download goes through nginx on loopback and a proxy that relays each
answer at ``--rate`` bytes/s (default 2,000,000) and counts requests and body
bytes. For the pair:

* fwagent by delta and fetching the solid image: a file-backed gateway whose
  slot A holds the old image and slot B zeros, ``--no-reboot``;
* zchunk (``zck`` on both images, ``zckdl -s OLD.zck URL``, ``unzck``) and
  casync (``casync make`` into a store, ``casync extract --seed=OLD``), when
  installed;
* xdelta3: a ``-9`` patch made for the pair, fetched with curl and applied
  with ``xdelta3 -d -s OLD`` (a patch per pair of releases);
* sizes: zstd -19 of the new image, ``zstd --patch-from`` and ``xdelta3 -9``
  patches.

For each download: bytes, requests, the device's CPU (user + system of every
process) and peak RSS (of the largest process), wall time.

Run: uv run python bench/bench_delta.py [--old-tree D --new-tree D | --old-debs D --new-debs D | --debian A|B]
     [--size MIB]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_install import WITH_RSS, byte_compile  # noqa: E402
from measure import Run  # noqa: E402
from httpfaults import Drip, FaultProxy, nginx_server, require_nginx  # noqa: E402
from install_bench import make_gateway  # noqa: E402
from measure import measure  # noqa: E402

from agent.manifest import cose  # noqa: E402
from agent.manifest.sign import add_signature  # noqa: E402
from agent.manifest.spec import build_manifest, parse_spec, unsigned_envelope  # noqa: E402

SLACK = 1.25        # image size: the tree's size and a quarter, rounded up to 16 MiB
DEBIAN_SIZE = 384 << 20
FS_UUID = "5e1f0a6e-0d17-4c3a-9d2b-6c1e2f3a4b5c"      # the same in every image, as a release build pins it
FS_TIME = "1700000000"                                 # mke2fs's clock, and SOURCE_DATE_EPOCH of the trees
DEBIAN_EXTRA = ("curl", "openssh-client", "less")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", type=Path)
    parser.add_argument("--new-tree", type=Path)
    parser.add_argument("--old-debs", type=Path)
    parser.add_argument("--new-debs", type=Path)
    parser.add_argument("--debian", choices=("A", "B"), help="Debian pair A (a package added) or B (a security update), built with mmdebstrap")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian")
    parser.add_argument("--security-mirror", default="http://deb.debian.org/debian-security")
    parser.add_argument("--size", type=int, help="image size in MiB (default: 384 for --debian, else "
                                                  "the larger tree and a quarter)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/fwagent-bench/delta")
    parser.add_argument("--rate", type=int, default=2_000_000)
    parser.add_argument("--no-full", action="store_true", help="skip the install of the solid image")
    args = parser.parse_args()
    require_nginx()
    byte_compile()
    args.cache.mkdir(parents=True, exist_ok=True)
    old, new = _pair(args)
    with tempfile.TemporaryDirectory(prefix="bench-delta-") as tmp:
        results: dict[str, object] = {"image": new.stat().st_size, **_references(old, new, Path(tmp))}
        for delta in (True,) if args.no_full else (True, False):
            results["fwagent_delta" if delta else "fwagent_full"] = _install(old, new, Path(tmp) / str(delta),
                                                                             delta, args.rate)
        if shutil.which("zck") and shutil.which("zckdl"):
            results["zchunk"] = _zchunk(old, new, Path(tmp) / "zck", args.rate)
        if shutil.which("casync"):
            results["casync"] = _casync(old, new, Path(tmp) / "casync", args.rate)
        if shutil.which("xdelta3") and shutil.which("curl"):
            results["xdelta3_device"] = _xdelta3(old, new, Path(tmp) / "xdelta3", args.rate)
    print(json.dumps(results, indent=2))


def _pair(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.debian:
        trees = _debian_pair(args)
    elif args.old_debs and args.new_debs:
        trees = [_extract(args.old_debs, args.cache), _extract(args.new_debs, args.cache)]
    elif args.old_tree and args.new_tree:
        trees = [args.old_tree, args.new_tree]
    else:
        trees = _local_pair(args.cache)
    if args.size:
        size = args.size << 20
    elif args.debian:
        size = DEBIAN_SIZE
    else:
        size = max(_tree_size(t) for t in trees) * SLACK
        size = int(-(-size // (16 << 20)) * (16 << 20))
    return _ext4(trees[0], size, args.cache), _ext4(trees[1], size, args.cache)


def _extract(debs: Path, cache: Path) -> Path:
    files = sorted(debs.glob("*.deb"))
    key = hashlib.sha256("\n".join(f"{f.name}:{f.stat().st_size}" for f in files).encode()).hexdigest()[:16]
    tree = cache / f"debs-{key}"
    if not tree.exists():
        work = cache / f".debs-{key}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        for deb in files:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(work)], check=True)
        work.rename(tree)
    return tree


def _debian_pair(args: argparse.Namespace) -> list[Path]:
    """Pair A: minbase + python3 -> + curl, openssh-client, less (bookworm as released); pair B:
    A's new tree -> the same with bookworm-updates and bookworm-security."""
    release = [f"deb {args.mirror} bookworm main"]
    updates = [*release, f"deb {args.mirror} bookworm-updates main",
               f"deb {args.security_mirror} bookworm-security main"]
    plus = _mmdebstrap(args.cache / "bookworm-plus", ["python3", *DEBIAN_EXTRA], release)
    if args.debian == "A":
        return [_mmdebstrap(args.cache / "bookworm-base", ["python3"], release), plus]
    return [plus, _mmdebstrap(args.cache / "bookworm-plus-updates", ["python3", *DEBIAN_EXTRA], updates)]


def _mmdebstrap(tree: Path, include: list[str], sources: list[str]) -> Path:
    if not tree.exists():
        work = tree.with_name(f".{tree.name}.tmp")
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["mmdebstrap", "--variant=minbase", f"--include={','.join(include)}", "bookworm",
                        str(work), *sources], check=True, env={**os.environ, "SOURCE_DATE_EPOCH": FS_TIME})
        work.rename(tree)
    return tree


def _local_pair(cache: Path) -> list[Path]:
    old, new = cache / "local-old", cache / "local-new"
    if not new.exists():
        site = next((ROOT / ".venv/lib").glob("python3*/site-packages"))
        for tree in (old, new):
            shutil.rmtree(tree, ignore_errors=True)
            shutil.copytree(site, tree, symlinks=True)
        for name in ("hypothesis", "cryptography"):
            shutil.rmtree(new / name, ignore_errors=True)
        for path in sorted(new.rglob("*.py"))[:40]:
            with open(path, "a", encoding="utf-8") as f:
                f.write("# changed\n")
    return [old, new]


def _tree_size(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def _ext4(tree: Path, size: int, cache: Path) -> Path:
    image = cache / f"{tree.name}-{size >> 20}M-pinned.ext4"
    if not image.exists():
        temp = image.with_suffix(".tmp")
        temp.unlink(missing_ok=True)
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-U", FS_UUID,
                        "-E", f"hash_seed={FS_UUID},root_owner=0:0", "-d", str(tree), str(temp),
                        f"{size >> 20}M"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "E2FSPROGS_FAKE_TIME": FS_TIME})
        temp.rename(image)
    return image


def _references(old: Path, new: Path, tmp: Path) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    subprocess.run(["zstd", "-q", "-19", "-T2", "-f", str(new), "-o", str(tmp / "new.zst")], check=True)
    out["zstd_19"] = (tmp / "new.zst").stat().st_size
    subprocess.run(["zstd", "-q", "-19", "-T2", "--long=31", f"--patch-from={old}", "-f", str(new),
                    "-o", str(tmp / "patch.zst")], check=True, capture_output=True)
    out["zstd_patch_from"] = (tmp / "patch.zst").stat().st_size
    if shutil.which("xdelta3"):
        subprocess.run(["xdelta3", "-q", "-e", "-9", "-f", "-B", str(1 << 30), "-s", str(old), str(new),
                        str(tmp / "patch.vcdiff")], check=True)
        out["xdelta3"] = (tmp / "patch.vcdiff").stat().st_size
    return out


def _install(old: Path, new: Path, work: Path, delta: bool, rate: int) -> dict[str, object]:
    gateway = make_gateway(work / "gw")
    shutil.copyfile(old, gateway.root / "rootfs-a.img")
    with open(gateway.root / "rootfs-b.img", "wb") as slot:
        slot.truncate(old.stat().st_size)
    www = work / "www"
    www.mkdir()
    shutil.copyfile(new, www / "image.img")
    with nginx_server(www, work / "nginx") as server, _throttled(server.port, rate) as proxy:
        component = {"id": ["rootfs"], "file": "image.img", "uri": f"{proxy.url}/image.img", "version": "2",
                     **({"delta": True} if delta else {})}
        spec = parse_spec({"sequence": 2, "vendor_domain": "example.com", "class_name": "gw-test",
                           "component": [component]}, www)
        signed = add_signature(unsigned_envelope(build_manifest(spec)), cose.load_private_key(gateway.root / "release.pem"))
        (gateway.root / "u.suit").write_bytes(signed)
        subprocess.run(["sync"], check=True)
        run = measure([sys.executable, "-c", WITH_RSS, "install", str(gateway.root / "u.suit"), "--no-reboot",
                       "--json", "--config", str(gateway.config_path)], cwd=ROOT)
        served = (proxy.bytes_served, len(proxy.requests))
    outcome = next(json.loads(line) for line in run.stdout.splitlines() if '"outcome"' in line)
    assert (gateway.root / "rootfs-b.img").read_bytes()[:new.stat().st_size] == new.read_bytes()
    result = _figures(run, served, int(run.stderr.strip().splitlines()[-1]))
    if delta:
        stats = outcome["delta"]["rootfs.B"]
        result.update(mode=stats["mode"], frames_file=(www / "image.img.frames").stat().st_size,
                      index=(www / "image.img.index").stat().st_size)
    return result


def _zchunk(old: Path, new: Path, work: Path, rate: int) -> dict[str, object]:
    """The release makes NEW.zck; the device has OLD.zck (zck of its image) and fetches by range."""
    www = work / "www"
    www.mkdir(parents=True)
    for image, out in ((old, work / "old.img.zck"), (new, www / "new.img.zck")):
        subprocess.run(["zck", "-o", str(out), str(image)], check=True, capture_output=True)
    with nginx_server(www, work / "nginx") as server, _throttled(server.port, rate) as proxy:
        runs = [_timed(["zckdl", "-q", "-s", str(work / "old.img.zck"), f"{proxy.url}/new.img.zck"], cwd=work),
                _timed(["unzck", "new.img.zck"], cwd=work)]          # writes new.img
        served = (proxy.bytes_served, len(proxy.requests))
    assert (work / "new.img").read_bytes() == new.read_bytes()
    return _combined(runs, served)


def _casync(old: Path, new: Path, work: Path, rate: int) -> dict[str, object]:
    www = work / "www"
    (www / "store").mkdir(parents=True)
    subprocess.run(["casync", "make", f"--store={www / 'store'}", str(www / "new.caibx"), str(new)],
                   check=True, capture_output=True)
    with nginx_server(www, work / "nginx") as server, _throttled(server.port, rate) as proxy:
        runs = [_timed(["casync", "extract", f"--store={proxy.url}/store", f"--seed={old}",
                        f"{proxy.url}/new.caibx", str(work / "got.img")])]
        served = (proxy.bytes_served, len(proxy.requests))
    assert (work / "got.img").read_bytes() == new.read_bytes()
    return _combined(runs, served)


def _xdelta3(old: Path, new: Path, work: Path, rate: int) -> dict[str, object]:
    """A patch made for this pair of releases (server work per pair): the device fetches it
    (curl) and applies it to its image (``xdelta3 -d -s OLD``)."""
    www = work / "www"
    www.mkdir(parents=True)
    subprocess.run(["xdelta3", "-q", "-e", "-9", "-f", "-B", str(1 << 30), "-s", str(old), str(new),
                    str(www / "patch.vcdiff")], check=True)
    with nginx_server(www, work / "nginx") as server, _throttled(server.port, rate) as proxy:
        runs = [_timed(["curl", "-sSf", "-o", str(work / "patch.vcdiff"), f"{proxy.url}/patch.vcdiff"]),
                _timed(["xdelta3", "-q", "-d", "-f", "-B", str(1 << 30), "-s", str(old), str(work / "patch.vcdiff"),
                        str(work / "got.img")])]
        served = (proxy.bytes_served, len(proxy.requests))
    assert (work / "got.img").read_bytes() == new.read_bytes()
    return _combined(runs, served)


def _timed(command: list[str], cwd: Path | None = None) -> tuple[Run, int]:
    """A run and its peak RSS in KiB (GNU time's %M)."""
    run = measure(["/usr/bin/time", "-f", "%M", *command], cwd=cwd)
    return run, int(run.stderr.strip().splitlines()[-1])


def _combined(runs: list[tuple[Run, int]], served: tuple[int, int]) -> dict[str, object]:
    total = Run(sum(r.wall for r, _ in runs), sum(r.cpu for r, _ in runs), "", "")
    return _figures(total, served, max(rss for _, rss in runs))


def _figures(run: Run, served: tuple[int, int], rss_kib: int) -> dict[str, object]:
    return {"fetched": served[0], "requests": served[1], "wall_s": round(run.wall, 2), "cpu_s": round(run.cpu, 2),
            "peak_rss_mib": round(rss_kib / 1024, 1)}


def _throttled(port: int, rate: int) -> FaultProxy:
    """A proxy that relays every answer at ``rate`` bytes/s (one connection per request)."""
    return FaultProxy(port, [Drip(rate)] * 100_000)


if __name__ == "__main__":
    main()
