"""Campaigns with Things: a manifest's ["thing", name] components, flashed after the gateway's commit
(or without touching the gateway's slots when only Things are updated), on the simulated STM32
system bootloader of hil/sim/ over a pseudo-terminal."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.bundle.writer import create_bundle
from agent.ddi.outbox import outcome_feedback
from agent.manifest import cose
from agent.manifest.sign import add_signature
from agent.manifest.spec import build_manifest, parse_spec, unsigned_envelope
from hil.sim.pty_end import PtyEnd
from hil.sim.stm32_bootloader import Faults, Stm32Simulator
from install_bench import Gateway, make_gateway

FLASH_BASE = 0x08000000


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path / "gw")


def with_things(gateway: Gateway, ports: dict[str, str]) -> None:
    text = gateway.config_path.read_text()
    for name, port in ports.items():
        text += f'\n[things.{name}]\nport = "{port}"\nprotocol = "stm32"\nparity = "none"\n'
    gateway.config_path.write_text(text)


def bundle(gateway: Gateway, name: str, components: dict[str, bytes], *, sequence: int) -> Path:
    """A signed bundle with one payload per component: "rootfs", or a Thing's name."""
    entries, files = [], []
    for component, data in components.items():
        path = gateway.root / f"{name}-{component}.bin"
        path.write_bytes(data)
        ident = ["rootfs"] if component == "rootfs" else ["thing", component]
        entries.append({"id": ident, "file": path.name, "uri": f"#{path.name}", "version": "2.0.0"})
        files.append((path.name, path))
    spec = parse_spec({"sequence": sequence, "vendor_domain": "example.com", "class_name": "gw-test",
                       "component": entries}, gateway.root)
    signed = add_signature(unsigned_envelope(build_manifest(spec)), cose.load_private_key(gateway.root / "release.pem"))
    out = gateway.root / f"{name}.fwb"
    create_bundle(out, signed, files, "2.0.0")
    return out


@pytest.fixture
def stm32() -> Iterator[Stm32Simulator]:
    with Stm32Simulator(0x410, baud=0, delays=False) as sim:
        yield sim


def test_the_gateway_commits_first_then_the_thing_is_flashed(gateway: Gateway, stm32: Stm32Simulator) -> None:
    with_things(gateway, {"mcu1": stm32.port})
    rootfs, firmware = random.Random(1).randbytes(1 << 20), random.Random(2).randbytes(20 * 1024 + 12)
    source = bundle(gateway, "u2", {"rootfs": rootfs, "mcu1": firmware}, sequence=2)
    steps: list[str] = []
    kept = gateway.root / "state/things"
    modes: list[tuple[int, int]] = []

    def step(state: str, _update: dict) -> None:
        steps.append(state)
        if state == "things":           # the kept image is the agent's alone
            modes.append((kept.stat().st_mode & 0o777, (kept / "mcu1.img").stat().st_mode & 0o777))

    installer = gateway.installer()
    installer.on_step = step
    outcome = installer.install(str(source))
    assert outcome.result == "success" and outcome.state == "committed", outcome
    assert steps.index("commit") < steps.index("things") and modes == [(0o700, 0o600)]
    assert gateway.booted() == "B"
    assert stm32.flash[:len(firmware)] == firmware
    assert outcome.things["mcu1"]["result"] == "success" and outcome.things["mcu1"]["verified"] == "read-back"
    assert not (gateway.root / "state/things/mcu1.img").exists()        # the kept image is gone


def test_things_only_leave_the_gateways_slots_and_boot_state_alone(gateway: Gateway, stm32: Stm32Simulator) -> None:
    with_things(gateway, {"mcu1": stm32.port})
    firmware = random.Random(3).randbytes(8 * 1024)
    before = gateway.bootloader().variables(), gateway.slot_digest("B")
    steps: list[str] = []
    installer = gateway.installer()
    installer.on_step = lambda state, _update: steps.append(state)
    progress: list[tuple[str, int, int]] = []
    installer.progress = lambda label, done, total: progress.append((label, done, total))
    outcome = installer.install(str(bundle(gateway, "t3", {"mcu1": firmware}, sequence=3)))
    assert outcome.result == "success" and steps == ["verify", "stash", "things"]
    labels = list(dict.fromkeys(label for label, _, _ in progress))      # kept in the state dir, then flashed
    assert labels == ["thing.mcu1", "thing.mcu1 (erasing)", "thing.mcu1 (writing)", "thing.mcu1 (verifying)",
                      "thing.mcu1 (activating)"]
    assert [(done, total) for label, done, total in progress if label == "thing.mcu1 (verifying)"][-1] == (
        len(firmware), len(firmware))
    assert (gateway.bootloader().variables(), gateway.slot_digest("B")) == before and gateway.booted() == "A"
    assert stm32.flash[:len(firmware)] == firmware
    installed = json.loads((gateway.root / "state/journal.json").read_text())["installed"]
    assert installed["sequence"] == 3 and installed["slot"] == "A" and installed["version"] is None


def test_things_only_offered_again_are_already_installed(gateway: Gateway, stm32: Stm32Simulator) -> None:
    with_things(gateway, {"mcu1": stm32.port})
    source = bundle(gateway, "t3", {"mcu1": random.Random(3).randbytes(8 * 1024)}, sequence=3)
    assert gateway.installer().install(str(source)).result == "success"
    before = gateway.bootloader().variables(), gateway.slot_digest("B")
    # Were it flashed again, the Thing would be offline now: its port is gone.
    gateway.config_path.write_text(gateway.config_path.read_text().replace(stm32.port, "/dev/fwagent-offline-mcu"))
    steps: list[str] = []
    installer = gateway.installer()
    installer.on_step = lambda state, _update: steps.append(state)
    outcome = installer.install(str(source))
    assert (outcome.result, outcome.state, outcome.things) == ("success", "already-installed", None)
    assert steps == ["verify"] and (gateway.bootloader().variables(), gateway.slot_digest("B")) == before


def test_an_empty_thing_image_is_refused_at_verify(gateway: Gateway) -> None:
    with_things(gateway, {"mcu1": "/dev/fwagent-offline-mcu"})
    steps: list[str] = []
    installer = gateway.installer()
    installer.on_step = lambda state, _update: steps.append(state)
    outcome = installer.install(str(bundle(gateway, "t3", {"mcu1": b""}, sequence=3)))
    assert (outcome.state, outcome.code) == ("failed", "image-too-small") and steps == ["verify"]
    assert outcome.reason == "thing.mcu1: the image has 0 bytes, fewer than the 1 an image must have"


def test_things_not_reached_are_reported_offline_and_the_others_are_flashed(gateway: Gateway) -> None:
    """A missing port and a Thing that never says a byte: nothing was written to either, so the
    Things after them are still flashed; the gateway's update stands."""
    silent = PtyEnd("silent Thing")
    silent_port = silent.start(lambda: [silent.read(0.1) for _ in iter(silent.stopping.is_set, True)])
    try:
        with Stm32Simulator(0x410, baud=0, delays=False) as good:
            with_things(gateway, {"mcu1": "/dev/fwagent-offline-mcu", "mcu2": silent_port, "mcu3": good.port})
            images = {"rootfs": random.Random(4).randbytes(1 << 20), "mcu1": b"\x11" * 4096,
                      "mcu2": b"\x22" * 4096, "mcu3": b"\x33" * 4096}
            outcome = gateway.installer().install(str(bundle(gateway, "u4", images, sequence=4)))
            assert gateway.booted() == "B" and outcome.state == "committed" and outcome.result == "failure"
            assert (outcome.code, outcome.reason) == ("thing-offline", "not reached, not updated: mcu1, mcu2")
            assert [outcome.things[name]["result"] for name in ("mcu1", "mcu2", "mcu3")] == [
                "offline", "offline", "success"]
            assert outcome.things["mcu1"]["reason"].startswith("mcu1: cannot open /dev/fwagent-offline-mcu")
            assert outcome.things["mcu2"]["reason"].startswith(f"mcu2: no answer on {silent_port}")
            assert good.flash[:4096] == b"\x33" * 4096
    finally:
        silent.stop()
    kind, body = outcome_feedback(outcome.as_dict())
    details = body["status"]["details"]
    assert kind == "deploymentBase" and body["status"]["result"]["finished"] == "failure"
    assert any(d.startswith("Thing mcu1: offline: thing-offline mcu1: cannot open") for d in details), details
    journal = json.loads((gateway.root / "state/journal.json").read_text())
    assert journal["installed"]["sequence"] == 4        # the gateway's update stands


def test_a_failed_thing_ends_the_step_the_rest_are_skipped(gateway: Gateway) -> None:
    ignored = Faults(ignore_write=1)                      # ACKed, not programmed: the verify finds it
    with (Stm32Simulator(0x410, baud=0, delays=False, faults=ignored) as bad,
          Stm32Simulator(0x410, baud=0, delays=False) as good):
        with_things(gateway, {"mcu1": bad.port, "mcu2": good.port})
        images = {"rootfs": random.Random(4).randbytes(1 << 20), "mcu1": b"\x11" * 4096, "mcu2": b"\x22" * 4096}
        outcome = gateway.installer().install(str(bundle(gateway, "u4", images, sequence=4)))
        assert gateway.booted() == "B" and outcome.state == "committed" and outcome.result == "failure"
        assert (outcome.code, outcome.reason) == ("thing-failed", "Thing mcu1 was not updated")
        assert outcome.things["mcu1"]["result"] == "failure" and outcome.things["mcu1"]["code"] == "thing-verify"
        assert outcome.things["mcu2"] == {"result": "skipped", "reason": "not flashed: mcu1 failed before it"}
        assert good.flash[:4096] == b"\xff" * 4096
    details = outcome_feedback(outcome.as_dict())[1]["status"]["details"]
    assert "Thing mcu2: skipped: not flashed: mcu1 failed before it" in details


def test_a_manifest_for_an_unconfigured_thing_is_refused_before_anything_is_written(gateway: Gateway) -> None:
    outcome = gateway.installer().install(str(bundle(gateway, "u5", {"mcu9": b"\x00" * 64}, sequence=5)))
    assert outcome.result == "failure" and outcome.state == "failed" and outcome.code == "unknown-thing"
    assert "no Thing 'mcu9' is configured ([things.mcu9])" in outcome.reason


def test_an_mcuboot_thing_boots_the_new_image_on_trial_and_confirms_it(gateway: Gateway, tmp_path: Path) -> None:
    from conftest import missing
    from hil.sim.smp_device import SmpSimulator, imgtool_path, sign_image

    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    old = sign_image(random.Random(5).randbytes(12 * 1024), tmp_path, version="1.0.0")
    new = sign_image(random.Random(6).randbytes(12 * 1024), tmp_path, version="1.1.0")
    with SmpSimulator(baud=0, upload_slot=1, primary=old) as radio, Stm32Simulator(0x410, baud=0, delays=False) as mcu:
        with_things(gateway, {"mcu1": mcu.port})
        gateway.config_path.write_text(gateway.config_path.read_text() + (
            f'\n[things.radio]\nport = "{radio.port}"\nprotocol = "mcuboot-smp"\n'))
        outcome = gateway.installer().install(str(bundle(gateway, "u6", {"mcu1": b"\x33" * 2048, "radio": new}, sequence=6)))
        assert outcome.result == "success", outcome
        assert outcome.things["radio"]["verified"].endswith("booted on trial and confirmed (MCUboot mode swap, "
                                                            "assumed, the device does not report its mode and none "
                                                            "is configured)")
        assert list(outcome.things) == ["radio", "mcu1"]          # the STM32 cannot roll back: it goes last
        primary = radio.device.slots[0]
        assert primary.confirmed and bytes(primary.data[:len(new)]) == new
        assert mcu.flash[:2048] == b"\x33" * 2048


def test_a_thing_that_cannot_roll_back_goes_after_those_that_can(gateway: Gateway, tmp_path: Path) -> None:
    """MCUboot's serial recovery writes the primary slot itself: configured ``rollback = false``,
    it waits until the Thing that boots on trial has been confirmed."""
    from conftest import missing
    from hil.sim.smp_device import SmpSimulator, imgtool_path, sign_image

    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    old = sign_image(random.Random(7).randbytes(8 * 1024), tmp_path, version="1.0.0")
    new = [sign_image(random.Random(seed).randbytes(8 * 1024), tmp_path, version="1.1.0") for seed in (8, 9)]
    with SmpSimulator(baud=0) as recovery, SmpSimulator(baud=0, upload_slot=1, primary=old) as radio:
        gateway.config_path.write_text(gateway.config_path.read_text() + (
            f'\n[things.rec]\nport = "{recovery.port}"\nprotocol = "mcuboot-smp"\nrollback = false\n'
            f'\n[things.radio]\nport = "{radio.port}"\nprotocol = "mcuboot-smp"\n'))
        outcome = gateway.installer().install(str(bundle(gateway, "u7", {"rec": new[0], "radio": new[1]},
                                                         sequence=7)))
        assert outcome.result == "success", outcome
        assert list(outcome.things) == ["radio", "rec"]
        assert outcome.things["rec"]["verified"].endswith("written to the primary slot and running (MCUboot mode "
                                                          "serial-recovery, the Thing answers from MCUboot's serial "
                                                          "recovery)")
        assert bytes(recovery.device.slots[0].data[:len(new[0])]) == new[0]


def test_a_server_campaign_reports_each_thing(gateway: Gateway, tmp_path: Path, stm32: Stm32Simulator) -> None:
    from agent.demo.ddi_server import DdiServer
    from test_daemon import DEVICE, Running, connect, wait_for

    with_things(gateway, {"mcu1": stm32.port})
    firmware = random.Random(7).randbytes(4096)
    source = bundle(gateway, "u7", {"rootfs": random.Random(8).randbytes(1 << 20), "mcu1": firmware}, sequence=7)
    with DdiServer() as server:
        connect(gateway, server)
        daemon = Running(gateway, server, tmp_path / "daemon.log")
        try:
            action = server.create_deployment(DEVICE, [{"part": "os", "name": "gateway", "version": "2.0.0",
                                                        "artifacts": {"u7.fwb": source.read_bytes()}}])
            wait_for(lambda: server.actions[action.id].state == "closed", "the campaign", poke=daemon)
        finally:
            daemon.stop()
        details = [d for s in server.statuses(action.id) for d in s.get("details", [])]
    assert server.actions[action.id].result == "success"
    assert "fwagent: flashing the Things" in details and "Thing mcu1: success" in details
    assert stm32.flash[:4096] == firmware and gateway.booted() == "B"
    # The bundle streamed into the slot is a download; flashing the Thing afterwards is not.
    flashing = details.index("fwagent: flashing the Things")
    assert any(d.startswith("fwagent: Downloaded ") and " of u7.fwb into rootfs.B" in d for d in details[:flashing])
    assert any(d.startswith("fwagent: Installing thing.mcu1 (writing): ") for d in details[flashing:]), details
    assert not any(d.startswith("fwagent: Downloaded ") for d in details[flashing:]), details


class PowerCut(BaseException):
    """Stands for the power going: nothing in the agent catches it."""


def test_a_power_cut_while_flashing_things_flashes_only_those_not_done(gateway: Gateway) -> None:
    with Stm32Simulator(0x410, baud=0, delays=False) as mcu1, Stm32Simulator(0x410, baud=0, delays=False) as mcu2:
        with_things(gateway, {"mcu1": mcu1.port, "mcu2": mcu2.port})
        images = {"rootfs": random.Random(9).randbytes(1 << 20), "mcu1": b"\x44" * 4096, "mcu2": b"\x55" * 4096}
        source = bundle(gateway, "u8", images, sequence=8)
        installer, state = gateway.installer(), {"step": ""}

        def cut_during_mcu2(label: str, done: int, total: int | None) -> None:
            if state["step"] == "things" and label.startswith("thing.mcu2 ("):
                raise PowerCut

        installer.on_step = lambda step, _update: state.update(step=step)
        installer.progress = cut_during_mcu2
        with pytest.raises(PowerCut):
            installer.install(str(source))
        journal = json.loads((gateway.root / "state/journal.json").read_text())
        assert journal["update"]["state"] == "things"
        assert journal["update"]["things"]["mcu1"]["result"] == "success"
        assert journal["update"]["things"]["mcu2"]["result"] == "pending"
        mcu1.bootloader.flash[:4096] = b"\xff" * 4096             # would show a second flash of mcu1
        gateway.power_cycle()
        outcome = gateway.installer().resume()
        assert outcome is not None and outcome.result == "success" and gateway.booted() == "B"
        assert mcu2.flash[:4096] == images["mcu2"] and mcu1.flash[:4096] == b"\xff" * 4096


def test_a_thing_cut_short_by_a_power_cut_then_not_reached_is_a_failure(gateway: Gateway) -> None:
    """Offline means nothing was written to it; after a cut mid-flash that is no longer known."""
    with Stm32Simulator(0x410, baud=0, delays=False) as mcu1:
        with_things(gateway, {"mcu1": mcu1.port})
        source = bundle(gateway, "u9", {"mcu1": b"\x66" * 4096}, sequence=9)
        installer = gateway.installer()

        def cut(label: str, done: int, total: int) -> None:
            if label == "thing.mcu1 (writing)" and done:
                raise PowerCut

        installer.progress = cut
        with pytest.raises(PowerCut):
            installer.install(str(source))
        port = mcu1.port
    gateway.power_cycle()
    config = gateway.config_path.read_text()
    gateway.config_path.write_text(config.replace(port, "/dev/fwagent-offline-mcu"))   # its adapter is gone
    outcome = gateway.installer().resume()
    assert outcome is not None and outcome.result == "failure" and outcome.code == "thing-failed"
    assert outcome.things["mcu1"]["result"] == "failure" and outcome.things["mcu1"]["code"] == "thing-offline"
    assert outcome.things["mcu1"]["reason"].endswith("an earlier attempt, cut short, may have written part of it")


def test_rollback_by_hand_during_the_things_step_never_rolls_the_gateway_back(gateway: Gateway) -> None:
    from agent.cli import main

    with Stm32Simulator(0x410, baud=0, delays=False) as mcu1:
        with_things(gateway, {"mcu1": mcu1.port})
        installer = gateway.installer()
        installer.on_step = lambda step, _update: (_ for _ in ()).throw(PowerCut) if step == "things" else None
        with pytest.raises(PowerCut):
            installer.install(str(bundle(gateway, "u9", {"rootfs": b"\x66" * 4096, "mcu1": b"\x77" * 64},
                                         sequence=9)))
        assert main(["rollback", "--config", str(gateway.config_path), "--json"]) == 1
        outcome = json.loads((gateway.root / "state/journal.json").read_text())["outbox"][-1]
        assert outcome["state"] == "committed" and outcome["result"] == "failure"
        assert outcome["things"]["mcu1"]["result"] == "skipped" and "aborted" in outcome["things"]["mcu1"]["reason"]
        assert gateway.booted() == "B" and gateway.bootloader().get_primary() == "B"


def test_a_crash_loop_in_the_things_step_is_reported_as_a_failure(gateway: Gateway) -> None:
    from agent.update.flow import MAX_RESTARTS

    with_things(gateway, {"mcu1": "/dev/fwagent-offline-mcu"})
    installer = gateway.installer()
    installer.on_step = lambda step, _update: (_ for _ in ()).throw(PowerCut) if step == "things" else None
    with pytest.raises(PowerCut):
        installer.install(str(bundle(gateway, "u10", {"rootfs": b"\x88" * 4096, "mcu1": b"\x99" * 64},
                                     sequence=10)))
    for _ in range(MAX_RESTARTS):
        again = gateway.installer()
        again.on_step = installer.on_step
        with pytest.raises(PowerCut):
            again.resume()
    outcome = gateway.installer().resume()
    assert outcome is not None and outcome.state == "committed" and outcome.result == "failure"
    assert outcome.code == "restart-loop" and outcome.things["mcu1"]["result"] == "skipped"
    assert gateway.booted() == "B"


def test_an_mcuboot_image_already_running_on_trial_is_confirmed_not_uploaded_again(tmp_path: Path) -> None:
    from conftest import missing
    from agent.config import ThingConfig
    from agent.things import flash
    from hil.sim.smp_device import SmpSimulator, imgtool_path, sign_image

    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    old = sign_image(random.Random(11).randbytes(8 * 1024), tmp_path, version="1.0.0")
    new = sign_image(random.Random(12).randbytes(8 * 1024), tmp_path, version="1.1.0")
    with SmpSimulator(baud=0, upload_slot=1, primary=old) as radio:
        thing = ThingConfig(name="radio", port=radio.port, protocol="mcuboot-smp")
        flash(thing, new)
        primary = radio.device.slots[0]
        primary.confirmed = False                 # as after a cut between the trial boot and the confirm
        uploads = radio.device.uploads
        result = flash(thing, new)
        assert result.verified.startswith("already running; confirmed (MCUboot mode swap, assumed")
        assert radio.device.uploads == uploads
        assert primary.confirmed and bytes(primary.data[:len(new)]) == new
