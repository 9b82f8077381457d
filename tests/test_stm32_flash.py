"""fwagent's STM32 flasher against the simulated system bootloader on a pty."""

from __future__ import annotations

import os
import pty
import random
import tty
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from agent.errors import ConfigError, ThingError, ThingTimeoutError, ThingVerifyError
from bootloader_bridge.things import registry
from bootloader_bridge.things.base import ThingFlasher
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.stm32 import Stm32Flasher
from hil.sim.stm32_bootloader import Chip, Faults, Stm32Simulator

FAST = {"sync_timeout": 0.3, "probe_timeout": 0.05, "ack_timeout": 0.3, "write_timeout": 0.3}


def firmware(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@contextmanager
def thing(chip: Chip | int = 0x410, *, faults: Faults = Faults(), get_checksum: bool = False,
          **options: object) -> Iterator[tuple[Stm32Simulator, Stm32Flasher]]:
    with Stm32Simulator(chip, baud=0, delays=False, faults=faults, get_checksum=get_checksum) as sim, \
            SerialLink(sim.port, name="mcu1") as link:
        yield sim, Stm32Flasher(link, **{**FAST, **options})  # type: ignore[arg-type]


def test_writes_verifies_and_reads_back_64_kib_bit_exact() -> None:
    image = firmware(64 * 1024)
    phases: list[tuple[str, int, int]] = []
    with thing() as (sim, flasher):
        result = flasher.flash(image, lambda phase, done, total: phases.append((phase, done, total)))
        assert sim.flash[:len(image)] == image
        assert sim.flash[len(image):] == b"\xff" * (64 * 1024)
        assert sim.bootloader.writes == 256 and sim.bootloader.commands[0x11] == 256   # read back
    assert (result.written, result.verified, result.retries) == (len(image), "read-back", 0)
    assert result.seconds > 0
    assert [phase for phase, done, _ in phases if done == 0] == ["erasing", "writing", "verifying"]
    assert phases[-1] == ("verifying", len(image), len(image))
    assert ("erasing", 64 * 1024, 64 * 1024) in phases


def test_the_flasher_is_the_registrys_stm32_and_a_thing_flasher() -> None:
    with Stm32Simulator(baud=0, delays=False) as sim, SerialLink(sim.port) as link:
        flasher = registry.create("stm32", link, address=0x08000000, retries=2)
        assert isinstance(flasher, Stm32Flasher) and isinstance(flasher, ThingFlasher)


def test_info_shows_the_chip_and_its_bootloader() -> None:
    with thing() as (_, flasher):
        info = flasher.info()
    assert (info.protocol, info.device, info.bootloader) == ("stm32", "0x410 STM32F10xxx medium-density", "2.2")
    assert info.details["pid"] == 0x410 and info.details["flash_size"] == 128 * 1024
    assert info.details["commands"] == ["0x00", "0x01", "0x02", "0x11", "0x21", "0x31", "0x43"]
    assert info.details["option_bytes"] == "00 00"


def test_an_f4_gets_only_the_sectors_the_image_covers_erased() -> None:
    image = firmware(40_000)
    with thing(0x413) as (sim, flasher):
        sim.bootloader.flash[0xC000:0xC004] = b"\x00" * 4       # sector 3 (48 KiB): outside the image
        assert flasher.info().bootloader == "3.1"
        flasher.flash(image)
        assert sim.flash[:40_000] == image
        assert sim.flash[40_000:0xC000] == b"\xff" * (0xC000 - 40_000)
        assert sim.flash[0xC000:0xC004] == b"\x00" * 4
        assert sim.bootloader.commands[0x44] == 1


def test_mass_erase_when_asked() -> None:
    with thing(erase="mass") as (sim, flasher):
        sim.bootloader.flash[0x1FC00:0x1FC04] = b"\x00" * 4
        flasher.flash(firmware(1024))
        assert sim.flash[0x1FC00:0x1FC04] == b"\xff" * 4


def test_blocks_of_erased_bytes_are_not_written() -> None:
    image = firmware(1024) + b"\xff" * 2048 + firmware(300, seed=2)
    with thing() as (sim, flasher):
        flasher.flash(image)
        assert sim.flash[:len(image)] == image
        assert sim.bootloader.writes == 4 + 2


def test_get_checksum_verifies_without_reading_back() -> None:
    image = firmware(10_001)                                    # not whole words: padded with 0xFF
    with thing(get_checksum=True) as (sim, flasher):
        result = flasher.flash(image)
        assert sim.bootloader.commands[0xA1] == 1 and sim.bootloader.commands[0x11] == 0
    assert result.verified == "crc32 by the device (Get Checksum)"
    with thing(get_checksum=True, verify="read-back") as (sim, flasher):
        assert flasher.flash(image).verified == "read-back"


def test_the_commands_needed_are_checked_before_anything_is_erased() -> None:
    with thing(verify="checksum") as (sim, flasher):
        with pytest.raises(ThingError, match=r"^mcu1: the bootloader on /dev/pts/\d+ does not list "
                                             r"Get Checksum \(0xA1\)$") as caught:
            flasher.flash(firmware(1024))
        assert sim.bootloader.commands[0x43] == 0 and sim.bootloader.writes == 0
    assert caught.value.code == "thing-config"
    # "erase" 0x00 is Get again: this bootloader lists no erase command
    no_erase = Chip(0x410, "F1 without erase", 0x22, 0x00, ((128, 1024),), page_erase=0.0, mass_erase=0.0, program=0.0)
    with thing(no_erase) as (sim, flasher):
        with pytest.raises(ThingError, match=r"does not list Erase \(0x43 or 0x44\)$"):
            flasher.flash(firmware(1024))


def test_go_starts_the_image() -> None:
    with thing(go=True) as (sim, flasher):
        flasher.flash(firmware(512))
        assert sim.bootloader.went_to == 0x08000000


def test_a_second_session_finds_the_bootloader_synced() -> None:
    """The first 0x7F is taken for a command byte (no answer), the second completes it: NACK."""
    with Stm32Simulator(baud=0, delays=False) as sim:
        for _ in range(2):
            with SerialLink(sim.port, name="mcu1") as link:
                Stm32Flasher(link, **FAST).flash(firmware(512))  # type: ignore[arg-type]
        assert sim.bootloader.syncs == 1 and sim.bootloader.commands[0x7F] == 1


def test_noise_on_the_line_before_sync_is_survived() -> None:
    with thing(faults=Faults(banner=b"\r\n*** Booting 2.0 ***\r\n\x00\x55\xaa")) as (sim, flasher):
        result = flasher.flash(firmware(4096))
        assert sim.flash[:4096] == firmware(4096)
    assert result.retries == 0


FAULTS = {
    "nack": Faults(nack_write=5),
    "garbled programming": Faults(garble_write=7),        # bits cleared: the page is erased again
    "lost address ack": Faults(drop_address_ack=5),       # the device waits for a block: 0xFF fills it
    "lost final ack": Faults(drop_write_ack=5),           # programmed: the read-back shows it
    "noise before the ack": Faults(noise_write=5),
    "reset in the middle": Faults(reset_write=5),         # half programmed, then 0x7F again
}


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
def test_an_injected_fault_costs_a_retry(faults: Faults) -> None:
    image = firmware(8192)
    with thing(faults=faults) as (sim, flasher):
        result = flasher.flash(image)
        assert sim.flash[:len(image)] == image
    assert result.retries == 1 and result.verified == "read-back"


def test_garbled_programming_gets_the_page_erased_again_and_its_earlier_blocks_rewritten() -> None:
    image = firmware(8192)
    with thing(faults=Faults(garble_write=7)) as (sim, flasher):      # block 7: 0x600, in page 1 (0x400-0x7FF)
        flasher.flash(image)
        assert sim.flash[:len(image)] == image
        assert sim.bootloader.commands[0x43] == 2                        # the image's pages, then page 1
        assert sim.bootloader.writes == 32 + 1 + 2                       # the garbled try, blocks 5 and 6 again


def test_a_nack_that_stays_names_the_thing_and_the_address() -> None:
    with thing(faults=Faults(nack_write=3), retries=0) as (_, flasher):
        with pytest.raises(ThingError, match=r"^mcu1: NACK on write at 0x08000200 \(1 attempt\)$") as caught:
            flasher.flash(firmware(4096))
    assert caught.value.code == "thing-nack"


def test_a_lost_reply_that_stays_is_a_timeout_at_the_address() -> None:
    with thing(faults=Faults(drop_write_ack=2), retries=0) as (_, flasher):
        with pytest.raises(ThingTimeoutError, match=r"^mcu1: no reply on write at 0x08000100 \(1 attempt\)$"):
            flasher.flash(firmware(4096))


def test_garbled_replies_that_stay_are_a_protocol_error() -> None:
    with thing(faults=Faults(noise_write=1), retries=0) as (_, flasher):
        with pytest.raises(ThingError, match=r"^mcu1: 0x00 instead of ACK on write at 0x08000000") as caught:
            flasher.flash(firmware(4096))
    assert caught.value.code == "thing-protocol"


@pytest.mark.parametrize("get_checksum", [False, True], ids=["read-back", "checksum"])
def test_a_write_the_device_ignored_is_a_verify_mismatch_at_its_offset(get_checksum: bool) -> None:
    """A write-protected page takes a write without error (AN3155): only verifying finds it."""
    with thing(faults=Faults(ignore_write=9), get_checksum=get_checksum) as (_, flasher):
        with pytest.raises(ThingVerifyError, match=r"^mcu1: verify mismatch at offset 0x800 \(0x08000800\)$"):
            flasher.flash(firmware(4096))


def test_a_thing_that_never_answers_is_no_sync() -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        with SerialLink(os.ttyname(slave), name="mcu1") as link:
            flasher = Stm32Flasher(link, sync_timeout=0.1, sync_tries=2)
            with pytest.raises(ThingTimeoutError, match=r"^mcu1: no sync on /dev/pts/\d+ \(0x7F unanswered 2 times"):
                flasher.info()
        assert os.read(master, 16) == b"\x7f\x7f"
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(("options", "size", "message"), [
    ({"address": 0x08000100}, 1024, r"address 0x08000100 is not on a page boundary \(page 0 starts at 0x08000000\)"),
    ({}, 128 * 1024 + 1, r"an image of 131073 bytes at 0x08000000 does not fit the flash, which ends at 0x08020000"),
    ({"address": 0x0801FC00}, 2048, r"an image of 2048 bytes at 0x0801FC00 does not fit the flash, which ends at"),
    ({"address": 0x20000000}, 16, r"address 0x20000000 is outside the flash \(0x08000000-0x08020000\)"),
])
def test_a_bad_image_is_refused_before_any_byte_is_sent(options: dict[str, int], size: int, message: str) -> None:
    with thing(flash_size=128 * 1024, page_size=1024, **options) as (sim, flasher):
        with pytest.raises(ThingError, match=f"^mcu1: {message}") as caught:
            flasher.flash(firmware(size))
        assert sim.bootloader.bytes_in == 0
    assert caught.value.code == "thing-image"


def test_without_configured_geometry_the_chip_id_decides_before_anything_is_erased() -> None:
    with thing(0x410) as (sim, flasher):
        with pytest.raises(ThingError, match="does not fit the flash, which ends at 0x08020000"):
            flasher.flash(firmware(128 * 1024 + 4))
        assert sim.bootloader.commands[0x02] == 1
        assert sim.bootloader.commands[0x43] == 0 and sim.bootloader.writes == 0


def test_an_unknown_part_needs_its_geometry() -> None:
    odd = Chip(0x4FF, "odd", 0x31, 0x44, ((16, 4096),), page_erase=0.0, mass_erase=0.0, program=0.0)
    with thing(odd) as (_, flasher):
        with pytest.raises(ThingError, match=r"mcu1: unknown STM32 part 0x4FF on /dev/pts/\d+; set flash_size"):
            flasher.flash(firmware(100))
        assert flasher.info().device == "0x4FF unknown STM32 part"
    with thing(odd, flash_size=64 * 1024, page_size=4096) as (sim, flasher):
        flasher.flash(firmware(10_000))
        assert sim.flash[:10_000] == firmware(10_000)


def test_options_are_checked() -> None:
    with Stm32Simulator(baud=0) as sim, SerialLink(sim.port) as link:
        with pytest.raises(ConfigError, match="erase must be"):
            Stm32Flasher(link, erase="sectors")
        with pytest.raises(ConfigError, match="verify must be"):
            Stm32Flasher(link, verify="crc")
        with pytest.raises(ThingError, match="the image is empty"):
            Stm32Flasher(link).flash(b"")
