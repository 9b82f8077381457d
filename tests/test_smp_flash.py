"""fwagent's SmpFlasher against the simulated MCUboot Thing on a pty: uploads, faults, the
test/reset/confirm flow, and the agent's flash of an MCUboot Thing (agent/things.py)."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.config import ThingConfig
from agent.errors import ThingError, ThingTimeoutError, ThingVerifyError
from agent.things import flash
from bootloader_bridge.things import registry
from bootloader_bridge.things import smp_codec as codec
from bootloader_bridge.things.base import ThingFlasher
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.mcuboot_image import McubootImageError, parse
from bootloader_bridge.things.smp import SmpFlasher, SmpRefusedError
from conftest import missing
from hil.sim.smp_device import BANNER, SmpSimulator, imgtool_path, keygen, public_key, sign_image

FAST = {"timeout": 0.3, "first_timeout": 1.0, "retries": 3}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    directory = tmp_path_factory.mktemp("images")
    return {"64k": sign_image(os.urandom(64 * 1024), directory, version="2.1.0+7"),
            "old": sign_image(os.urandom(20 * 1024), directory, version="1.0.0"),
            "new": sign_image(os.urandom(20 * 1024), directory, version="1.1.0"),
            "16k": sign_image(os.urandom(16 * 1024), directory, version="3.0.0")}


@pytest.fixture
def sim() -> Iterator[SmpSimulator]:
    with SmpSimulator(baud=0, slot_size=128 * 1024) as simulator:
        yield simulator


@contextmanager
def flasher(sim: SmpSimulator, **options: object) -> Iterator[SmpFlasher]:
    """An SmpFlasher on its own link to the simulator, closed afterwards."""
    with SerialLink(sim.port, name="mcu1") as link:
        yield SmpFlasher(link, **{**FAST, **options})  # type: ignore[arg-type]


def test_upload_64k_verified_by_the_reported_hash(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    image = images["64k"]
    progress: list[tuple[str, int, int]] = []
    with flasher(sim) as thing:
        result = thing.flash(image, lambda phase, done, total: progress.append((phase, done, total)))
        info = thing.info()
    assert (result.written, result.verified, result.retries) == (len(image), "sha256 reported by the device", 0)
    assert bytes(sim.device.slots[0].data[:len(image)]) == image
    writing = [done for phase, done, total in progress if phase == "writing"]
    assert writing[0] == 0 and writing[-1] == len(image) and writing == sorted(writing)
    assert len(writing) - 1 == sim.device.uploads <= len(image) // 980 + 1      # chunks fill the 1024-byte buffer
    assert progress[-2:] == [("verifying", 0, len(image)), ("verifying", len(image), len(image))]
    assert sim.device.decoder.damaged == 0                                       # every line and frame fitted
    assert info.protocol == "mcuboot-smp"
    assert info.details == {"buf_size": 1024, "buf_count": 1, "buf_size_from": "device",
                            "answers_from": "serial recovery"}        # uploaded, not booted: no active image
    assert info.bootloader == "MCUboot"
    assert info.images[0]["hash"] == parse(image).hash.hex()
    assert info.images[0]["version"] == "2.1.0.7"


def test_without_params_the_default_or_configured_buffer(images: dict[str, bytes]) -> None:
    with SmpSimulator(baud=0, params=False, buf_size=512) as sim, flasher(sim) as thing:
        thing.flash(images["16k"])
        assert thing.params() == (512, 1, "default")
        assert len(images["16k"]) // 508 < sim.device.uploads <= len(images["16k"]) // 470 + 1
    with SmpSimulator(baud=0, params=False, buf_size=2048) as sim, flasher(sim, buf_size=2048, chunk=1500) as thing:
        thing.flash(images["16k"])
        assert thing.info().details["buf_size_from"] == "configured"
        assert sim.device.uploads == -(-len(images["16k"]) // 1500)


def test_a_bad_image_is_refused_before_any_byte_is_sent(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    damaged = bytearray(images["16k"])
    damaged[1000] ^= 0xFF
    for bad, reason in ((bytes(damaged), "wrong hash"), (b"\x7fELF" + bytes(100), "bad magic"),
                        (images["16k"][:5000], "truncated")):
        with flasher(sim) as thing, pytest.raises(McubootImageError,
                                                  match=rf"^mcu1: MCUboot image: {reason}.*; nothing was sent$"):
            thing.flash(bad)
    time.sleep(0.1)
    assert sim.rx_bytes == 0


# --- faults -------------------------------------------------------------------------------


def test_dropped_answers_are_retried_with_the_same_offset(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    sim.device.faults.drop = {1, 4, 9}
    with flasher(sim) as thing:
        result = thing.flash(images["64k"])
    assert result.retries == 3
    assert bytes(sim.device.slots[0].data[:len(images["64k"])]) == images["64k"]


def test_log_lines_between_and_inside_frames(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    sim.device.faults.noise = True
    with flasher(sim) as thing:
        assert thing.flash(images["16k"]).retries == 0


def test_a_reset_in_mid_upload_starts_it_over(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    sim.device.faults.reset = {10}
    with flasher(sim) as thing:
        result = thing.flash(images["64k"])
    assert result.retries == 1 and sim.device.boots == 1
    assert sim.device.uploads > len(images["64k"]) // 996 + 10      # it wrote from 0 again


def test_an_error_code_is_a_clear_error(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    sim.device.faults.rc = {3: 3}
    with flasher(sim) as thing, pytest.raises(SmpRefusedError, match=r"^mcu1: image upload at offset \d+: the "
                                                                     r"device answered rc 3 \(EINVAL\)$") as refused:
        thing.flash(images["16k"])
    assert refused.value.code == "thing-refused" and refused.value.rc == 3
    assert isinstance(refused.value, ThingError)


def test_a_silent_thing_times_out_naming_where(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    sim.device.faults.silent = True
    started = time.monotonic()
    with flasher(sim, buf_size=1024, first_timeout=0.4) as thing, pytest.raises(
            ThingTimeoutError, match=r"^mcu1: no answer to image upload at offset 0 within 0.4 s \(tried 4 times\)$"):
        thing.flash(images["16k"])
    assert time.monotonic() - started < 4
    with flasher(sim, retries=1) as thing, pytest.raises(
            ThingTimeoutError, match=r"no answer to image state read within 0.3 s \(tried 2 times\)"):
        thing.image_states()


def test_lost_answers_beyond_the_retries(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    sim.device.faults.drop = {5, 6, 7, 8}
    with flasher(sim) as thing, pytest.raises(ThingTimeoutError, match=r"^mcu1: no answer to image upload at "
                                                                       r"offset \d+ within 0.3 s \(tried 4 times\)"):
        thing.flash(images["16k"])


def test_a_thing_that_keeps_resetting_is_given_up(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    sim.device.faults.reset = {3, 6, 9, 12, 15, 18}
    with flasher(sim) as thing, pytest.raises(ThingError, match=r"^mcu1: image upload: the device started over "
                                                                r"4 times"):
        thing.flash(images["16k"])


def test_a_flipped_bit_fails_verification(sim: SmpSimulator, images: dict[str, bytes]) -> None:
    sim.device.faults.corrupt = {2}
    with flasher(sim) as thing, pytest.raises(ThingVerifyError, match=r"^mcu1: after the upload the device lists "
                                                                      r"no image with SHA-256 "):
        thing.flash(images["16k"])


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519"])
def test_only_an_image_signed_with_the_devices_key_is_accepted(kind: str, tmp_path: Path) -> None:
    """MCUboot lists an image only when its signature verifies: one signed with another key,
    or not signed at all, fails verification although every byte arrived."""
    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    payload = os.urandom(12 * 1024)
    trusted, other = keygen(tmp_path, kind), keygen(tmp_path / "other", kind)
    with SmpSimulator(baud=0, key=public_key(trusted)) as sim, flasher(sim) as thing:
        good = sign_image(payload, tmp_path, version="4.0.0", key=trusted)
        assert thing.flash(good).verified == "sha256 reported by the device"
        assert [state.hash for state in thing.image_states()] == [parse(good).hash]
        for name, image in (("another key", sign_image(payload, tmp_path, version="4.0.1", key=other)),
                            ("no key", sign_image(payload, tmp_path, version="4.0.2"))):
            with pytest.raises(ThingVerifyError, match=r"no images\): it did not validate on the device"):
                thing.flash(image)
            assert bytes(sim.device.slots[0].data[:len(image)]) == image, name   # it did arrive whole


def test_the_hash_must_be_listed_for_the_image_number_uploaded(sim: SmpSimulator, images: dict[str, bytes],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """On a multi-image device the same hash under another image number is not the upload."""
    with flasher(sim) as thing:
        listed = thing.image_states
        monkeypatch.setattr(thing, "image_states",
                            lambda: [dataclasses.replace(state, image=1) for state in listed()])
        with pytest.raises(ThingVerifyError, match=r"device lists no image with SHA-256 .*\(no images\)"):
            thing.flash(images["16k"])
        monkeypatch.undo()
        assert thing.image_states()[0].hash == parse(images["16k"]).hash


def test_the_first_chunk_waits_for_the_slot_erase(images: dict[str, bytes]) -> None:
    with SmpSimulator(baud=0, erase_delay=0.6) as sim:
        with flasher(sim, first_timeout=2.0) as thing:
            assert thing.flash(images["16k"]).retries == 0
        with flasher(sim, first_timeout=0.3, retries=1) as thing, pytest.raises(ThingTimeoutError,
                                                                                match="offset 0 within 0.3 s"):
            thing.flash(images["16k"])


def test_resume_where_the_device_allows(images: dict[str, bytes]) -> None:
    """A Zephyr SMP server answers offset 0 with the same sha by the offset it has."""
    with SmpSimulator(baud=0, resume=True) as sim:
        sim.device.faults.rc = {40: 10}
        with flasher(sim) as thing, pytest.raises(SmpRefusedError, match="EBUSY"):
            thing.flash(images["64k"])
        before = sim.device.uploads
        with flasher(sim) as thing:
            thing.flash(images["64k"])
        assert sim.device.uploads - before < 30
        assert bytes(sim.device.slots[0].data[:len(images["64k"])]) == images["64k"]


def test_a_garbled_answer_is_ignored_and_the_same_offset_sent_again(sim: SmpSimulator,
                                                                    images: dict[str, bytes]) -> None:
    """Noise inside a frame fails its check: the answer is dropped as if lost, and the chunk goes
    again at the same offset (the device, which wrote it, answers with the offset it wants next)."""
    sim.device.faults.garble = {3}
    with flasher(sim) as thing:
        result = thing.flash(images["16k"])
        assert thing.decoder.damaged == 1
    assert result.retries == 1
    assert 0 < sim.device.offsets[2] == sim.device.offsets[3] < sim.device.offsets[4]
    assert bytes(sim.device.slots[0].data[:len(images["16k"])]) == images["16k"]


def test_stale_answers_are_skipped() -> None:
    """An answer that arrives late, after its request was sent again, has the old sequence number."""
    link = ScriptedLink(lambda request: [
        codec.encode_packet(codec.READ_RSP, 1, 0, (request.seq - 1) & 0xFF, {"images": []}),
        codec.encode_packet(codec.READ_RSP, 0, 6, request.seq, {"buf_size": 64, "buf_count": 1}),
        codec.encode_packet(codec.READ_RSP, 1, 0, request.seq, {"images": [{"slot": 0, "version": "9.9.9"}]})])
    assert [state.version for state in SmpFlasher(link, **FAST).image_states()] == ["9.9.9"]  # type: ignore[arg-type]


# --- the agent's flow for MCUboot Things -----------------------------------------------------


def test_mark_for_test_reset_confirm(images: dict[str, bytes]) -> None:
    old, new = images["old"], images["new"]
    with SmpSimulator(baud=0, upload_slot=1, primary=old) as sim, flasher(sim) as thing:
        thing.flash(new)
        new_hash = parse(new).hash
        [running, uploaded] = thing.image_states()
        assert (running.hash, running.active, running.confirmed) == (parse(old).hash, True, True)
        assert (uploaded.slot, uploaded.hash, uploaded.pending) == (1, new_hash, False)

        marked = thing.mark_for_test(new_hash)
        assert marked[1].pending and not marked[1].permanent
        assert BANNER in thing.reset()
        [trial, previous] = thing.image_states()
        assert (trial.version, trial.active, trial.confirmed) == ("1.1.0", True, False)
        assert previous.version == "1.0.0"

        confirmed = thing.confirm()
        assert confirmed[0].confirmed and confirmed[0].hash == new_hash
        thing.reset()
        assert thing.image_states()[0].version == "1.1.0"


def test_an_unconfirmed_trial_reverts_at_the_next_reset(images: dict[str, bytes]) -> None:
    with SmpSimulator(baud=0, upload_slot=1, primary=images["old"]) as sim, flasher(sim) as thing:
        thing.flash(images["new"])
        thing.mark_for_test(parse(images["new"]).hash)
        thing.reset()
        assert thing.image_states()[0].version == "1.1.0"
        thing.reset()
        [running, _] = thing.image_states()
        assert (running.version, running.active, running.confirmed) == ("1.0.0", True, True)
        with pytest.raises(SmpRefusedError, match=r"mark for test: the device answered rc 5 \(ENOENT\)"):
            thing.mark_for_test(bytes(32))


def test_an_image_that_does_not_come_up_is_not_confirmed(images: dict[str, bytes]) -> None:
    """The trial image crashes, the watchdog resets the Thing and MCUboot reverts: the agent sees
    the old image running and leaves the new one unconfirmed."""
    old, new = images["old"], images["new"]
    with SmpSimulator(baud=0, upload_slot=1, primary=old) as sim:
        sim.device.faults.trial_fails = True
        thing = ThingConfig(name="radio", port=sim.port, protocol="mcuboot-smp")
        with pytest.raises(ThingVerifyError, match=r"^radio: the new image did not come up after the reset "
                                                   r"\(running 1\.0\.0\); it is not confirmed"):
            flash(thing, new)
    primary, secondary = sim.device.slots
    assert (bytes(primary.data[:len(old)]), primary.active, primary.confirmed) == (old, True, True)
    assert (bytes(secondary.data[:len(new)]), secondary.pending, secondary.confirmed) == (new, False, False)
    assert sim.device.boots == 2                     # the trial boot and the watchdog's


def reset_command(log: Path, leave_fails: bool = False, port: str | None = None) -> tuple[str, ...]:
    """A reset command that appends each step (enter, leave) to ``log``; leaving fails if asked.
    With ``port`` (the simulator's pty), leaving resets the simulated Thing as its reset line
    would: an SMP reset frame the agent never sent goes into the line."""
    script = f'echo "$FWAGENT_RESET" >> {shlex.quote(str(log))}'
    if leave_fails:
        script += '; [ "$FWAGENT_RESET" = enter ] || { echo "boot pin stuck" >&2; exit 1; }'
    if port is not None:
        frame = "".join(f"\\{byte:03o}" for byte in codec.encode_frame(codec.reset(0)))
        script += f'; [ "$FWAGENT_RESET" = enter ] || printf "{frame}" > {shlex.quote(port)}'
    return ("sh", "-c", script)


def test_an_mcuboot_thing_is_reset_once_into_its_new_image(images: dict[str, bytes], tmp_path: Path) -> None:
    """Serial recovery wrote the primary slot: one reset starts the image, it is seen running, and
    no reset follows on the way out."""
    log = tmp_path / "resets"
    with SmpSimulator(baud=0) as sim:
        thing = ThingConfig(name="radio", port=sim.port, protocol="mcuboot-smp",
                            reset=reset_command(log, port=sim.port))
        result = flash(thing, images["16k"])
        assert sim.device.boots == 1 and sim.device.slots[0].active
    assert result.verified == ("sha256 reported by the device; written to the primary slot and running "
                               "(MCUboot mode serial-recovery, the Thing answers from MCUboot's serial recovery)")
    assert log.read_text().split() == ["enter", "leave"]


def test_a_trial_that_fails_is_reset_once_more_so_mcuboot_goes_back(images: dict[str, bytes],
                                                                    tmp_path: Path) -> None:
    """The reset lines restart the Thing for its trial; when the new image is not seen running,
    they reset it again on the way out: an unconfirmed image that hangs is reverted by MCUboot."""
    log = tmp_path / "resets"
    with SmpSimulator(baud=0, upload_slot=1, primary=images["old"]) as sim:
        thing = ThingConfig(name="radio", port=sim.port, protocol="mcuboot-smp", reset=reset_command(log),
                            options={"boot_timeout": 1.0})
        with pytest.raises(ThingVerifyError, match="did not come up"):
            flash(thing, images["new"])       # the logged reset moves nothing: the old image still runs
    assert log.read_text().split() == ["enter", "leave", "leave"]


def test_a_failing_reset_on_the_way_out_does_not_hide_the_error(images: dict[str, bytes], tmp_path: Path) -> None:
    log = tmp_path / "resets"
    with SmpSimulator(baud=0) as sim:
        sim.device.faults.rc = {2: 3}
        thing = ThingConfig(name="radio", port=sim.port, protocol="mcuboot-smp",
                            reset=reset_command(log, leave_fails=True))
        with pytest.raises(SmpRefusedError) as refused:
            flash(thing, images["16k"])
    assert re.fullmatch(r"thing-refused: radio: image upload at offset \d+: the device answered rc 3 \(EINVAL\) "
                        r"\(MCUboot mode serial-recovery, the Thing answers from MCUboot's serial recovery\)",
                        refused.value.one_line())
    assert log.read_text().split() == ["enter", "leave"]
    [note] = refused.value.__notes__
    assert note.startswith("resetting into the application afterwards failed too: radio: reset (leave): ")
    assert note.endswith("failed with exit status 1: boot pin stuck")


def test_registry_and_protocol(sim: SmpSimulator) -> None:
    with SerialLink(sim.port, name="mcu7") as link:
        thing = registry.create("mcuboot-smp", link, timeout=0.5)
        assert isinstance(thing, SmpFlasher) and isinstance(thing, ThingFlasher)
        assert thing.name == "mcu7"
        assert thing.info().images == ()


class ScriptedLink:
    """A link whose Thing answers each request with the packets ``script(request header)`` makes."""

    name = "scripted"

    def __init__(self, script) -> None:  # type: ignore[no-untyped-def]
        self.script, self.lines = script, []
        self.decoder = codec.FrameDecoder()

    def write(self, data: bytes) -> None:
        for packet in self.decoder.feed(data):
            for answer in self.script(codec.Header.unpack(packet)):
                self.lines += codec.encode_frame(answer).splitlines(keepends=True)

    def read_until(self, terminator: bytes, timeout: float, limit: int, what: str = "") -> bytes:
        if not self.lines:
            raise ThingTimeoutError("nothing scripted")
        return self.lines.pop(0)

    def drain(self, quiet: float = 0.05, timeout: float = 1.0) -> bytes:
        return b""
