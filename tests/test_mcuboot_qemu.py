"""fwagent against real firmware: Zephyr 4.4 smp_server images with MCUboot (tests/smp_servers.py),
booted in QEMU or run as native_sim executables, flashed through the agent as a configured Thing.

* qemu_cortex_m0 (nRF51, MCUboot in a swap mode): ``fwagent things flash`` boots the new image on
  trial, sees it run and confirms it; a machine reset in mid-upload leaves the old image booting;
* mps2_an385 (MCUboot in RAM-load mode with serial recovery), several buffer sizes: an upload from
  the application into the slot not running, booted by version; the same through serial recovery
  entered with ``os reset`` boot_mode 1; a power cut (QEMU killed) in mid-upload;
* native_sim servers without the image group: ``things info`` and the refusal of a flash.

None of these applications reports its MCUboot mode (bootloader information is not built in), so
the mps2 Things are configured with theirs. Each flash prints its time and rate (``-s`` shows them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import ThingConfig
from agent.errors import ThingError
from agent.things import flash, info
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.mcuboot_image import parse
from bootloader_bridge.things.smp import SmpFlasher, SmpRefusedError
from conftest import missing
from hil.mcu.firmware import Server, Unavailable, server
from hil.mcu.firmware import resign as firmware_resign
from hil.sim.smp_device import imgtool_path, sign_image
from install_bench import make_gateway
from smp_servers import native_sim, qemu

SLOT0, SLOT1 = 0x20050000, 0x200D0000      # mps2 RAM-load fixtures: the slots in the simulated flash
LINE = 115200 / 10                          # bytes/s of a 115200-baud 8N1 line, for comparison


def firmware(key: str) -> Server:
    try:
        return server(key)
    except Unavailable as exc:
        missing(str(exc))
        raise AssertionError("unreachable") from None


def resign(entry: Server, version: str, directory: Path) -> bytes:
    """The fixture's application signed again as it was (hil/mcu/firmware.py), hash only."""
    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    image = firmware_resign(entry, version, directory)
    assert parse(image).signature is None and parse(entry.signed_image.read_bytes()).signature is None
    return image


def running(url: str) -> tuple[int, str, bytes | None, bool]:
    """(slot, version, hash, confirmed) of the image the Thing runs."""
    with SerialLink(url, name="probe") as link:
        # Patient: a QEMU board just started on a busy machine may still be checking its image.
        states, in_bootloader = SmpFlasher(link, name="probe", timeout=5.0, retries=10).listing()
    assert not in_bootloader, "MCUboot's serial recovery answers, not the application"
    [active] = [state for state in states if state.active]
    return active.slot, active.version, active.hash, active.confirmed


def report(what: str, buf_size: int, size: int, seconds: float) -> None:
    rate = size / seconds
    print(f"\n{what}: buf_size {buf_size}: {size} bytes in {seconds:.1f} s, {rate / 1000:.1f} kB/s "
          f"({rate / LINE:.2f}x a 115200-baud line)")


# --- swap: qemu_cortex_m0 -------------------------------------------------------------------------


@pytest.mark.slow
def test_swap_on_qemu_cortex_m0_with_fwagent_things_flash(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    entry = firmware("serial@qemu_cortex_m0")
    image = resign(entry, "1.2.3", tmp_path)
    (tmp_path / "fw.bin").write_bytes(image)
    with qemu(entry, tmp_path) as board:
        old = running(board.url)
        gateway = make_gateway(tmp_path / "gw")
        gateway.config_path.write_text(gateway.config_path.read_text()
                                       + f'\n[things.m0]\nport = "{board.url}"\nprotocol = "mcuboot-smp"\n')
        config = ["--config", str(gateway.config_path)]
        assert main(["things", "flash", "m0", str(tmp_path / "fw.bin"), *config]) == 0
        out = capsys.readouterr().out
        assert running(board.url) == (0, "1.2.3", parse(image).hash, True)
    assert old[:2] == (0, "0.0.0") and old[2] != parse(image).hash
    assert f"m0: {len(image)} bytes written and verified (sha256 reported by the device; booted on trial and " \
           "confirmed (MCUboot mode swap, assumed, the device does not report its mode and none is configured))" in out
    seconds = float(out.rsplit(" in ", 1)[1].split(" s")[0])
    report("swap, qemu_cortex_m0", entry.buf_size, len(image), seconds)


@pytest.mark.slow
def test_a_reset_in_mid_upload_starts_the_upload_over(tmp_path: Path) -> None:
    """The machine resets (its flash kept) while a third of the image is in slot 1: the old
    image boots again, its SMP server has forgotten the upload and wants offset 0, and the
    flasher sends the image again from the start."""
    entry = firmware("serial@qemu_cortex_m0")
    image = resign(entry, "1.2.4", tmp_path)
    with qemu(entry, tmp_path) as board:
        thing = ThingConfig(name="m0", port=board.url, protocol="mcuboot-smp", options={"boot_timeout": 30})
        offsets: list[int] = []

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "writing":
                offsets.append(done)
                if done > total // 3 and len(offsets) == offsets.index(done) + 1 and not board.monitor_used:
                    board.system_reset()

        result = flash(thing, image, progress)
        assert running(board.url) == (0, "1.2.4", parse(image).hash, True)
    restart = next(n for n in range(1, len(offsets)) if offsets[n] < offsets[n - 1])
    assert offsets[restart] == 0 and offsets[restart - 1] > len(image) // 3 and offsets[-1] == len(image)
    print(f"\nreset at {offsets[restart - 1]} of {len(image)} bytes, started over; flashed in "
          f"{result.seconds:.1f} s")


# --- RAM-load and serial recovery: mps2_an385 ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("config", ["serial_recovery_buf512", "serial_recovery_buf1024", "serial_recovery_buf2048"])
def test_ram_load_from_the_application(config: str, tmp_path: Path) -> None:
    entry = firmware(f"{config}@mps2_an385")
    image = resign(entry, "1.2.3", tmp_path)
    with qemu(entry, tmp_path) as board:
        assert running(board.url)[:2] == (0, "0.0.0")
        thing = ThingConfig(name="mps2", port=board.url, protocol="mcuboot-smp",
                            options={"mcuboot_mode": "ram-load", "boot_timeout": 30})
        result = flash(thing, image)
        assert running(board.url) == (1, "1.2.3", parse(image).hash, True)
    assert result.verified == ("sha256 reported by the device; booted by version and running (MCUboot mode "
                               "ram-load, configured, the device does not report its mode)")
    report("RAM-load from the application, mps2_an385", entry.buf_size, len(image), result.seconds)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["serial_recovery", "serial_recovery_buf512"])
def test_serial_recovery_entered_from_the_application(config: str, tmp_path: Path) -> None:
    """The old image is loaded into slot 1 (QEMU loads it again at every machine reset, and would
    overwrite an upload into slot 0): the application resets into serial recovery, the new image
    goes into the primary slot through MCUboot, and MCUboot runs it."""
    entry = firmware(f"{config}@mps2_an385")
    image = resign(entry, "1.2.3", tmp_path)
    with qemu(entry, tmp_path, move_loader=(SLOT0, SLOT1)) as board:
        assert running(board.url)[:2] == (1, "0.0.0")
        thing = ThingConfig(name="mps2", port=board.url, protocol="mcuboot-smp",
                            options={"mcuboot_mode": "serial-recovery", "boot_timeout": 30})
        result = flash(thing, image)
        assert running(board.url) == (0, "1.2.3", parse(image).hash, True)
    assert result.verified == ("sha256 reported by the device; written to the primary slot and running (MCUboot "
                               "mode serial-recovery, configured, the device does not report its mode)")
    report("serial recovery, mps2_an385", entry.recovery_buf_size or 512, len(image), result.seconds)


@pytest.mark.slow
def test_a_power_cut_in_mid_upload(tmp_path: Path) -> None:
    """QEMU killed with a third of the image sent: powered again, the old image boots, and the
    next flash succeeds."""
    entry = firmware("serial_recovery_buf2048@mps2_an385")
    image = resign(entry, "1.2.3", tmp_path)
    with qemu(entry, tmp_path) as board:
        old = running(board.url)
        thing = ThingConfig(name="mps2", port=board.url, protocol="mcuboot-smp",
                            options={"mcuboot_mode": "ram-load", "boot_timeout": 30})

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "writing" and done > total // 3 and board.process.poll() is None:
                board.kill()

        with pytest.raises(ThingError):
            flash(thing, image, progress)
        assert board.process.returncode is not None
    with qemu(entry, tmp_path) as board:
        assert running(board.url) == old
        result = flash(ThingConfig(name="mps2", port=board.url, protocol="mcuboot-smp",
                                   options={"mcuboot_mode": "ram-load", "boot_timeout": 30}), image)
        assert running(board.url) == (1, "1.2.3", parse(image).hash, True)
    assert result.written == len(image)


class CutOff(Exception):
    """The gateway stops in mid-upload (its power cut, the agent killed)."""


def cut_off_at_a_third(phase: str, done: int, total: int) -> None:
    if phase == "writing" and done > total // 3:
        raise CutOff(done)


@pytest.mark.slow
def test_the_gateway_cut_off_in_mid_upload_resumes_where_the_application_stopped(tmp_path: Path) -> None:
    """The Thing keeps its power: its SMP server still holds the upload, and the next flash of
    the same image goes on from the offset it answers (same sha) instead of starting over."""
    entry = firmware("serial_recovery_buf2048@mps2_an385")
    image = resign(entry, "1.2.3", tmp_path)
    with qemu(entry, tmp_path) as board:
        old = running(board.url)
        thing = ThingConfig(name="mps2", port=board.url, protocol="mcuboot-smp",
                            options={"mcuboot_mode": "ram-load", "boot_timeout": 30})
        with pytest.raises(CutOff) as cut:
            flash(thing, image, cut_off_at_a_third)
        assert running(board.url) == old
        offsets: list[int] = []
        flash(thing, image, lambda phase, done, total: offsets.append(done) if phase == "writing" else None)
        assert running(board.url) == (1, "1.2.3", parse(image).hash, True)
    stopped = cut.value.args[0]
    assert offsets[0] == 0 and offsets[1] >= stopped and offsets[-1] == len(image)   # resumed, not sent again
    print(f"\ncut off at {stopped} of {len(image)} bytes; the next flash went on from {offsets[1]}")


@pytest.mark.slow
def test_a_reset_with_half_an_image_in_the_slot_boots_the_old_image(tmp_path: Path) -> None:
    """RAM-load picks the highest version: the half-written slot 1 has the new image's header
    (1.2.3) but not its hash; after a machine reset MCUboot must still boot the old image, and
    the next flash starts over and succeeds."""
    entry = firmware("serial_recovery_buf2048@mps2_an385")
    image = resign(entry, "1.2.3", tmp_path)
    with qemu(entry, tmp_path) as board:
        old = running(board.url)
        thing = ThingConfig(name="mps2", port=board.url, protocol="mcuboot-smp",
                            options={"mcuboot_mode": "ram-load", "boot_timeout": 30})
        with pytest.raises(CutOff):
            flash(thing, image, cut_off_at_a_third)
        board.system_reset()
        assert running(board.url) == old
        offsets: list[int] = []
        flash(thing, image, lambda phase, done, total: offsets.append(done) if phase == "writing" else None)
        assert running(board.url) == (1, "1.2.3", parse(image).hash, True)
    assert offsets[:2] == [0, offsets[1]] and offsets[1] < len(image) // 3     # from the start again


# --- native_sim: servers without the image group ----------------------------------------------------


@pytest.mark.parametrize(("config", "buf_size", "source"), [("serial", 384, "device"),
                                                            ("serial_noparams", 512, "default")])
def test_info_and_the_refusal_of_a_server_without_image_management(config: str, buf_size: int, source: str,
                                                                   tmp_path: Path) -> None:
    entry = firmware(f"{config}@native_sim")
    assert "img" not in entry.groups
    image = sign_image(os.urandom(4096), tmp_path, version="1.0.0") if imgtool_path() else None
    if image is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    with native_sim(entry, tmp_path) as device:
        thing = ThingConfig(name="sim", port=device.url, protocol="mcuboot-smp")
        details = info(thing)
        with pytest.raises(SmpRefusedError) as refused:
            flash(thing, image)
    assert details.images == ()
    assert details.details == {"buf_size": buf_size, "buf_count": 4 if source == "device" else 1,
                               "buf_size_from": source, "image_management": "refused: rc 8 (ENOTSUP)"}
    assert refused.value.one_line() == ("thing-refused: sim: image state read: the device answered rc 8 (ENOTSUP): "
                                        "the device has no image management (SMP group 1); nothing was sent")
