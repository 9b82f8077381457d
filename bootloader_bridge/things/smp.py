"""Flash an MCUboot Thing over its serial console: SMP image upload (MCUboot serial
recovery, or a Zephyr application's mcumgr server).

The Thing must already listen (in serial recovery, or running an SMP server);
entering the bootloader is the agent's reset method, not this module's.

``flash`` checks the image locally first (nothing is sent for a bad file), asks
the device for its buffer size (MCUmgr params; a configured or conservative
default when it does not answer) and sends the largest chunks that fit it. It
always continues from the offset the device answers: MCUboot answers an
unexpected offset with the one it wants, cuts chunks to its flash alignment,
and after a reset in mid-upload wants offset 0 again. A lost answer is retried
with the same offset and a new sequence number, answers with another sequence
number are stale and skipped, and the first chunk gets a long timeout because
MCUboot erases the whole slot before answering it. A Zephyr server resumes an
interrupted upload of the same file (same ``sha``) where it stopped; MCUboot
starts over. The result is verified by the device's image state list showing
the image's SHA-256 TLV, which MCUboot lists only for an image that validates.

After ``flash``, the agent's helpers: ``mark_for_test`` (boot it once on trial),
``reset``, ``confirm`` (keep it).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from agent.errors import ThingError, ThingTimeoutError, ThingVerifyError
from bootloader_bridge.things import smp_codec as codec
from bootloader_bridge.options import Option
from bootloader_bridge.things import mcuboot_modes
from bootloader_bridge.things.base import FlashProgress, FlashResult, ThingInfo, ThingProtocol
from bootloader_bridge.things.mcuboot_image import McubootImageError, parse

DEFAULT_BUF_SIZE = 512      # MCUboot's generic BOOT_SERIAL_MAX_RECEIVE_SIZE; Zephyr builds use 1024
LINE_LIMIT = 64 * 1024      # a console line longer than this is not a device talking


class SmpFlasher:
    """An SMP Thing on an open SerialLink.

    ``buf_size`` is the device's reassembly buffer when it does not report one
    (MCUboot's MCUmgr params are off by default); ``chunk`` caps the data bytes
    per upload request. ``timeout`` is per request, ``first_timeout`` for the
    first chunk (slot erase), ``retries`` per request after a lost answer, and
    ``reset_settle`` the longest wait for a rebooted device to fall quiet.
    """

    def __init__(self, link: Any, *, name: str = "", chunk: int | None = None, buf_size: int | None = None,
                 image: int = 0, timeout: float = 2.5, first_timeout: float = 40.0, retries: int = 4,
                 reset_settle: float = 3.0) -> None:
        self.link = link
        self.name = name or getattr(link, "name", "") or "thing"
        self.chunk, self.buf_size, self.image = chunk, buf_size, image
        self.timeout, self.first_timeout, self.retries = timeout, first_timeout, retries
        self.reset_settle = reset_settle
        self.decoder = codec.FrameDecoder()
        self._seq = random.randrange(256)
        self._params: tuple[int, int, str] | None = None
        self._mode: tuple[int | None] | None = None
        self._retries = 0

    # --- ThingFlasher ---

    def info(self) -> ThingInfo:
        """Buffer sizes, the image list and where it came from, and the MCUboot mode when the
        application reports it. A device without the image group (SMP group 1) says so."""
        buf_size, buf_count, source = self.params()
        details: dict[str, object] = {"buf_size": buf_size, "buf_count": buf_count, "buf_size_from": source}
        try:
            states, in_bootloader = self.listing()
        except SmpRefusedError as exc:
            details["image_management"] = f"refused: rc {exc.rc} ({codec.MGMT_ERR.get(exc.rc, 'unknown')})"
            return ThingInfo(protocol="mcuboot-smp", device="", bootloader="", details=details)
        details["answers_from"] = "serial recovery" if in_bootloader else "application"
        mode = None if in_bootloader else self.bootloader_mode()
        if mode is not None:
            known = mcuboot_modes.BY_NUMBER
            details["mcuboot_mode"] = known[mode].value if mode in known else mode
        return ThingInfo(protocol="mcuboot-smp", device="", bootloader="MCUboot" if in_bootloader else "",
                         images=tuple(state.as_dict() for state in states), details=details)

    def flash(self, image: bytes, progress: FlashProgress | None = None) -> FlashResult:
        try:
            checked = parse(image, what=f"{self.name}: MCUboot image")
        except McubootImageError as exc:
            raise McubootImageError(f"{exc}; nothing was sent") from None
        report: Callable[[str, int, int], None] = progress or (lambda phase, done, total: None)
        started, retries_before = time.monotonic(), self._retries
        self._upload(bytes(image), report)
        report("verifying", 0, len(image))
        states = [state for state in self.image_states() if state.image == self.image]
        if not any(state.hash == checked.hash for state in states):
            listed = ", ".join(f"slot {s.slot} {s.hash.hex()[:16] if s.hash else 'no hash'}" for s in states)
            raise ThingVerifyError(f"{self.name}: after the upload the device lists no image with SHA-256 "
                                   f"{checked.hash.hex()[:16]}… ({listed or 'no images'}): "
                                   "it did not validate on the device")
        report("verifying", len(image), len(image))
        return FlashResult(written=len(image), verified="sha256 reported by the device",
                           retries=self._retries - retries_before, seconds=time.monotonic() - started)

    # --- what the agent does with an MCUboot Thing ---

    def params(self) -> tuple[int, int, str]:
        """``(buf_size, buf_count, source)``: asked once; source is "device", "configured" or "default"."""
        if self._params is None:
            try:
                body = self._request(codec.params_read, "MCUmgr params", tries=1)
                size, count = codec.params(body)
                self._params = (size, count, "device")
            except (ThingTimeoutError, SmpRefusedError, codec.SmpFormatError):
                self._params = (self.buf_size or DEFAULT_BUF_SIZE, 1,
                                "configured" if self.buf_size else "default")
        return self._params

    def image_states(self) -> list[codec.ImageState]:
        return self.listing()[0]

    def listing(self) -> tuple[list[codec.ImageState], bool]:
        """The image states, and whether they came from MCUboot's serial recovery (not an application)."""
        body = self._request(codec.image_state_read, "image state read")
        return self._states(body, "image state read"), codec.in_bootloader(body)

    def bootloader_mode(self) -> int | None:
        """MCUboot's mode number as the application reports it (bootloader information), asked
        once; None when the device does not answer it (most builds leave the command out)."""
        if self._mode is None:
            try:
                body = self._request(lambda seq: codec.bootloader_info_read(seq, "mode"), "bootloader information",
                                     tries=1)
                self._mode = (codec.bootloader_mode(body),)
            except (ThingTimeoutError, SmpRefusedError, codec.SmpFormatError):
                self._mode = (None,)
        return self._mode[0]

    def mark_for_test(self, image_hash: bytes) -> list[codec.ImageState]:
        """Boot the image with this SHA-256 TLV at the next reset, once: unless confirmed, it reverts."""
        return self._state_write(image_hash, False, "mark for test")

    def confirm(self, image_hash: bytes | None = None) -> list[codec.ImageState]:
        """Keep the image (the running one without a hash)."""
        return self._state_write(image_hash, True, "confirm")

    def reset(self, boot_mode: int | None = None) -> bytes:
        """Reset the Thing (with ``boot_mode`` 1: into MCUboot's serial recovery); returns what it
        printed while rebooting (its boot banner).

        MCUboot answers first and reboots 250 ms later; a request sent in that
        window is lost, so this waits until the console has been quiet for longer.
        """
        what = "reset" if boot_mode is None else f"reset with boot_mode {boot_mode}"
        try:                                               # never twice: a second reset ends a trial boot
            self._request(lambda seq: codec.reset(seq, boot_mode), what, tries=1)
        except ThingTimeoutError:
            pass                                           # the answer may be lost to the reboot itself
        self._params = None                                # a bootloader has buffers of its own
        banner = self.link.drain(quiet=0.4, timeout=self.reset_settle)
        self.decoder.reset()
        return banner

    # --- upload ---

    def _upload(self, image: bytes, report: Callable[[str, int, int], None]) -> None:
        total, sha = len(image), hashlib.sha256(image).digest()
        max_packet = self.params()[0] - codec.FRAME_OVERHEAD
        off, restarts, stalls = 0, 0, 0
        report("writing", 0, total)
        while True:
            fields = codec.upload_fields(off, total, sha, self.image)
            size = min(codec.upload_room(max_packet, fields), total - off, self.chunk or total)
            if size <= 0:
                raise ThingError(f"{self.name}: a buffer of {max_packet + codec.FRAME_OVERHEAD} bytes leaves "
                                 "no room for upload data")
            data = image[off:off + size]
            body = self._request(partial(codec.image_upload, fields=fields, data=data), f"image upload at offset {off}",
                                 timeout=self.first_timeout if off == 0 else self.timeout)
            try:
                answered = codec.upload_offset(body)
            except codec.SmpFormatError as exc:
                raise ThingError(f"{self.name}: image upload at offset {off}: {exc}") from None
            if answered > total:
                raise ThingError(f"{self.name}: image upload at offset {off}: the device wants offset "
                                 f"{answered}, past the image's {total} bytes")
            report("writing", answered, total)
            if answered == total:
                return
            if answered == 0 and off > 0:
                restarts += 1           # it reset or lost the upload: MCUboot starts over
                if restarts > self.retries:
                    raise ThingError(f"{self.name}: image upload: the device started over {restarts} times, "
                                     f"the last at offset {off}")
            stalls = stalls + 1 if answered <= off else 0
            if stalls > self.retries:
                raise ThingError(f"{self.name}: image upload at offset {off}: no progress in {stalls} answers")
            off = answered

    # --- requests ---

    def _state_write(self, image_hash: bytes | None, confirm: bool, what: str) -> list[codec.ImageState]:
        body = self._request(lambda seq: codec.image_state_write(seq, image_hash, confirm), what)
        return self._states(body, what) if "images" in body else self.image_states()

    def _states(self, body: dict[str, Any], what: str) -> list[codec.ImageState]:
        try:
            return codec.image_states(body)
        except codec.SmpFormatError as exc:
            raise ThingError(f"{self.name}: {what}: {exc}") from None

    def _request(self, build: Callable[[int], bytes], what: str, *, timeout: float | None = None,
                 tries: int | None = None) -> dict[str, Any]:
        """Send a request and return its answer's body; retried with a new sequence number
        after a lost answer (every request fwagent sends is safe to repeat)."""
        timeout = self.timeout if timeout is None else timeout
        tries = self.retries + 1 if tries is None else tries
        for attempt in range(1, tries + 1):
            try:
                return self._exchange(build, what, timeout)
            except ThingTimeoutError as exc:
                if attempt == tries:
                    console = b" | ".join(self.decoder.console).decode("utf-8", "replace")
                    seen = f"; last console output: {console}" if console else ""
                    raise ThingTimeoutError(f"{exc.detail} (tried {tries} times){seen}") from None
                self._retries += 1
                self.link.drain(quiet=0.02, timeout=0.2)     # a late answer, noise: gone before resending
        raise AssertionError("unreachable")

    def _exchange(self, build: Callable[[int], bytes], what: str, timeout: float) -> dict[str, Any]:
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        packet = build(seq)
        sent = codec.Header.unpack(packet)
        self.decoder.reset()
        self.link.write(codec.encode_frame(packet))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise ThingTimeoutError("")
                line = self.link.read_until(b"\n", remaining, LINE_LIMIT, what)
            except ThingTimeoutError:
                raise ThingTimeoutError(f"{self.name}: no answer to {what} within {timeout:g} s") from None
            for answer in self.decoder.feed(line):
                try:
                    message = codec.decode_packet(answer)
                except codec.SmpFormatError:
                    continue            # not for us to read; the retry asks again
                header = message.header
                if (header.seq, header.group, header.id, header.op) != (seq, sent.group, sent.id, sent.op + 1):
                    continue            # stale: the answer to an earlier, timed-out request
                try:
                    codec.check_rc(message.body)
                except codec.SmpStatusError as exc:
                    raise SmpRefusedError(f"{self.name}: {what}: the device answered {exc}", rc=exc.rc) from None
                except codec.SmpFormatError as exc:
                    raise ThingError(f"{self.name}: {what}: {exc}") from None
                return message.body


class SmpRefusedError(ThingError):
    """The device answered a request with a nonzero return code (``rc``)."""

    code = "thing-refused"

    def __init__(self, detail: str, *, rc: int) -> None:
        super().__init__(detail)
        self.rc = rc


def _flow(session: Any, image: bytes, progress: FlashProgress | None, name: str,
          settings: Mapping[str, Any]) -> FlashResult:
    """The flow of the Thing's MCUboot mode (mcuboot_flow.py), imported when a Thing is flashed."""
    from bootloader_bridge.things.mcuboot_flow import flash

    return flash(session, image, progress, name, settings)


PROTOCOL = ThingProtocol(
    parity="none",
    options=(Option("boot_timeout", "number", 60.0, low=0.001, high=3600.0),   # seconds for a trial image to come up
             # MCUboot's mode, when the device does not report it
             Option("mcuboot_mode", "str", choices=mcuboot_modes.NAMES)),
    flasher=SmpFlasher, flow=_flow,
    rolls_back=lambda settings: mcuboot_modes.rolls_back(settings["mcuboot_mode"]))
