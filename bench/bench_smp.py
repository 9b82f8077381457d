"""MCUboot Thing upload over SMP at a modelled 115 200 baud: fwagent vs the line and vs smpclient.

Not a timed test. A 256 KiB payload, signed by imgtool, goes to the simulated
MCUboot serial-recovery Thing (hil/sim/smp_device.py) on a pty that models the
wire's speed both ways (10 bits per character, 8N1), with no flash delays, so
the wire and the clients are all there is. Two columns, side by side in the
same run on the same simulator settings:

* fwagent's SmpFlasher (upload only, from the first request to the answer that
  completes it; the verifying state read is timed apart);
* smpclient (PyPI, the reference Python client), ``SMPSerialTransport()`` with
  its default ``Auto`` sizing, timed the same way over its ``upload()``.

The line's limit for base64 framing is what a perfect client would get on this
line at the device's buffer size: every request as large as the buffer takes
(header, CBOR, length, CRC, base64, line markers and newlines counted) and the
smallest answer, one after the other, with no time between them. Target: fwagent
at >= 90 % of that limit and at least as fast as smpclient. The bare base64
ceiling (3/4 of the character rate) is printed for scale.

Scenarios: ``params`` (the device advertises buf_size 1024 through MCUmgr
params) and ``no-params`` (MCUboot's default build, which answers rc 8: fwagent
then assumes 512 bytes, smpclient its legacy 169-byte messages; the limit is
still that of the device's real 1024-byte buffer).

Run: uv run python bench/bench_smp.py [--size 256] [--baud 115200] [--scenarios params,no-params]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bootloader_bridge.things import smp_codec as codec  # noqa: E402
from bootloader_bridge.things.link import SerialLink  # noqa: E402
from bootloader_bridge.things.smp import SmpFlasher  # noqa: E402
from hil.sim.smp_device import SmpSimulator, sign_image  # noqa: E402

BITS = 10
BUF_SIZE = 1024


def framing_limit(image: bytes, buf_size: int, baud: int) -> tuple[float, int]:
    """(seconds, wire characters) of a perfect client's upload at ``buf_size``."""
    sha, total = hashlib.sha256(image).digest(), len(image)
    off, chars = 0, 0
    while off < total:
        fields = codec.upload_fields(off, total, sha, 0)
        size = min(codec.upload_room(buf_size - codec.FRAME_OVERHEAD, fields), total - off)
        chars += len(codec.encode_frame(codec.image_upload(0, fields, image[off:off + size])))
        off += size
        answer = codec.encode_packet(codec.WRITE_RSP, codec.GROUP_IMAGE, codec.IMAGE_UPLOAD, 0, {"rc": 0, "off": off})
        chars += len(codec.encode_frame(answer))
    return chars * BITS / baud, chars


def run_fwagent(image: bytes, baud: int, params: bool) -> dict[str, float]:
    with SmpSimulator(baud=baud, bits=BITS, slot_size=len(image) + 4096, buf_size=BUF_SIZE, params=params) as sim:
        with SerialLink(sim.port, name="bench") as link:
            thing = SmpFlasher(link, timeout=5.0, first_timeout=20.0)
            thing.params()
            marks: dict[str, float] = {}
            wire_before = (sim.rx_bytes, sim.tx_bytes)

            def progress(phase: str, done: int, total: int) -> None:
                now = time.perf_counter()
                marks.setdefault(phase, now)
                if phase == "writing" and done == total:
                    marks["written"] = now
            result = thing.flash(image, progress)
            ended = time.perf_counter()
        assert bytes(sim.device.slots[0].data[:len(image)]) == image
        return {"seconds": marks["written"] - marks["writing"], "verify": ended - marks["written"],
                "requests": sim.device.uploads, "to_device": sim.rx_bytes - wire_before[0],
                "from_device": sim.tx_bytes - wire_before[1], "retries": result.retries}


def run_smpclient(image: bytes, baud: int, params: bool) -> dict[str, float]:
    from smpclient import SMPClient
    from smpclient.transport.serial import SMPSerialTransport

    with SmpSimulator(baud=baud, bits=BITS, slot_size=len(image) + 4096, buf_size=BUF_SIZE, params=params) as sim:
        async def session() -> float:
            async with SMPClient(SMPSerialTransport(), sim.port, timeout_s=5.0) as client:
                started = time.perf_counter()
                async for _ in client.upload(image, first_timeout_s=20.0):
                    pass
                return time.perf_counter() - started
        wire_before = (sim.rx_bytes, sim.tx_bytes)
        seconds = asyncio.run(session())
        assert bytes(sim.device.slots[0].data[:len(image)]) == image
        return {"seconds": seconds, "requests": sim.device.uploads, "to_device": sim.rx_bytes - wire_before[0],
                "from_device": sim.tx_bytes - wire_before[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="payload KiB")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--scenarios", default="params,no-params")
    args = parser.parse_args()
    logging.getLogger("smpclient").setLevel(logging.ERROR)   # its warning for the rc 8 to params is expected
    with tempfile.TemporaryDirectory() as tmp:
        image = sign_image(os.urandom(args.size * 1024), Path(tmp), version="1.0.0",
                           slot_size=(args.size + 16) * 1024)
    base64_ceiling = args.baud / BITS * 3 / 4
    limit_seconds, limit_chars = framing_limit(image, BUF_SIZE, args.baud)
    limit_rate = len(image) / limit_seconds
    print(f"image {len(image)} bytes ({args.size} KiB payload, imgtool), {args.baud} baud 8N1 modelled, "
          f"device buffer {BUF_SIZE}, no flash delays")
    print(f"bare base64 ceiling {base64_ceiling:.0f} B/s; line's limit for base64 framing at buf_size "
          f"{BUF_SIZE}: {limit_rate:.0f} B/s ({limit_seconds:.2f} s, {limit_chars} characters)\n")
    print("| scenario | client | upload s | B/s | % of framing limit | vs smpclient | requests "
          "| bytes to / from device |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario in args.scenarios.split(","):
        params = scenario == "params"
        ours = run_fwagent(image, args.baud, params)
        theirs = run_smpclient(image, args.baud, params)
        for name, row in (("fwagent SmpFlasher", ours), ("smpclient (Auto)", theirs)):
            rate = len(image) / row["seconds"]
            print(f"| {scenario} | {name} | {row['seconds']:.2f} | {rate:.0f} | {100 * rate / limit_rate:.1f} % "
                  f"| {theirs['seconds'] / row['seconds']:.2f}x | {row['requests']:.0f} "
                  f"| {row['to_device']:.0f} / {row['from_device']:.0f} |")
        print(f"| {scenario} | fwagent verify (state read) | {ours['verify']:.3f} | | | | | |")
    print("\n'vs smpclient' is smpclient's upload time over the client's (>1: faster than smpclient).")


if __name__ == "__main__":
    main()
