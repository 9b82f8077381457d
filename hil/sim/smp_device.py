"""A simulated MCUboot serial-recovery Thing (SMP over its console) on a pseudo-terminal.

Two layers. ``SmpDevice`` is the device as a pure state machine: console bytes
in, timed outputs out (``Output``: work for a while, then send bytes). It
mirrors MCUboot's ``boot_serial.c``: 128-byte input lines (longer ones cut
short), a reassembly buffer of ``buf_size`` decoded bytes, frames with a bad
CRC dropped without an answer, answers that echo the request's SMP version and
sequence number, ``"rc": 0`` in success answers, ``rc 8`` (ENOTSUP) for what it
does not know, and the upload rules: offset 0 erases the whole slot (the slow
first answer), an unexpected offset is answered with the expected one, chunks
are cut to the flash alignment except the last, and the image state list shows
a slot only when it holds an image whose SHA-256 TLV checks and, given the
public ``key`` MCUboot was built with, whose key-hash TLV names that key and
whose signature verifies (ECDSA P-256 over the hashed bytes, Ed25519 over their
SHA-256, as imgtool signs them). ``resume=True`` gives Zephyr's application server behaviour
instead: offset 0 with the in-progress upload's ``sha`` answers the current
offset.

Beyond serial recovery it keeps two slots with test/confirm flags and a reset
that boots (swapping in an image marked for test from slot 1, reverting an
unconfirmed test boot, or at once a trial image that crashes), so the agent's
mark-for-test / reset / confirm flow has something to act on. One SMP server
serves throughout, before and after resets.

``app=True`` tells the application from the bootloader, as a Zephyr SMP server
in front of MCUboot does: the application's image list carries ``splitStatus``
and flags, uploads go where the ``mode`` puts them, and ``os reset`` with
``boot_mode`` 1 (with ``boot_mode_reset``) reboots into serial recovery, which
lists images without flags and writes the primary slot. ``mode`` (MCUboot's mode
number) is what bootloader information reports (with ``reports_mode``) and how
a reset boots: swap modes as above; overwrite-only copies a marked secondary
over the primary; direct-XIP and RAM-load boot the valid slot with the highest
version and refuse marks (rc 8); direct-XIP with revert boots a slot marked for
test once, and an unconfirmed one is erased at the next reset; single-application
and firmware-loader builds take images through the bootloader only (``loader``:
the firmware loader's image in slot 1, entered by the boot_mode reset, an
application that writes slot 0).

``SmpSimulator`` is the thin adapter: a pty whose slave is raw and stays open
(clients come and go without EIO), one thread, and the wire's speed modelled
both ways (``chars * bits / baud``), since a pty moves bytes at memory speed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from bootloader_bridge.things import smp_codec as codec
from bootloader_bridge.things.mcuboot_image import McubootImageError
from bootloader_bridge.things.mcuboot_image import parse as parse_image
from hil.sim.pty_end import PtyEnd

BANNER = b"*** Booting MCUboot v2.1.0 ***\r\nI: Starting bootloader\r\n"
LOG_LINE = b"[00:00:02.718,281] <inf> serial_recovery: busy\r\n"
CRASH = b"E: ***** USAGE FAULT *****\r\nE: >>> ZEPHYR FATAL ERROR 0: CPU exception on CPU 0\r\n"
REBOOT_DELAY = 0.25         # MCUboot answers a reset, then reboots this much later
EINVAL, ENOENT, ENOTSUP = 3, 5, 8
# MCUboot's modes (enum mcuboot_mode) that the device plays differently; the swap modes are the default.
MODE_SINGLE_APP, MODE_OVERWRITE_ONLY, MODE_DIRECT_XIP, MODE_DIRECT_XIP_REVERT = 0, 2, 4, 5
MODE_RAM_LOAD, MODE_FIRMWARE_LOADER = 6, 7
NO_MARKS = (MODE_SINGLE_APP, MODE_DIRECT_XIP, MODE_RAM_LOAD, MODE_FIRMWARE_LOADER)
TLV_KEYHASH, TLV_ECDSA, TLV_ED25519 = 0x01, 0x22, 0x24


@dataclass
class Faults:
    """What goes wrong; the sets and maps by the number (from 1) of the upload request they hit."""

    drop: set[int] = field(default_factory=set)       # the answer is lost (the chunk was written)
    rc: dict[int, int] = field(default_factory=dict)  # answered with this rc instead
    reset: set[int] = field(default_factory=set)      # the device resets instead (upload state lost)
    corrupt: set[int] = field(default_factory=set)    # a bit of the chunk flips in flash, unnoticed
    garble: set[int] = field(default_factory=set)     # a byte of the answer's base64 is damaged on the wire
    noise: bool = False                               # log lines before every answer and inside it
    silent: bool = False                              # no answers at all
    trial_fails: bool = False                         # an image booted on trial crashes: MCUboot reverts


@dataclass(frozen=True)
class Output:
    after: float                # seconds of work before it goes out (erase, flash writes, reboot)
    data: bytes = b""
    reboot: bool = False        # the device reboots first; the adapter sends what ``boot()`` returns


@dataclass
class Slot:
    data: bytearray
    length: int = 0             # bytes of the image written there (0: empty)
    pending: bool = False       # marked for the next boot
    permanent: bool = False     # marked for the next boot, for good
    confirmed: bool = False
    active: bool = False
    key: Any = None             # the public key images must be signed with (None: hash only)

    def image(self) -> Any:
        """The MCUboot image here, if the whole of one is and it validates; else None."""
        if not self.length:
            return None
        data = bytes(self.data[:self.length])
        try:
            image = parse_image(data)
        except McubootImageError:
            return None
        return image if self.key is None or signed_by(data, image, self.key) else None

    def clear(self) -> None:
        self.data[:] = b"\xff" * len(self.data)
        self.length, self.pending, self.permanent, self.confirmed, self.active = 0, False, False, False, False


def signed_by(data: bytes, image: Any, key: Any) -> bool:
    """Whether ``image`` (parsed from ``data``) carries ``key``'s hash and a valid signature by it."""
    tlvs = dict(image.tlvs)
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if tlvs.get(TLV_KEYHASH) != hashlib.sha256(spki).digest():
        return False
    signed = data[:image.hashed_end]
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and TLV_ECDSA in tlvs:
            key.verify(tlvs[TLV_ECDSA], signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, Ed25519PublicKey) and TLV_ED25519 in tlvs:
            key.verify(tlvs[TLV_ED25519], hashlib.sha256(signed).digest())
        else:
            return False
    except InvalidSignature:
        return False
    return True


class SmpDevice:
    def __init__(self, *, slot_size: int = 256 * 1024, buf_size: int = 1024, params: bool = True,
                 align: int = 4, upload_slot: int = 0, primary: bytes | None = None, resume: bool = False,
                 erase_delay: float = 0.0, write_delay_per_kib: float = 0.0, indefinite: bool = True,
                 line_max: int = 128, key: Any = None, app: bool = False, mode: int | None = None,
                 reports_mode: bool = True, boot_mode_reset: bool = True, loader: bytes | None = None) -> None:
        self.slot_size, self.buf_size, self.params, self.align = slot_size, buf_size, params, align
        self.upload_slot, self.resume, self.indefinite = upload_slot, resume, indefinite
        self.erase_delay, self.write_delay_per_kib = erase_delay, write_delay_per_kib
        self.faults = Faults()
        self.slots = [Slot(bytearray(b"\xff" * slot_size), key=key) for _ in range(2)]
        self.decoder = codec.FrameDecoder(max_line=line_max, max_frame=buf_size)
        self.uploads = 0            # upload requests seen
        self.offsets: list[Any] = []    # the offset each upload request asked for, in order
        self.boots = 0
        self.test_boot = False      # slot 0 runs an image on trial: it reverts at the next reset
        self.app, self.mode, self.reports_mode, self.boot_mode_reset = app, mode, reports_mode, boot_mode_reset
        self.running = 0            # the slot the application runs from (direct-XIP, RAM-load)
        self.in_bootloader = app and primary is None    # serial recovery: no application to run
        self.trial_slot: int | None = None    # direct-XIP with revert: booted on test, erased unless confirmed
        self._to_bootloader = False
        self._upload_len = self._upload_off = 0
        self._upload_sha = b""
        if primary is not None:
            self.slots[0].data[:len(primary)] = primary
            self.slots[0].length = len(primary)
            self.slots[0].confirmed = self.slots[0].active = True
        if loader is not None:          # MCUboot's firmware loader: an application of its own in slot 1
            self.slots[1].data[:len(loader)] = loader
            self.slots[1].length, self.slots[1].confirmed = len(loader), True

    # --- frames in, outputs out ---

    def feed(self, data: bytes) -> list[Output]:
        outputs: list[Output] = []
        for packet in self.decoder.feed(data):
            outputs += self._handle(packet)
        return outputs

    def _handle(self, packet: bytes) -> list[Output]:
        try:
            request = codec.decode_packet(packet)
        except codec.SmpFormatError:
            return []               # MCUboot drops what it cannot parse
        header = request.header
        if header.op not in (codec.READ, codec.WRITE) or self.faults.silent:
            return []
        key = (header.group, header.id, header.op)
        if key == (codec.GROUP_IMAGE, codec.IMAGE_UPLOAD, codec.WRITE):
            return self._upload(header, request.body)
        if key == (codec.GROUP_IMAGE, codec.IMAGE_STATE, codec.READ):
            return [self._answer(header, self._state_list())]
        if key == (codec.GROUP_IMAGE, codec.IMAGE_STATE, codec.WRITE):
            return [self._answer(header, self._state_write(request.body))]
        if key == (codec.GROUP_OS, codec.OS_RESET, codec.WRITE):
            self._to_bootloader = (self.app and not self.in_bootloader and self.boot_mode_reset
                                   and request.body.get("boot_mode") == codec.BOOT_MODE_BOOTLOADER)
            return [self._answer(header, {"rc": 0}), Output(REBOOT_DELAY, reboot=True)]
        if key == (codec.GROUP_OS, codec.OS_PARAMS, codec.READ) and self.params:
            return [self._answer(header, {"buf_size": self.buf_size, "buf_count": 1})]
        if (key == (codec.GROUP_OS, codec.OS_BOOTLOADER_INFO, codec.READ) and self.mode is not None
                and self.reports_mode and not self.in_bootloader):
            query = request.body.get("query")
            if query is None:
                return [self._answer(header, {"bootloader": "MCUboot"})]
            if query == "mode":
                return [self._answer(header, {"mode": self.mode})]
        return [self._answer(header, {"rc": ENOTSUP})]

    def _answer(self, request: codec.Header, body: dict[str, Any], after: float = 0.0) -> Output:
        payload = _indefinite(body) if self.indefinite else cbor2.dumps(body)
        header = codec.Header(request.op + 1, request.group, request.id, request.seq, len(payload), 0,
                              request.version)
        frame = codec.encode_frame(header.pack() + payload)
        if self.faults.noise:
            first_line = frame.index(b"\n") + 1
            frame = LOG_LINE + frame[:first_line] + LOG_LINE + frame[first_line:]
        return Output(after, frame)

    def boot(self) -> bytes:
        """Reset: the upload in progress is forgotten; an image marked for test is swapped in,
        an unconfirmed trial reverted. Returns what the console shows: the boot banner, twice
        when a trial image crashes (``faults.trial_fails``) and the watchdog resets it."""
        primary, secondary = self.slots
        console = BANNER
        to_bootloader, self._to_bootloader = self._to_bootloader, False
        if self.mode in (MODE_DIRECT_XIP, MODE_DIRECT_XIP_REVERT, MODE_RAM_LOAD):
            self._boot_by_version()
        elif self.mode == MODE_OVERWRITE_ONLY:
            if secondary.pending and secondary.image() is not None:
                primary.data[:] = secondary.data
                primary.length, primary.confirmed = secondary.length, True
                secondary.clear()
        elif secondary.pending:
            self._swap()
            self.test_boot = not secondary.permanent
            primary.confirmed = secondary.permanent
            if self.test_boot and self.faults.trial_fails:
                self._revert()
                self.boots += 1
                console += CRASH + BANNER
        elif primary.pending:
            self.test_boot, primary.confirmed = True, False
        elif self.test_boot and not primary.confirmed and secondary.image() is not None:
            self._revert()
        for slot in self.slots:
            slot.pending = slot.permanent = slot.active = False
        if self.mode not in (MODE_DIRECT_XIP, MODE_DIRECT_XIP_REVERT, MODE_RAM_LOAD):
            self.running = 0
        if self.mode == MODE_FIRMWARE_LOADER and to_bootloader and secondary.image() is not None:
            self.running, to_bootloader = 1, False      # the firmware loader runs, and answers as an application
        runs = self.slots[self.running].image() is not None
        self.slots[self.running].active = runs
        self.in_bootloader = self.app and (to_bootloader or not runs)
        self._upload_len = self._upload_off = 0
        self._upload_sha = b""
        self.decoder.reset()
        self.boots += 1
        return console

    def _boot_by_version(self) -> None:
        """Direct-XIP and RAM-load: the valid slot with the highest version runs; with revert, only
        confirmed slots and one marked for test count, and a test boot not confirmed by the next
        reset is erased (a trial image that crashes is erased at once, as the watchdog resets it)."""
        revert = self.mode == MODE_DIRECT_XIP_REVERT
        if revert and self.trial_slot is not None and not self.slots[self.trial_slot].confirmed:
            self.slots[self.trial_slot].clear()
        self.trial_slot = None
        candidates = [(image.version, -number) for number, slot in enumerate(self.slots)
                      if (image := slot.image()) is not None and (not revert or slot.confirmed or slot.pending)]
        if not candidates:
            return
        self.running = -max(candidates)[1]
        chosen = self.slots[self.running]
        if revert and chosen.pending and not chosen.permanent:
            self.trial_slot = self.running
            if self.faults.trial_fails:
                chosen.clear()
                self.trial_slot = None
                self.boots += 1
                self._boot_by_version()
        elif revert and chosen.pending:
            chosen.confirmed = True

    def _swap(self) -> None:
        primary, secondary = self.slots
        primary.data, secondary.data = secondary.data, primary.data
        primary.length, secondary.length = secondary.length, primary.length
        primary.confirmed, secondary.confirmed = secondary.confirmed, primary.confirmed

    def _revert(self) -> None:
        """MCUboot swaps the unconfirmed trial image back out: the old, confirmed one runs again."""
        self._swap()
        self.slots[0].confirmed, self.test_boot = True, False

    # --- image group ---

    def _upload(self, header: codec.Header, body: dict[str, Any]) -> list[Output]:
        self.uploads += 1
        self.offsets.append(body.get("off"))
        number = self.uploads
        if number in self.faults.reset:
            return [Output(0.0, self.boot())]
        if number in self.faults.rc:
            return [self._answer(header, {"rc": self.faults.rc[number]})]
        answer, delay = self._write_chunk(body)
        if number in self.faults.corrupt and self._upload_off:
            self.slots[self._target() or 0].data[self._upload_off - 1] ^= 0x01
        if number in self.faults.drop:
            return [Output(delay)]
        output = self._answer(header, answer, delay)
        return [_garbled(output) if number in self.faults.garble else output]

    def _target(self) -> int | None:
        """The slot an upload writes: the primary in serial recovery; else where the mode puts it."""
        if not self.app:
            return self.upload_slot
        if self.in_bootloader:
            return 0
        if self.mode in (MODE_SINGLE_APP, MODE_FIRMWARE_LOADER):
            return 0 if self.running == 1 else None     # only the firmware loader writes the application's slot
        if self.mode in (MODE_DIRECT_XIP, MODE_DIRECT_XIP_REVERT, MODE_RAM_LOAD):
            return 1 - self.running
        return 1

    def _write_chunk(self, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        off, data = body.get("off"), body.get("data")
        target = self._target()
        if not isinstance(off, int) or not isinstance(data, bytes):
            return {"rc": EINVAL}, 0.0
        if target is None:
            return {"rc": ENOTSUP}, 0.0
        slot = self.slots[target]
        delay = 0.0
        if off == 0:
            length, sha = body.get("len"), body.get("sha", b"")
            if not isinstance(length, int) or not 0 < length <= self.slot_size or body.get("image", 0) != 0:
                return {"rc": EINVAL}, 0.0
            if self.resume and sha and sha == self._upload_sha and length == self._upload_len:
                return {"rc": 0, "off": self._upload_off}, 0.0
            slot.clear()
            self.test_boot = self.test_boot and target != 0
            slot.length = length
            self._upload_len, self._upload_off, self._upload_sha = length, 0, sha
            delay += self.erase_delay
        elif not self._upload_len or off != self._upload_off:
            return {"rc": 0, "off": self._upload_off}, 0.0
        if off + len(data) > self._upload_len:
            return {"rc": EINVAL}, delay
        take = len(data) if off + len(data) == self._upload_len else len(data) - len(data) % self.align
        slot.data[off:off + take] = data[:take]
        self._upload_off = off + take
        return {"rc": 0, "off": self._upload_off}, delay + self.write_delay_per_kib * take / 1024

    def _state_list(self) -> dict[str, Any]:
        images = []
        for number, slot in enumerate(self.slots):
            image = slot.image()
            if image is None:
                continue
            entry: dict[str, Any] = {"slot": number, "version": image.version_text, "hash": image.hash}
            if self.in_bootloader:
                images.append(entry)        # MCUboot's recovery without image-state support: no flags
                continue
            flags = {"bootable": not image.flags & 0x10, "pending": slot.pending, "confirmed": slot.confirmed,
                     "active": slot.active, "permanent": slot.permanent}
            entry.update({name: True for name, value in flags.items() if value})
            images.append(entry)
        return {"images": images, "splitStatus": 0} if self.app and not self.in_bootloader else {"images": images}

    def _state_write(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted, confirm = body.get("hash"), body.get("confirm", False) is True
        if self.app and (self.in_bootloader or self.mode in NO_MARKS):
            return {"rc": ENOTSUP}
        if wanted is None and confirm:
            number: int | None = self.running
        else:
            number = next((n for n, slot in enumerate(self.slots)
                           if (image := slot.image()) is not None and image.hash == wanted), None)
        if number is None or self.slots[number].image() is None:
            return {"rc": ENOENT, "rsn": "no image with that hash"}
        slot = self.slots[number]
        if number == self.running and slot.active:
            if confirm:
                slot.confirmed, self.test_boot = True, False
                self.trial_slot = None
        else:
            slot.pending, slot.permanent = True, confirm
        return self._state_list()


def _garbled(output: Output) -> Output:
    """The answer with one base64 character of its first line changed: the frame fails its check."""
    data = bytearray(output.data)
    at = data.index(codec.START) + len(codec.START) + 8
    data[at] = ord("A") if data[at] != ord("A") else ord("B")
    return Output(output.after, bytes(data), output.reboot)


def _indefinite(value: Any) -> bytes:
    """CBOR with indefinite-length maps and arrays, as zcbor writes them by default."""
    if isinstance(value, dict):
        return b"\xbf" + b"".join(_indefinite(k) + _indefinite(v) for k, v in value.items()) + b"\xff"
    if isinstance(value, list):
        return b"\x9f" + b"".join(_indefinite(v) for v in value) + b"\xff"
    return cbor2.dumps(value)


class SmpSimulator:
    """``with SmpSimulator(slot_size=..., baud=115200) as sim:`` a Thing at ``sim.port``.

    ``sim.device`` is the SmpDevice (its ``faults``, slots and counters);
    ``rx_bytes``/``tx_bytes`` count the bytes on the wire each way.
    """

    def __init__(self, *, baud: int = 115200, bits: int = 10, **device: Any) -> None:
        self.device = SmpDevice(**device)
        self.char_time = bits / baud if baud else 0.0
        self.rx_bytes = self.tx_bytes = 0
        self.pty = PtyEnd("SMP simulator")
        self.port = ""
        self._rx_clock = self._tx_clock = 0.0

    def __enter__(self) -> "SmpSimulator":
        self.port = self.pty.start(self._run)
        return self

    def __exit__(self, *exc: object) -> None:
        self.pty.stop()

    def _run(self) -> None:
        while not self.pty.stopping.is_set():
            data = self.pty.read(0.05)
            if not data:
                continue
            self.rx_bytes += len(data)
            self._rx_clock = self._wait_until(max(self._rx_clock, time.monotonic()) + len(data) * self.char_time)
            for output in self.device.feed(data):
                self._emit(output)

    def _emit(self, output: Output) -> None:
        if output.after and self.pty.wait(output.after):
            return                      # stopped during the device's work: nothing more goes out
        data = output.data
        if output.reboot:
            while self.pty.read(0.0):   # what arrives while the device reboots is lost
                pass
            data = self.device.boot()
        if not data:
            return
        self._tx_clock = self._wait_until(max(self._tx_clock, time.monotonic()) + len(data) * self.char_time)
        self.pty.write(data)
        self.tx_bytes += len(data)

    def _wait_until(self, deadline: float) -> float:
        """The line's time for what was sent or received; cut short by a stop."""
        self.pty.wait(deadline - time.monotonic())
        return deadline


def imgtool_path() -> str | None:
    """imgtool (PyPI, a dev dependency) beside this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("imgtool")
    return str(beside) if beside.exists() else shutil.which("imgtool")


def keygen(directory: Path, kind: str) -> Path:
    """A signing key made by ``imgtool keygen`` (``ecdsa-p256``, ``ed25519``, ...), once per directory."""
    tool = imgtool_path()
    if tool is None:
        raise FileNotFoundError("imgtool is not installed (uv sync installs the dev group)")
    key = directory / f"{kind}.pem"
    if not key.exists():
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run([tool, "keygen", "-k", str(key), "-t", kind], check=True, capture_output=True, timeout=60)
    return key


def public_key(key: Path) -> Any:
    """The public half of a key file ``keygen`` made: what MCUboot is built with."""
    return load_pem_private_key(key.read_bytes(), password=None).public_key()


def sign_image(payload: bytes, directory: Path, *, version: str = "1.2.3+4", slot_size: int = 256 * 1024,
               header_size: int = 0x200, key: Path | None = None, extra: tuple[str, ...] = ()) -> bytes:
    """An MCUboot image of ``payload`` made by ``imgtool sign`` (with ``key``, else hash-only)."""
    tool = imgtool_path()
    if tool is None:
        raise FileNotFoundError("imgtool is not installed (uv sync installs the dev group)")
    name = hashlib.sha256(payload).hexdigest()[:12]
    source, target = directory / f"{name}.bin", directory / f"{name}-signed.bin"
    source.write_bytes(payload)
    command = [tool, "sign", "--header-size", hex(header_size), "--pad-header", "--align", "4",
               "--slot-size", hex(slot_size), "--version", version, *extra]
    if key is not None:
        command += ["--key", str(key)]
    subprocess.run([*command, str(source), str(target)], check=True, capture_output=True, timeout=60)
    return target.read_bytes()
