"""MCUboot's modes: the SMP requests that ask for them (byte vectors), the table of flows, and
each flow run by the agent against the simulated Thing playing that mode (hil/sim/smp_device.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from agent.config import ThingConfig
from agent.errors import ThingError, ThingVerifyError
from agent.things import flash
from bootloader_bridge.things import smp_codec as codec
from bootloader_bridge.things.mcuboot_image import parse
from bootloader_bridge.things.mcuboot_modes import (OVERWRITE, PICK, PICK_REVERT, RECOVERY, TRIAL, Mode, Step,
                                                    UnknownModeError, choose, rolls_back)
from bootloader_bridge.things.smp import SmpRefusedError
from conftest import missing
from hil.sim.smp_device import SmpSimulator, imgtool_path, sign_image

# --- requests and answers ---------------------------------------------------------------------


def test_bootloader_information_and_reset_into_the_bootloader_bytes() -> None:
    assert codec.bootloader_info_read(0x2A, "mode") == bytes.fromhex(
        "0000000c00002a08" "a1" "65" + b"query".hex() + "64" + b"mode".hex())
    assert codec.bootloader_info_read(7) == bytes.fromhex("0000000100000708a0")
    assert codec.reset(0x2B, codec.BOOT_MODE_BOOTLOADER) == bytes.fromhex(
        "0200000c00002b05" "a1" "69" + b"boot_mode".hex() + "01")
    assert codec.reset(0x2B) == bytes.fromhex("0200000100002b05a0")      # as before: no boot_mode


def test_the_mode_answer() -> None:
    assert codec.bootloader_mode({"mode": 6}) == 6
    assert codec.bootloader_mode({"mode": -1, "no-downgrade": True}) == -1
    for bad in ({}, {"mode": "ram-load"}, {"mode": True}, {"mode": 1 << 20}):
        with pytest.raises(codec.SmpFormatError, match="no mode"):
            codec.bootloader_mode(bad)


def test_application_or_serial_recovery_from_the_image_list() -> None:
    """As the real answers read (Zephyr 4.4 smp_server, MCUboot's serial recovery)."""
    digest = bytes(32)
    application = {"images": [{"slot": 0, "version": "0.0.0", "hash": digest, "bootable": True, "pending": False,
                               "confirmed": True, "active": True, "permanent": False}], "splitStatus": 0}
    recovery = {"images": [{"slot": 0, "hash": digest, "version": "0.0.0"}]}
    assert not codec.in_bootloader(application)
    assert codec.in_bootloader(recovery)
    assert codec.in_bootloader({"images": []})
    assert not codec.in_bootloader({"images": [], "splitStatus": 0})


# --- the table --------------------------------------------------------------------------------


def test_each_mode_number_has_its_flow() -> None:
    expected = {0: RECOVERY, 1: TRIAL, 2: OVERWRITE, 3: TRIAL, 4: PICK, 5: PICK_REVERT, 6: PICK, 7: RECOVERY,
                8: RECOVERY, 9: TRIAL}
    assert {number: choose(number, None, False).flow for number in expected} == expected
    assert [flow.rolls_back for flow in (TRIAL, OVERWRITE, PICK, PICK_REVERT, RECOVERY)] == [
        True, False, False, True, False]
    assert all(flow.steps[-1] in (Step.CONFIRM, Step.SEE_RUNNING) for flow in (TRIAL, OVERWRITE, PICK, RECOVERY))
    assert RECOVERY.steps[0] is Step.ENTER and Step.ENTER not in TRIAL.steps + PICK.steps + OVERWRITE.steps


def test_what_the_device_says_comes_first() -> None:
    assert choose(6, "swap", False).describe() == "MCUboot mode ram-load, reported by the device"
    assert choose(None, "ram-load", False).describe() == ("MCUboot mode ram-load, configured, the device does "
                                                          "not report its mode")
    assert choose(-1, "direct-xip", False).mode is Mode.DIRECT_XIP          # -1: the application does not know
    assumed = choose(None, None, False)
    assert (assumed.mode, assumed.source, assumed.flow) == (Mode.SWAP, "assumed", TRIAL)
    assert choose(1, "serial-recovery", False).flow is RECOVERY             # the operator's choice of path
    assert choose(None, "swap", True).describe() == ("MCUboot mode serial-recovery, the Thing answers from "
                                                     "MCUboot's serial recovery")
    with pytest.raises(UnknownModeError, match="mode 42"):
        choose(42, None, False)
    assert rolls_back(None) and rolls_back("direct-xip-revert") and not rolls_back("overwrite-only")


# --- each flow against the simulated Thing ------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    directory = tmp_path_factory.mktemp("images")
    return {version: sign_image(os.urandom(6 * 1024), directory, version=version)
            for version in ("1.0.0", "1.1.0", "1.2.0", "9.0.0")}


@pytest.fixture
def thing_on() -> Iterator:
    def make(sim: SmpSimulator, **options: object) -> ThingConfig:
        return ThingConfig(name="mcu", port=sim.port, protocol="mcuboot-smp",
                           options={"boot_timeout": 5.0, **options})
    yield make


def device(**options: object) -> SmpSimulator:
    return SmpSimulator(baud=0, slot_size=32 * 1024, app=True, **options)  # type: ignore[arg-type]


def running(sim: SmpSimulator) -> tuple[int, str, bool]:
    slot = sim.device.slots[sim.device.running]
    image = slot.image()
    return sim.device.running, image.version_text if image else "nothing", slot.confirmed


def test_swap_reported_by_the_device(images: dict[str, bytes], thing_on) -> None:  # type: ignore[no-untyped-def]
    with device(mode=3, primary=images["1.0.0"]) as sim:
        result = flash(thing_on(sim), images["1.1.0"])
        assert running(sim) == (0, "1.1.0", True)
        assert sim.device.boots == 1
    assert result.verified == ("sha256 reported by the device; booted on trial and confirmed "
                               "(MCUboot mode swap-move, reported by the device)")


def test_overwrite_only(images: dict[str, bytes], thing_on) -> None:  # type: ignore[no-untyped-def]
    with device(mode=2, primary=images["1.0.0"]) as sim:
        result = flash(thing_on(sim), images["1.1.0"])
        assert running(sim) == (0, "1.1.0", True)
        assert sim.device.slots[1].image() is None          # copied over the primary, the secondary erased
    assert result.verified.endswith("copied into the primary slot and running (MCUboot mode overwrite-only, "
                                    "reported by the device)")


def test_ram_load_uploads_into_the_slot_not_running(images: dict[str, bytes],
                                                    thing_on) -> None:  # type: ignore[no-untyped-def]
    with device(mode=6, primary=images["1.0.0"]) as sim:
        first = flash(thing_on(sim), images["1.1.0"])
        assert running(sim)[:2] == (1, "1.1.0")
        second = flash(thing_on(sim), images["1.2.0"])
        assert running(sim)[:2] == (0, "1.2.0")                 # the other slot again
        assert sim.device.slots[1].image().version_text == "1.1.0"
        again = flash(thing_on(sim), images["1.2.0"])
        assert sim.device.boots == 2
    assert first.verified.endswith("booted by version and running (MCUboot mode ram-load, reported by the device)")
    assert second.written == len(images["1.2.0"])
    assert (again.written, again.verified) == (0, "already running (MCUboot mode ram-load, reported by the device)")


def test_a_mode_not_reported_is_assumed_swap_and_the_refusal_says_so(images: dict[str, bytes],
                                                                     thing_on) -> None:  # type: ignore[no-untyped-def]
    """The RAM-load Thing of the issue: its application leaves bootloader information out. Assumed
    swap, mark for test is refused, and the error names the assumption; configured, it flashes."""
    with device(mode=6, reports_mode=False, primary=images["1.0.0"]) as sim:
        with pytest.raises(SmpRefusedError) as refused:
            flash(thing_on(sim), images["1.1.0"])
        assert running(sim)[:2] == (0, "1.0.0")
        result = flash(thing_on(sim, mcuboot_mode="ram-load"), images["1.1.0"])
        assert running(sim)[:2] == (1, "1.1.0")
    assert refused.value.one_line() == (
        "thing-refused: mcu: mark for test: the device answered rc 8 (ENOTSUP) (MCUboot mode swap, assumed, the "
        "device does not report its mode and none is configured)")
    assert result.verified.endswith("(MCUboot mode ram-load, configured, the device does not report its mode)")


def test_direct_xip_with_revert(images: dict[str, bytes], thing_on) -> None:  # type: ignore[no-untyped-def]
    with device(mode=5, primary=images["1.0.0"]) as sim:
        result = flash(thing_on(sim), images["1.1.0"])
        assert running(sim) == (1, "1.1.0", True)
        sim.device.faults.trial_fails = True
        with pytest.raises(ThingVerifyError, match=r"^mcu: the new image did not come up after the reset \(running "
                                                   r"1\.1\.0\); it is not confirmed, and MCUboot goes back to the "
                                                   r"old image at the next reset \(MCUboot mode direct-xip-revert"):
            flash(thing_on(sim), images["1.2.0"])
        assert running(sim) == (1, "1.1.0", True)
        assert sim.device.slots[0].image() is None               # the crashed trial image was erased
    assert result.verified.endswith("booted on trial and confirmed (MCUboot mode direct-xip-revert, reported by "
                                    "the device)")


def test_single_application_goes_through_serial_recovery(images: dict[str, bytes],
                                                         thing_on) -> None:  # type: ignore[no-untyped-def]
    with device(mode=0, primary=images["1.0.0"]) as sim:
        result = flash(thing_on(sim), images["1.1.0"])
        assert running(sim)[:2] == (0, "1.1.0") and not sim.device.in_bootloader
        assert sim.device.boots == 2                              # into serial recovery, then into the new image
    assert result.verified.endswith("written to the primary slot and running (MCUboot mode single-app, reported "
                                    "by the device)")


def test_serial_recovery_configured_on_a_thing_that_cannot_enter_it(images: dict[str, bytes],
                                                                    thing_on) -> None:  # type: ignore[no-untyped-def]
    with device(mode=6, boot_mode_reset=False, primary=images["1.0.0"]) as sim:
        with pytest.raises(ThingError, match=r"^mcu: after a reset with boot_mode 1 the application answers again "
                                             r"\(running 1\.0\.0\), not MCUboot's serial recovery.*mode "
                                             r"serial-recovery, configured.*nothing was written$"):
            flash(thing_on(sim, mcuboot_mode="serial-recovery"), images["1.1.0"])
        assert sim.device.uploads == 0 and running(sim)[:2] == (0, "1.0.0")
        sim.device.boot_mode_reset = True
        result = flash(thing_on(sim, mcuboot_mode="serial-recovery"), images["1.1.0"])
        assert running(sim)[:2] == (0, "1.1.0")
    assert result.verified.endswith("written to the primary slot and running (MCUboot mode serial-recovery, "
                                    "configured, the device does not report its mode)")


def test_a_mode_fwagent_does_not_know_is_refused_before_sending(images: dict[str, bytes],
                                                                thing_on) -> None:  # type: ignore[no-untyped-def]
    with device(mode=42, primary=images["1.0.0"]) as sim:
        with pytest.raises(ThingError, match=r"^mcu: the device reports MCUboot mode 42, which fwagent has no flow "
                                             r"for; nothing was sent$"):
            flash(thing_on(sim), images["1.1.0"])
        assert sim.device.uploads == 0


def test_a_power_cut_before_the_confirm_is_finished_by_the_next_flash(images: dict[str, bytes],
                                                                      thing_on) -> None:  # type: ignore[no-untyped-def]
    """Direct-XIP with revert: the trial image runs, unconfirmed, when the agent is cut off; the
    next flash finds it running and confirms it without uploading it again."""
    with device(mode=5, primary=images["1.0.0"]) as sim:
        thing = thing_on(sim)
        from bootloader_bridge.things.link import SerialLink
        from bootloader_bridge.things.smp import SmpFlasher
        with SerialLink(sim.port, name="mcu") as link:
            flasher = SmpFlasher(link, name="mcu")
            flasher.flash(images["1.1.0"])
            flasher.mark_for_test(parse(images["1.1.0"]).hash)
            flasher.reset()
        assert running(sim) == (1, "1.1.0", False)
        uploads = sim.device.uploads
        result = flash(thing, images["1.1.0"])
        assert running(sim) == (1, "1.1.0", True) and sim.device.uploads == uploads
    assert result.verified == "already running; confirmed (MCUboot mode direct-xip-revert, reported by the device)"


def test_an_upload_found_in_the_primary_slot_is_reset_into_not_marked(images: dict[str, bytes],
                                                                     thing_on) -> None:  # type: ignore[no-untyped-def]
    """A Thing in MCUboot's serial recovery that flags its running image active, as an application
    does: a swap mode is assumed, but the upload lands in the primary slot, so it is not marked
    for test (there is no trial): the Thing is reset into it and it is seen running."""
    with SmpSimulator(baud=0, slot_size=32 * 1024, primary=images["1.0.0"]) as sim:
        result = flash(thing_on(sim), images["1.1.0"])
        assert running(sim)[:2] == (0, "1.1.0") and sim.device.boots == 1
        assert not sim.device.slots[0].pending and not sim.device.test_boot
    assert result.verified == ("sha256 reported by the device; written to the primary slot by MCUboot's serial "
                               "recovery and running (MCUboot mode swap, assumed, the device does not report its "
                               "mode and none is configured)")


def test_the_firmware_loader_is_entered_and_writes_the_application(images: dict[str, bytes],
                                                                   thing_on) -> None:  # type: ignore[no-untyped-def]
    """MCUboot's firmware loader is an application of its own (slot 1 here): after the boot_mode
    reset another image answers, which takes the upload into the application's slot."""
    with device(mode=7, primary=images["1.0.0"], loader=images["9.0.0"]) as sim:
        result = flash(thing_on(sim), images["1.1.0"])
        assert running(sim)[:2] == (0, "1.1.0")
        assert sim.device.slots[1].image().version_text == "9.0.0"        # the loader stays
    assert result.verified.endswith("written to the primary slot and running (MCUboot mode firmware-loader, "
                                    "reported by the device)")
