"""Download throughput and resume waste, from a real nginx on loopback.

Not a timed test. In one run, side by side:

1. 1 GiB (``--size``) into a file with SHA-256: ``curl -s URL | tee file |
   openssl dgst -sha256`` against the fwagent downloader (a child process
   running Downloader.fetch into a FileSink); wall and CPU time (user + system of
   the children), medians of five alternating runs, and the downloader's peak
   RSS (VmHWM).
2. Resume waste: the same file through a proxy that cuts the connection every
   100 MiB; bytes the proxy served against the file size, and the longest wait
   before a resumed request.

Run: uv run python bench/bench_download.py [--size MiB]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from httpfaults import Cut, FaultProxy, nginx_server, random_file, require_nginx  # noqa: E402
from measure import measure  # noqa: E402

REPEAT = 5

CHILD = """
import hashlib, sys, time
from pathlib import Path
from agent.config import DownloadConfig
from agent.download.downloader import Downloader
from agent.download.sinks import FileSink
url, out, digest, size = sys.argv[1], Path(sys.argv[2]), bytes.fromhex(sys.argv[3]), int(sys.argv[4])
waits = []
def sleep(seconds):
    waits.append(seconds)
    time.sleep(seconds)
with FileSink(out, size) as sink:
    Downloader(DownloadConfig(stall_timeout=10), sleep=sleep).fetch(url, sink, size=size, digest=digest)
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(hwm, max(waits, default=0.0))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB")
    args = parser.parse_args()
    require_nginx()
    size = args.size << 20
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        digest = random_file(root / "www" / "image.img", size, seed=1)
        with nginx_server(root / "www", root / "nginx") as server:
            url = f"{server.url}/image.img"
            ours_cmd = [sys.executable, "-c", CHILD, url, str(root / "ours.img"), digest, str(size)]
            rows = []
            for _ in range(REPEAT):                      # alternate; medians
                (root / "curl.img").unlink(missing_ok=True)
                (root / "ours.img").unlink(missing_ok=True)
                base = measure(["sh", "-c", f"curl -s '{url}' | tee '{root / 'curl.img'}' | openssl dgst -sha256"])
                ours = measure(ours_cmd, cwd=ROOT)
                rows.append((base.wall, base.cpu, ours.wall, ours.cpu, int(ours.stdout.split()[0]) / 1024))
            assert hashlib.sha256((root / "ours.img").read_bytes()).hexdigest() == digest
            med = [statistics.median(col) for col in zip(*rows)]
            ratios = sorted(r[2] / r[0] for r in rows)
            print("| 1 GiB from nginx | curl|tee|openssl | fwagent | ratio |" if args.size == 1024 else
                  f"| {args.size} MiB from nginx | curl|tee|openssl | fwagent | ratio |")
            print("|---|---|---|---|")
            print(f"| wall s | {med[0]:.2f} | {med[2]:.2f} | {med[2] / med[0]:.2f}x |")
            print(f"| CPU s | {med[1]:.2f} | {med[3]:.2f} | {med[3] / med[1]:.2f}x |")
            print(f"| peak RSS MiB | | {max(r[4] for r in rows):.1f} | |")
            print(f"\nwall ratio of each of the {REPEAT} runs: " + ", ".join(f"{r:.2f}x" for r in ratios))

            cut = 100 << 20
            cuts = (size - 1) // cut
            with FaultProxy(server.port, [Cut(cut)] * cuts) as proxy:
                (root / "ours.img").unlink(missing_ok=True)
                cmd = [sys.executable, "-c", CHILD, f"{proxy.url}/image.img", str(root / "ours.img"), digest,
                       str(size)]
                run = measure(cmd, cwd=ROOT)
                wall, out = run.wall, run.stdout
                served = proxy.bytes_served
                requests_seen = len(proxy.requests)
            longest_wait = float(out.split()[1])
            print()
            print("| resume waste | value | target |")
            print("|---|---|---|")
            print(f"| cuts | {cuts} ({requests_seen} requests) | every 100 MiB |")
            print(f"| bytes served - size | {served - size} | <= {cuts} MiB ({cuts << 20}) |")
            print(f"| longest wait before resuming | {longest_wait:.2f} s | <= 2 s |")
            print(f"| wall | {wall:.2f} s | |")


if __name__ == "__main__":
    main()
