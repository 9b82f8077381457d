"""Flashing an STM32 at a modelled 115 200 baud: fwagent against stm32flash, side by side.

Not a timed test. Target: fwagent writes and verifies a 256 KiB image at least
1.2 times faster end to end than ``stm32flash -w -v``. Every run gets a fresh
simulated bootloader (hil/sim/stm32_bootloader.py, an F1 high-density part,
0x414: 2 KiB pages, bootloader v2.2) on a pty that sleeps for the line time at
8E1, 11 bits per character as on real hardware (the pty itself runs 8N1:
a pty has no parity), and for the part's page-erase (20 ms) and programming
(52 us per half-word) times. Both clients run as processes, started cold:

* stm32flash -w -v: erases the pages, writes each 256-byte block and reads it
  back at once;
* fwagent: erases the pages, writes the blocks, then verifies: by Read Memory
  when the bootloader does not list Get Checksum (0xA1), else with one Get
  Checksum over the whole image.

Each is run on both bootloaders, without and with Get Checksum listed (newer
bootloaders list it; stm32flash -v reads back either way). Without it both
clients move the same bytes over the line, which bounds them both: a verdict
is printed per bootloader (docs/things.md, "How a write is verified"). Where the time
goes: the line (characters both ways x 11 / baud, from the simulator's
counters), the device (erasing and programming) and the rest (turnarounds,
host and pty). The image read back from the simulator is compared after
every run.

Run: uv run python bench/bench_stm32.py [--size 256] [--baud 115200]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from measure import measure  # noqa: E402

from hil.sim.stm32_bootloader import Stm32Simulator  # noqa: E402

TARGET = 1.2
BITS = 11
FWAGENT = """
import sys
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.stm32 import Stm32Flasher
port, path = sys.argv[1:3]
with SerialLink(port, name="bench") as link:
    result = Stm32Flasher(link).flash(open(path, "rb").read())
print(result.verified, result.retries)
"""


@dataclass(frozen=True)
class Row:
    client: str
    checksum: bool
    seconds: float
    line: float
    device: float
    to_device: int
    from_device: int
    verified: str


def run(client: str, checksum: bool, image: Path, baud: int) -> Row:
    data = image.read_bytes()
    with Stm32Simulator(0x414, baud=baud, bits_per_byte=BITS, get_checksum=checksum) as sim:
        if client == "stm32flash":
            done = measure(["stm32flash", "-m", "8n1", "-b", str(baud), "-w", str(image), "-v", sim.port])
            verified = "read-back" if "Wrote and verified" in done.stdout else "?"
        else:
            done = measure([sys.executable, "-c", FWAGENT, sim.port, str(image)], cwd=ROOT)
            verified = done.stdout.split(" ", 1)[0] if "crc32" not in done.stdout else "Get Checksum"
        if sim.flash[:len(data)] != data:
            raise SystemExit(f"{client}: the simulator does not hold the image")
        counters = sim.bootloader
        line = (counters.bytes_in + counters.bytes_out) * BITS / baud
        return Row(client, checksum, done.wall, line, counters.busy, counters.bytes_in, counters.bytes_out, verified)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image size in KiB")
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "fw.bin"
        image.write_bytes(random.Random(3155).randbytes(args.size * 1024))
        rows = [run(client, checksum, image, args.baud)
                for checksum in (False, True) for client in ("stm32flash", "fwagent")]
    size = args.size * 1024
    print(f"STM32 write + verify of {args.size} KiB, 0x414 simulated at {args.baud} baud, "
          f"{BITS} bits per character\n")
    print(f"{'bootloader':<22} {'client':<11} {'verify':<13} {'seconds':>8} {'kB/s':>6} {'line s':>7} "
          f"{'device s':>8} {'rest s':>7} {'to dev':>8} {'from dev':>8} {'speed-up':>8}")
    for row in rows:
        base = next(r for r in rows if r.client == "stm32flash" and r.checksum == row.checksum)
        listing = "lists Get Checksum" if row.checksum else "no Get Checksum"
        print(f"{listing:<22} {row.client:<11} {row.verified:<13} {row.seconds:8.2f} {size / row.seconds / 1000:6.2f} "
              f"{row.line:7.2f} {row.device:8.2f} {row.seconds - row.line - row.device:7.2f} "
              f"{row.to_device:8d} {row.from_device:8d} {base.seconds / row.seconds:7.2f}x")
    print(f"\ntarget: fwagent >= {TARGET}x faster end to end than stm32flash -v")
    for checksum in (False, True):
        ours, theirs = (next(r for r in rows if r.client == client and r.checksum == checksum)
                        for client in ("fwagent", "stm32flash"))
        ratio = theirs.seconds / ours.seconds
        listing = "lists Get Checksum" if checksum else "no Get Checksum"
        print(f"  {listing:<20} {ratio:.2f}x  {'met' if ratio >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
