"""The simulated STM32 system bootloader: its state machine byte by byte, then on a pty against
an independent client, Debian's stm32flash (C, not ours; ``-m 8n1`` because a pty drops parity)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from hil.sim.stm32_bootloader import ACK, NACK, Bootloader, Faults, Stm32Simulator, stm32_crc
from conftest import require_tool

A, N = bytes((ACK,)), bytes((NACK,))


def out(bootloader: Bootloader, data: bytes) -> bytes:
    return b"".join(reply.data for reply in bootloader.feed(data))


def synced(**options: object) -> Bootloader:
    bootloader = Bootloader(**options)  # type: ignore[arg-type]
    assert out(bootloader, b"\x7f") == A
    return bootloader


def write(bootloader: Bootloader, address: int, data: bytes) -> bytes:
    frame = bytes((len(data) - 1,)) + data
    checksum = 0
    for byte in frame:
        checksum ^= byte
    addr = address.to_bytes(4, "big")
    return out(bootloader, b"\x31\xce" + addr + bytes((addr[0] ^ addr[1] ^ addr[2] ^ addr[3],))
               + frame + bytes((checksum,)))


def read(bootloader: Bootloader, address: int, count: int) -> bytes:
    addr = address.to_bytes(4, "big")
    return out(bootloader, b"\x11\xee" + addr + bytes((addr[0] ^ addr[1] ^ addr[2] ^ addr[3],))
               + bytes((count - 1, (count - 1) ^ 0xFF)))


# -- the state machine, no pty ---------------------------------------------------


def test_before_sync_only_0x7f_counts() -> None:
    bootloader = Bootloader()
    assert out(bootloader, b"\x00\xff\x55") == b""
    assert out(bootloader, b"\x7f") == A


def test_get_get_version_and_get_id_of_an_f1() -> None:
    bootloader = synced()
    assert out(bootloader, b"\x00\xff").hex(" ") == "79 07 22 00 01 02 11 21 31 43 79"
    assert out(bootloader, b"\x01\xfe").hex(" ") == "79 22 00 00 79"
    assert out(bootloader, b"\x02\xfd").hex(" ") == "79 01 04 10 79"


def test_an_f4_lists_extended_erase_and_get_checksum_when_asked() -> None:
    bootloader = synced(chip=0x413, get_checksum=True)
    assert out(bootloader, b"\x00\xff").hex(" ") == "79 08 31 00 01 02 11 21 31 44 a1 79"


def test_bad_complement_unknown_command_and_a_second_0x7f_are_nacked() -> None:
    bootloader = synced()
    assert out(bootloader, b"\x00\xfe") == N
    assert out(bootloader, b"\x63\x9c") == N            # write protect: not offered here
    assert out(bootloader, b"\x7f\x7f") == N            # stm32flash's "already synced" probe
    assert out(bootloader, b"\xff\x00") == N            # the resync of AN3155


def test_write_then_read_back() -> None:
    bootloader = synced()
    assert write(bootloader, 0x08000400, bytes(range(8))) == A + A + A
    assert read(bootloader, 0x08000400, 12) == A + A + A + bytes(range(8)) + b"\xff" * 4


def test_flash_only_clears_bits_until_erased() -> None:
    bootloader = synced()
    assert write(bootloader, 0x08000000, b"\x0f\x0f\xf0\xf0") == A + A + A
    assert write(bootloader, 0x08000000, b"\xf0\xff\xf0\xff") == A + A + A   # "works", says the device
    assert read(bootloader, 0x08000000, 4) == A + A + A + b"\x00\x0f\xf0\xf0"     # but holds old & new
    assert out(bootloader, b"\x43\xbc" + b"\x00\x00\x00") == A + A        # erase page 0
    assert read(bootloader, 0x08000000, 4) == A + A + A + b"\xff" * 4


def test_write_frames_the_device_refuses() -> None:
    bootloader = synced()
    assert out(bootloader, b"\x31\xce" + b"\x08\x00\x00\x00\x09") == A + N   # bad address XOR
    assert out(bootloader, b"\x31\xce" + b"\x08\x00\x00\x02\x0a") == A + N   # not word aligned
    assert out(bootloader, b"\x31\xce" + b"\x20\x00\x00\x00\x20") == A + N   # not flash
    assert write(bootloader, 0x08000000, b"\x01\x02\x03") == A + A + N       # not whole words
    assert out(bootloader, b"\x31\xce\x08\x00\x00\x00\x08" + b"\x03\x01\x02\x03\x04\x00") == A + A + N  # bad XOR
    assert read(bootloader, 0x0801FFFC, 8) == A + A + N                      # past the end of flash


def test_legacy_global_and_extended_mass_erase() -> None:
    f1 = synced()
    write(f1, 0x0801FC00, b"\x00" * 4)
    assert out(f1, b"\x43\xbc\xff\x00") == A + A
    assert f1.flash == b"\xff" * 128 * 1024
    f4 = synced(chip=0x413)
    write(f4, 0x08020000, b"\x00" * 4)                                       # sector 5
    assert out(f4, b"\x44\xbb" + b"\x00\x00\x00\x04\x04") == A + A           # sector 4 only
    assert f4.flash[0x20000:0x20004] == b"\x00" * 4
    assert out(f4, b"\x44\xbb" + b"\x00\x00\x00\x05\x05") == A + A           # sector 5
    assert f4.flash[0x20000:0x20004] == b"\xff" * 4
    assert out(f4, b"\x44\xbb" + b"\xff\xfe\x01") == A + N                   # bank erase: one bank here
    assert out(f4, b"\x44\xbb" + b"\xff\xff\x00") == A + A
    assert out(f4, b"\x44\xbb" + b"\x00\x00\x00\x0c\x0c") == A + N           # there is no sector 12


def test_erase_and_program_take_the_chips_time() -> None:
    bootloader = synced()
    replies = bootloader.feed(b"\x43\xbc" + b"\x01\x00\x01\x00")             # two 1 KiB pages
    assert [reply.busy for reply in replies] == [0.0, pytest.approx(0.040)]
    replies = bootloader.feed(b"\x31\xce\x08\x00\x00\x00\x08" + bytes((255,)) + bytes(256) + b"\xff")
    assert replies[-1].busy == pytest.approx(256 * 26e-6)


def test_get_checksum_is_the_stm32_crc() -> None:
    bootloader = synced(get_checksum=True)
    write(bootloader, 0x08000000, b"1234")
    crc = stm32_crc(b"1234").to_bytes(4, "big")
    reply = out(bootloader, b"\xa1\x5e" + b"\x08\x00\x00\x00\x08" + b"\x00\x00\x00\x04\x04")
    assert reply == A + A + A + A + crc + bytes((crc[0] ^ crc[1] ^ crc[2] ^ crc[3],))
    assert out(bootloader, b"\xa1\x5e" + b"\x08\x00\x00\x00\x08" + b"\x00\x00\x00\x06\x06") == A + A + N


def test_go_leaves_the_bootloader() -> None:
    bootloader = synced()
    assert out(bootloader, b"\x21\xde\x08\x00\x00\x00\x08") == A + A
    assert bootloader.went_to == 0x08000000
    assert out(bootloader, b"\x00\xff") == b""                                # the application runs
    assert out(bootloader, b"\x7f") == A


def test_faults_fire_on_the_nth_write_once() -> None:
    bootloader = synced(faults=Faults(nack_write=2, drop_write_ack=3, noise_write=4, ignore_write=5))
    assert write(bootloader, 0x08000000, b"\x00" * 4) == A + A + A
    assert write(bootloader, 0x08000004, b"\x00" * 4) == A + A + N
    assert write(bootloader, 0x08000004, b"\x00" * 4) == A + A
    assert write(bootloader, 0x08000008, b"\x00" * 4) == A + A + b"\x00\x55\xaa\xf0" + A
    assert write(bootloader, 0x0800000C, b"\x00" * 4) == A + A + A
    assert bootloader.flash[:16] == b"\x00" * 12 + b"\xff" * 4                # the 5th went nowhere
    assert write(bootloader, 0x0800000C, b"\x00" * 4) == A + A + A


def test_a_reset_in_the_middle_loses_the_session() -> None:
    bootloader = synced(faults=Faults(reset_write=1))
    assert write(bootloader, 0x08000000, b"\x00" * 8) == A + A               # then silence
    assert bootloader.flash[:8] == b"\x00" * 4 + b"\xff" * 4                  # half programmed
    assert out(bootloader, b"\x00\xff") == b""                                # waits for 0x7F again
    assert out(bootloader, b"\x7f") == A and bootloader.resets == 1


def test_a_lost_address_ack_leaves_the_device_waiting_for_the_block() -> None:
    bootloader = synced(faults=Faults(drop_address_ack=1))
    assert out(bootloader, b"\x31\xce\x08\x00\x00\x00\x08") == A
    assert out(bootloader, b"\x03\x00\x00\x00\x00\x03") == A


def test_garbled_programming_clears_wrong_bits_and_nacks() -> None:
    bootloader = synced(faults=Faults(garble_write=1))
    assert write(bootloader, 0x08000000, b"\xff\xff\xff\xff") == A + A + N
    assert bootloader.flash[:4] == b"\x5a" * 4


def test_a_banner_comes_before_the_first_sync_ack() -> None:
    bootloader = Bootloader(faults=Faults(banner=b"boot\r\n"))
    assert out(bootloader, b"\x7f") == b"boot\r\n" + A


# -- on a pty, with stm32flash ---------------------------------------------------


def stm32flash(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("stm32flash"), "-m", "8n1", "-b", "115200", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "fw.bin"
    path.write_bytes(os.urandom(40_000))
    return path


def test_stm32flash_writes_verifies_reads_back_and_starts_an_f1(image: Path, tmp_path: Path) -> None:
    with Stm32Simulator(0x410, baud=0, delays=False) as sim:
        done = stm32flash("-w", str(image), "-v", "-g", "0x0", sim.port)
        assert done.returncode == 0, done.stderr
        assert "Device ID    : 0x0410" in done.stdout and "Version      : 0x22" in done.stdout
        assert "Wrote and verified address 0x08009c40 (100.00%) Done." in done.stdout
        assert sim.bootloader.went_to == 0x08000000
        back = tmp_path / "back.bin"
        done = stm32flash("-r", str(back), "-S", f"0x08000000:{image.stat().st_size}", sim.port)
        assert done.returncode == 0, done.stderr
        assert back.read_bytes() == image.read_bytes()
        assert sim.flash[40_000:40 * 1024] == b"\xff" * 960     # 40 pages erased, the rest untouched
        assert sim.bootloader.syncs == 2                        # Go left the bootloader: the read synced anew
        done = stm32flash("-r", str(back), "-S", "0x08000000:256", sim.port)
        assert done.returncode == 0, done.stderr
        assert sim.bootloader.commands[0x7F] == 1               # found synced: 0x7F 0x7F -> NACK
        assert "the interface was not closed properly" not in done.stderr


def test_stm32flash_erases_f4_sectors_with_extended_erase(image: Path, tmp_path: Path) -> None:
    with Stm32Simulator(0x413, baud=0, delays=False) as sim:
        sim.bootloader.flash[0x20000:0x20004] = b"\x00" * 4            # sector 5, outside the image
        done = stm32flash("-w", str(image), "-v", sim.port)
        assert done.returncode == 0, done.stderr
        assert sim.flash[:40_000] == image.read_bytes()
        assert sim.flash[0x20000:0x20004] == b"\x00" * 4
        assert sim.bootloader.commands[0x44] == 1


def test_stm32flash_crc_from_the_device_matches_its_own_over_a_read_back(image: Path) -> None:
    """Get Checksum framing and CRC: stm32flash -C asks the device when it lists 0xA1, else
    reads the flash back and computes the CRC itself."""
    crcs = []
    for listed in (True, False):
        with Stm32Simulator(0x410, baud=0, delays=False, get_checksum=listed) as sim:
            assert stm32flash("-w", str(image), sim.port).returncode == 0
            done = stm32flash("-C", "-S", "0x08000000:40000", sim.port)
            assert done.returncode == 0, done.stderr
            assert sim.bootloader.commands[0xA1] == (1 if listed else 0)
            crcs.append(int(re.search(r"CRC\(0x08000000-0x08009c40\) = 0x([0-9a-f]{8})", done.stdout)[1], 16))
    assert crcs[0] == crcs[1] == stm32_crc(image.read_bytes())


def test_stm32flash_stops_at_an_injected_nack(image: Path) -> None:
    with Stm32Simulator(0x410, baud=0, delays=False, faults=Faults(nack_write=20)) as sim:
        done = stm32flash("-w", str(image), sim.port)
        assert done.returncode == 1
        assert "Failed to write memory at address 0x08001300" in done.stderr


def test_the_line_rate_is_modelled(image: Path) -> None:
    """Every character costs bits_per_byte / baud on the pty, both ways; a pty itself is instant."""
    data = image.read_bytes()[:8192]
    image.write_bytes(data)
    with Stm32Simulator(0x410, baud=115200, bits_per_byte=11, delays=False) as sim:
        started = time.monotonic()
        assert stm32flash("-w", str(image), sim.port).returncode == 0
        elapsed = time.monotonic() - started
        line = (sim.bootloader.bytes_in + sim.bootloader.bytes_out) * 11 / 115200
        assert sim.bootloader.bytes_in >= 8192 + 32 * 9      # per block: 31 CE, address, N, XOR
        assert line <= elapsed                # how close the clients come is bench/bench_stm32.py's
