"""SMP over a serial console (MCUboot serial recovery, Zephyr mcumgr): pure codecs.

Wire format, as MCUboot's ``boot_serial.c`` and Zephyr's console transport read it::

    0x06 0x09 <base64> LF   [0x04 0x14 <base64> LF]*        lines of at most 127 bytes
    base64 of:  [length BE16][SMP packet][CRC-16/XMODEM BE16]  length counts packet + CRC
    SMP packet: [res:3|ver:2|op:3][flags][len BE16][group BE16][seq][id] CBOR map

Everything that is not a frame line is console output (boot banners, logs on a
shared UART) and is skipped. A frame whose CRC fails is dropped without an
answer, as the devices do: the sender only ever sees a timeout.

The base64 text is cut into lines of 124 characters, a multiple of 4, so every
line decodes on its own (MCUboot decodes line by line into a buffer of
``BOOT_SERIAL_MAX_RECEIVE_SIZE``, 128-byte lines by default, a longer line is cut
short). The reassembly buffer bounds the whole decoded frame, length and CRC
included: the largest SMP packet is ``buf_size - 4``.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

import cbor2

START = b"\x06\x09"
CONTINUE = b"\x04\x14"
LINE_CHARS = 124          # base64 characters per line: 2 + 124 + LF = 127 bytes
HEADER = struct.Struct(">BBHHBB")
HEADER_SIZE = HEADER.size
FRAME_OVERHEAD = 4        # the length and CRC fields around a packet, inside the device's buffer

# op codes
READ, READ_RSP, WRITE, WRITE_RSP = 0, 1, 2, 3
# groups and the commands fwagent uses
GROUP_OS, GROUP_IMAGE = 0, 1
OS_ECHO, OS_RESET, OS_PARAMS, OS_BOOTLOADER_INFO = 0, 5, 6, 8
BOOT_MODE_BOOTLOADER = 1   # os reset's boot_mode: stay in the bootloader (MCUboot's serial recovery)
IMAGE_STATE, IMAGE_UPLOAD = 0, 1

MGMT_ERR = {
    0: "EOK", 1: "EUNKNOWN", 2: "ENOMEM", 3: "EINVAL", 4: "ETIMEOUT", 5: "ENOENT", 6: "EBADSTATE",
    7: "EMSGSIZE", 8: "ENOTSUP", 9: "ECORRUPT", 10: "EBUSY", 11: "EACCESSDENIED",
    12: "UNSUPPORTED_TOO_OLD", 13: "UNSUPPORTED_TOO_NEW",
}
ENOTSUP = 8


class SmpFormatError(ValueError):
    """Bytes that are not an SMP packet or answer of the expected shape."""


class SmpStatusError(Exception):
    """The device answered with a nonzero return code."""

    def __init__(self, rc: int, name: str, reason: str = "", group: int | None = None) -> None:
        self.rc, self.name, self.reason, self.group = rc, name, reason, group
        where = f" of group {group}" if group is not None else ""
        super().__init__(f"rc {rc} ({name}){where}" + (f": {reason}" if reason else ""))


# --- CRC and console framing ------------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_xmodem(data: bytes, crc: int = 0) -> int:
    """CRC-16/XMODEM: polynomial 0x1021, initial 0, not reflected, no final XOR."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def encode_frame(packet: bytes) -> bytes:
    """The console lines that carry one SMP packet."""
    if len(packet) + 2 > 0xFFFF:
        raise ValueError(f"an SMP packet of {len(packet)} bytes does not fit a console frame")
    raw = struct.pack(">H", len(packet) + 2) + packet + struct.pack(">H", crc16_xmodem(packet))
    text = base64.b64encode(raw)
    lines = bytearray()
    for start in range(0, len(text), LINE_CHARS):
        lines += (START if start == 0 else CONTINUE) + text[start:start + LINE_CHARS] + b"\n"
    return bytes(lines)


class FrameDecoder:
    """SMP packets out of console bytes, in any pieces, mixed with other output.

    ``feed`` returns the packets completed by the bytes given. Lines without a
    frame marker go to ``console`` (the last few are kept, for error messages).
    A marker may follow stray bytes on its line (a log line cut short by a frame):
    the frame starts at the last marker. Damaged frames (bad base64, wrong length,
    bad CRC, over ``max_frame``) are dropped and counted in ``damaged``.

    ``max_line`` and ``max_frame`` model a device's limits: a longer line is cut
    short as MCUboot does (which then fails the CRC), a longer frame is dropped.
    """

    def __init__(self, *, max_line: int | None = None, max_frame: int | None = None) -> None:
        self.max_line, self.max_frame = max_line, max_frame
        self.console: deque[bytes] = deque(maxlen=8)
        self.damaged = 0
        self._line = bytearray()
        self._frame: bytearray | None = None
        self._pending = b""           # base64 characters short of a group of 4

    def reset(self) -> None:
        """Forget a frame in progress (before a new request, after a device reset)."""
        self._line.clear()
        self._frame, self._pending = None, b""

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        *complete, rest = bytes(data).split(b"\n")
        for piece in complete:
            self._line += piece
            packet = self._take_line(bytes(self._line))
            self._line.clear()
            if packet is not None:
                packets.append(packet)
        self._line += rest
        return packets

    def _take_line(self, line: bytes) -> bytes | None:
        if self.max_line is not None and len(line) + 1 > self.max_line:
            line = line[:self.max_line - 1]
        at = max(line.rfind(START), line.rfind(CONTINUE))
        if at < 0:
            if line.strip():
                self.console.append(line.rstrip(b"\r"))
            return None
        if at > 0 and line[:at].strip():
            self.console.append(line[:at])
        marker, text = line[at:at + 2], line[at + 2:].rstrip(b"\r")
        if marker == START:
            self._frame, self._pending = bytearray(), b""
        elif self._frame is None:
            return None                      # a continuation of a frame we did not see start
        text = self._pending + text
        whole = len(text) // 4 * 4
        try:
            self._frame += binascii.a2b_base64(text[:whole], strict_mode=True)
        except binascii.Error:
            return self._drop()
        self._pending = text[whole:]
        frame = self._frame
        if self.max_frame is not None and len(frame) > self.max_frame:
            return self._drop()
        if len(frame) < 2 or self._pending:
            return None
        want = int.from_bytes(frame[:2], "big")
        if len(frame) - 2 < want:
            return None
        if len(frame) - 2 > want or want < 2 or crc16_xmodem(frame[2:]) != 0:
            return self._drop()
        self._frame = None
        return bytes(frame[2:-2])

    def _drop(self) -> None:
        self.damaged += 1
        self._frame, self._pending = None, b""
        return None


# --- SMP header and packets ---------------------------------------------------


@dataclass(frozen=True)
class Header:
    op: int
    group: int
    id: int
    seq: int
    length: int = 0
    flags: int = 0
    version: int = 0          # 0: SMP v1 (every MCUboot reads it), 1: SMP v2

    def pack(self) -> bytes:
        return HEADER.pack((self.version & 3) << 3 | (self.op & 7), self.flags, self.length,
                           self.group, self.seq, self.id)

    @classmethod
    def unpack(cls, data: bytes) -> "Header":
        if len(data) < HEADER_SIZE:
            raise SmpFormatError(f"an SMP header is {HEADER_SIZE} bytes, got {len(data)}")
        first, flags, length, group, seq, ident = HEADER.unpack_from(data)
        return cls(op=first & 7, group=group, id=ident, seq=seq, length=length, flags=flags,
                   version=(first >> 3) & 3)


@dataclass(frozen=True)
class Message:
    header: Header
    body: dict[str, Any]


def encode_packet(op: int, group: int, ident: int, seq: int, body: dict[str, Any], *, version: int = 0) -> bytes:
    payload = cbor2.dumps(body)
    return Header(op, group, ident, seq, len(payload), 0, version).pack() + payload


def decode_packet(packet: bytes) -> Message:
    """Header and CBOR map of one packet.

    The map is read with cbor2, not fwagent's strict manifest decoder: MCUboot's
    zcbor writes indefinite-length maps and arrays, which that decoder refuses on
    purpose. A device's answer carries no signature for two readings to differ on.
    """
    header = Header.unpack(packet)
    payload = packet[HEADER_SIZE:]
    if header.length != len(payload):
        raise SmpFormatError(f"the SMP header says {header.length} body bytes, {len(payload)} came")
    try:
        body = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise SmpFormatError(f"the body is not CBOR: {exc}") from None
    if not isinstance(body, dict):
        raise SmpFormatError(f"the body is a CBOR {type(body).__name__}, not a map")
    return Message(header, body)


def check_rc(body: dict[str, Any]) -> None:
    """Raise SmpStatusError for an error answer: ``{"rc": n, "rsn"?}`` (SMP v1, MCUboot,
    which also sends ``"rc": 0`` on success) or ``{"err": {"group", "rc"}}`` (SMP v2)."""
    rc = body.get("rc", 0)
    if not isinstance(rc, int) or isinstance(rc, bool):
        raise SmpFormatError(f"rc is {rc!r}, not an integer")
    if rc:
        reason = body.get("rsn")
        raise SmpStatusError(rc, MGMT_ERR.get(rc, "user-defined" if rc >= 256 else "unknown"),
                             reason if isinstance(reason, str) else "")
    err = body.get("err")
    if isinstance(err, dict) and err.get("rc"):
        group, rc = err.get("group"), err.get("rc")
        if not isinstance(rc, int) or not isinstance(group, int):
            raise SmpFormatError(f"malformed v2 error {err!r}")
        name = MGMT_ERR.get(rc, "unknown") if group == GROUP_OS else "group-specific"
        raise SmpStatusError(rc, name, "", group)


# --- requests -----------------------------------------------------------------


def params_read(seq: int) -> bytes:
    return encode_packet(READ, GROUP_OS, OS_PARAMS, seq, {})


def reset(seq: int, boot_mode: int | None = None) -> bytes:
    """Reset; with ``boot_mode`` 1 a Zephyr application built for it reboots into MCUboot's
    serial recovery (a device without it ignores the field and reboots as usual)."""
    return encode_packet(WRITE, GROUP_OS, OS_RESET, seq, {} if boot_mode is None else {"boot_mode": boot_mode})


def bootloader_info_read(seq: int, query: str | None = None) -> bytes:
    """Bootloader information: without a query the bootloader's name, with ``"mode"`` its mode."""
    return encode_packet(READ, GROUP_OS, OS_BOOTLOADER_INFO, seq, {} if query is None else {"query": query})


def image_state_read(seq: int) -> bytes:
    return encode_packet(READ, GROUP_IMAGE, IMAGE_STATE, seq, {})


def image_state_write(seq: int, image_hash: bytes | None, confirm: bool) -> bytes:
    """Mark the image with ``image_hash`` for a test boot (confirm=False), or confirm
    it (confirm=True; without a hash, the running image)."""
    body: dict[str, Any] = {"confirm": confirm}
    if image_hash is not None:
        body = {"hash": image_hash, **body}
    return encode_packet(WRITE, GROUP_IMAGE, IMAGE_STATE, seq, body)


def upload_fields(off: int, total: int, sha: bytes, image: int) -> dict[str, Any]:
    """The upload request without its data: ``len``, ``sha`` and ``image`` go only with offset 0."""
    if off == 0:
        return {"off": 0, "len": total, "sha": sha, "image": image}
    return {"off": off}


def image_upload(seq: int, fields: dict[str, Any], data: bytes) -> bytes:
    return encode_packet(WRITE, GROUP_IMAGE, IMAGE_UPLOAD, seq, {**fields, "data": bytes(data)})


def upload_room(max_packet: int, fields: dict[str, Any]) -> int:
    """The most data bytes an upload request with ``fields`` can carry in ``max_packet``
    bytes (header and CBOR): the data's own CBOR length prefix grows with it."""
    empty = len(cbor2.dumps({**fields, "data": b""}))    # includes the 1-byte prefix of b""
    room = max_packet - HEADER_SIZE - (empty - 1)
    size = room - 1
    while size > 0 and size + _prefix(size) > room:
        size -= 1
    return max(size, 0)


def _prefix(length: int) -> int:
    return 1 if length < 24 else 2 if length < 0x100 else 3 if length < 0x10000 else 5


# --- answers ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageState:
    slot: int
    version: str
    image: int = 0
    hash: bytes | None = None
    bootable: bool = False
    pending: bool = False
    confirmed: bool = False
    active: bool = False
    permanent: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"image": self.image, "slot": self.slot, "version": self.version,
                "hash": self.hash.hex() if self.hash else None, "bootable": self.bootable,
                "pending": self.pending, "confirmed": self.confirmed, "active": self.active,
                "permanent": self.permanent}


def image_states(body: dict[str, Any]) -> list[ImageState]:
    images = body.get("images")
    if not isinstance(images, list):
        raise SmpFormatError("the image state answer has no list of images")
    states = []
    for entry in images:
        if not isinstance(entry, dict) or not isinstance(entry.get("slot"), int):
            raise SmpFormatError(f"image state entry {entry!r} has no slot")
        image_hash = entry.get("hash")
        states.append(ImageState(
            slot=entry["slot"], version=str(entry.get("version", "")), image=int(entry.get("image", 0)),
            hash=bytes(image_hash) if isinstance(image_hash, (bytes, bytearray)) else None,
            **{flag: entry.get(flag) is True for flag in ("bootable", "pending", "confirmed", "active",
                                                          "permanent")}))
    return states


def params(body: dict[str, Any]) -> tuple[int, int]:
    """``(buf_size, buf_count)`` of an MCUmgr params answer."""
    size, count = body.get("buf_size"), body.get("buf_count", 1)
    if not isinstance(size, int) or not isinstance(count, int) or size <= FRAME_OVERHEAD + HEADER_SIZE:
        raise SmpFormatError(f"MCUmgr params buf_size={size!r} buf_count={count!r} make no sense")
    return size, count


def bootloader_mode(body: dict[str, Any]) -> int:
    """MCUboot's mode number from a bootloader-information answer to ``{"query": "mode"}``
    (-1: the application does not know it)."""
    mode = body.get("mode")
    if not isinstance(mode, int) or isinstance(mode, bool) or not -1 <= mode < 256:
        raise SmpFormatError(f"the bootloader information answer has no mode ({body!r})")
    return mode


def in_bootloader(body: dict[str, Any]) -> bool:
    """Whether an image state answer comes from MCUboot's serial recovery rather than an
    application: a Zephyr application's answer carries ``splitStatus`` and flags its running
    image active; MCUboot's recovery lists images without either."""
    images = body.get("images")
    listed = images if isinstance(images, list) else []
    return "splitStatus" not in body and not any(isinstance(i, dict) and i.get("active") is True for i in listed)


def upload_offset(body: dict[str, Any]) -> int:
    off = body.get("off")
    if not isinstance(off, int) or isinstance(off, bool) or off < 0:
        raise SmpFormatError(f"the upload answer has no offset ({body!r})")
    return off
