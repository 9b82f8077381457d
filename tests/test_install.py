"""The A/B install transaction on a simulated gateway (file slots, the file bootloader)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import FwagentError, UsageError
from install_bench import Gateway, make_gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path)


def journal(gateway: Gateway) -> dict:
    return json.loads((gateway.root / "state/journal.json").read_text())


def test_install_commits_on_the_new_slot(gateway: Gateway) -> None:
    factory = gateway.slot_digest("A")
    bundle = gateway.bundle("u2", sequence=2)
    outcome = gateway.installer().install(str(bundle))
    assert (outcome.result, outcome.state, outcome.version) == ("success", "committed", "2.0.0")
    assert gateway.booted() == "B"
    image = (gateway.root / "u2.img").read_bytes()
    assert (gateway.root / "rootfs-b.img").read_bytes()[:len(image)] == image
    assert gateway.slot_digest("A") == factory                     # the booted slot was never written
    boot = gateway.bootloader()
    assert boot.get_primary() == "B" and boot.get_state("A") and boot.get_state("B")
    record = journal(gateway)
    assert record["installed"]["sequence"] == 2 and record["update"] is None
    assert [o["result"] for o in record["outbox"]] == ["success"]


def test_next_update_goes_back_to_a_and_rollback_is_refused(gateway: Gateway) -> None:
    gateway.installer().install(str(gateway.bundle("u2", sequence=2)))
    assert gateway.installer().install(str(gateway.bundle("u3", sequence=3, seed=3))).result == "success"
    assert gateway.booted() == "A"
    old = gateway.bundle("u1", sequence=1, seed=5)
    outcome = gateway.installer().install(str(old))
    assert (outcome.result, outcome.code) == ("failure", "rollback")
    assert gateway.booted() == "A" and gateway.bootloader().get_primary() == "A"


def test_the_committed_manifest_offered_again_changes_nothing(gateway: Gateway) -> None:
    """A server that keeps offering the installed update: no write, no switch, no reboot, one
    success each time; the fallback slot keeps the old image."""
    from agent.ddi.outbox import outcome_feedback
    bundle = gateway.bundle("u2", sequence=2)
    assert gateway.installer().install(str(bundle)).result == "success"
    before = (gateway.slot_digest("A"), gateway.slot_digest("B"), gateway.bootloader().variables(),
              gateway.installer().boot.boot_id(), journal(gateway)["installed"])
    for _ in range(3):
        steps: list[str] = []
        installer = gateway.installer()
        installer.on_step = lambda state, _update: steps.append(state)
        outcome = installer.install(str(bundle))
        assert (outcome.result, outcome.state, outcome.version) == ("success", "already-installed", "2.0.0")
        assert outcome.reason == "already installed on the booted slot B" and steps == ["verify"]
    after = (gateway.slot_digest("A"), gateway.slot_digest("B"), gateway.bootloader().variables(),
             gateway.installer().boot.boot_id(), journal(gateway)["installed"])
    assert after == before and gateway.booted() == "B"
    outbox = journal(gateway)["outbox"]
    assert [(o["result"], o["state"]) for o in outbox] == [("success", "committed")] + [
        ("success", "already-installed")] * 3
    kind, body = outcome_feedback(outbox[-1])
    assert kind == "deploymentBase" and body["status"]["result"]["finished"] == "success"
    [detail] = body["status"]["details"]          # no failure code, no reason: one line of what it was
    assert detail.startswith("fwagent: ") and "already" in detail and detail.endswith(", version 2.0.0")


def test_the_committed_manifest_is_written_again_once_the_other_slot_runs(gateway: Gateway) -> None:
    """Committed on B, but the device runs A (B failed later and the bootloader fell back):
    the update goes into B again."""
    bundle = gateway.bundle("u2", sequence=2)
    gateway.installer().install(str(bundle))
    gateway.bootloader().set_primary("A")
    gateway.power_cycle()
    assert gateway.booted() == "A"
    outcome = gateway.installer().install(str(bundle))
    assert (outcome.result, outcome.state) == ("success", "committed") and gateway.booted() == "B"


def test_another_manifest_with_the_installed_sequence_is_a_rollback(gateway: Gateway) -> None:
    gateway.installer().install(str(gateway.bundle("u2", sequence=2)))
    code, reason = refusal(gateway, gateway.bundle("u2-other", sequence=2, seed=9))
    assert code == "rollback" and "equals the installed one but the manifest differs" in reason


def test_install_of_the_committed_bundle_says_already_installed(gateway: Gateway, capsys) -> None:
    bundle = gateway.bundle("u2", sequence=2)
    config = ["--config", str(gateway.config_path)]
    assert main(["install", str(bundle), *config]) == 0
    capsys.readouterr()
    assert main(["install", str(bundle), *config]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("update ") and out[0].endswith(
        ": already installed, version 2.0.0")


def test_unhealthy_new_slot_rolls_back(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, health='[["sh", "-c", "echo app down >&2; exit 3"]]')
    outcome = gateway.installer().install(str(gateway.bundle("u2", sequence=2)))
    assert (outcome.result, outcome.state, outcome.code) == ("failure", "rolled-back", "unhealthy")
    assert "exited 3: app down" in outcome.reason
    assert gateway.booted() == "A"                                 # rebooted back into the old slot
    boot = gateway.bootloader()
    assert boot.get_primary() == "A" and not boot.get_state("B")
    assert journal(gateway)["installed"] is None


def test_new_slot_that_never_boots_falls_back(gateway: Gateway) -> None:
    """The new kernel dies before fwagent runs: the try is used up and the bootloader falls back."""
    installer = gateway.installer()
    outcome = installer.install(str(gateway.bundle("u2", sequence=2)), no_reboot=True)
    assert (outcome.result, outcome.state) == ("pending", "reboot")
    gateway.power_cycle()       # boots B once: the system hangs before fwagent starts
    assert gateway.booted() == "B"
    gateway.power_cycle()       # B's only try is spent and it was never marked good
    assert gateway.booted() == "A"
    outcome = gateway.installer().resume()
    assert (outcome.result, outcome.state, outcome.code) == ("failure", "rolled-back", "fell-back")
    assert "fell back to slot A" in outcome.reason
    assert gateway.bootloader().get_primary() == "A"


def test_no_reboot_waits_and_commit_by_hand_after_the_reboot(gateway: Gateway, capsys) -> None:
    bundle = gateway.bundle("u2", sequence=2)
    config = ["--config", str(gateway.config_path)]
    assert main(["install", str(bundle), "--no-reboot", *config]) == 0
    assert "waiting at step reboot" in capsys.readouterr().out
    assert main(["commit", *config]) == 0            # same boot: still waiting, nothing changes
    assert "waiting at step check-boot" in capsys.readouterr().out
    assert gateway.booted() == "A"
    gateway.power_cycle()
    assert main(["commit", *config, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["event"] == "outcome" and lines[-1]["result"] == "success"
    assert main(["status", *config, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["booted"], status["primary"], status["update"]) == ("B", "B", None)
    assert status["slots"]["B"]["version"] == "2.0.0"


def test_rollback_by_hand_before_and_after_the_switch(gateway: Gateway) -> None:
    installer = gateway.installer()
    installer.install(str(gateway.bundle("u2", sequence=2)), no_reboot=True)
    outcome = gateway.installer().abort("operator said no")
    assert (outcome.result, outcome.state, outcome.code) == ("failure", "rolled-back", "aborted")
    assert gateway.bootloader().get_primary() == "A" and gateway.booted() == "A"
    with pytest.raises(UsageError, match="no update is in progress"):
        gateway.installer().abort("again")


def refusal(gateway: Gateway, bundle: Path) -> tuple[str, str]:
    before = (gateway.slot_digest("A"), gateway.slot_digest("B"), gateway.bootloader().variables())
    outcome = gateway.installer().install(str(bundle))
    assert outcome.result == "failure" and outcome.state == "failed"
    after = (gateway.slot_digest("A"), gateway.slot_digest("B"), gateway.bootloader().variables())
    assert after == before, "a refused update must change nothing"
    return outcome.code, outcome.reason


def test_refusals_change_nothing(gateway: Gateway) -> None:
    assert refusal(gateway, gateway.bundle("big", sequence=2, size=5 << 20)) == (
        "slot-too-small", "rootfs.B holds 4 MiB, image is 5 MiB")
    code, reason = refusal(gateway, gateway.bundle("appfs", sequence=2, component="appfs"))
    assert code == "unknown-slot-class" and "[slots.appfs]" in reason
    code, _ = refusal(gateway, gateway.bundle("evil", sequence=2, key="other.pem"))
    assert code == "untrusted-signer"
    assert [o["code"] for o in journal(gateway)["outbox"]] == ["slot-too-small", "unknown-slot-class",
                                                               "untrusted-signer"]


@pytest.mark.parametrize("min_size, size", [(None, 0), (4096, 0), (4096, 4095)])
def test_an_image_smaller_than_its_class_allows_is_refused(gateway: Gateway, min_size: int | None,
                                                           size: int) -> None:
    """An empty image would leave slot B as it was: the switch would boot whatever B held before,
    while the device reported the new version."""
    if min_size is not None:
        text = gateway.config_path.read_text()
        gateway.config_path.write_text(text.replace("[slots.rootfs.A]", f"[slots.rootfs]\nmin_size = {min_size}\n"
                                                    "[slots.rootfs.A]"))
    bundle = gateway.bundle("small", sequence=2, size=size)
    with pytest.raises(FwagentError) as checked:      # as the daemon checks a downloaded update
        gateway.installer().check_source(str(bundle))
    assert checked.value.code == "image-too-small"
    code, reason = refusal(gateway, bundle)
    assert code == "image-too-small"
    assert reason == (f"rootfs.B: the image has {size} bytes, fewer than the {min_size or 1} "
                      "([slots.rootfs].min_size) an image must have")
    assert journal(gateway)["installed"] is None


def test_an_image_of_the_least_size_is_installed(gateway: Gateway) -> None:
    text = gateway.config_path.read_text()
    gateway.config_path.write_text(text.replace("[slots.rootfs.A]", "[slots.rootfs]\nmin_size = 4096\n"
                                                "[slots.rootfs.A]"))
    assert gateway.installer().install(str(gateway.bundle("u2", sequence=2, size=4096))).result == "success"


def test_booted_slot_is_never_a_target(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, slot_b="rootfs-a.img")
    assert refusal(gateway, gateway.bundle("u2", sequence=2))[0] == "slot-booted"


def test_corrupt_payload_leaves_the_slot_bad_and_activates_nothing(gateway: Gateway) -> None:
    bundle = gateway.bundle("u2", sequence=2)
    data = bytearray(bundle.read_bytes())
    data[-4096] ^= 0xFF                       # inside the payload, after the manifest
    bundle.write_bytes(bytes(data))
    outcome = gateway.installer().install(str(bundle))
    assert (outcome.state, outcome.code) == ("failed", "bundle-digest-mismatch")
    boot = gateway.bootloader()
    assert boot.get_primary() == "A" and not boot.get_state("B") and gateway.booted() == "A"


def test_unreadable_source_is_refused_before_anything_starts(gateway: Gateway) -> None:
    with pytest.raises(FwagentError, match="cannot read"):
        gateway.installer().install(str(gateway.root / "missing.fwb"))
    assert not (gateway.root / "state/journal.json").exists()


def test_second_install_while_one_is_in_flight_is_refused(gateway: Gateway) -> None:
    gateway.installer().install(str(gateway.bundle("u2", sequence=2)), no_reboot=True)
    with pytest.raises(UsageError, match="an update is in progress"):
        gateway.installer().install(str(gateway.bundle("u3", sequence=3)))


def test_install_from_a_url_with_json_progress(gateway: Gateway, capsys) -> None:
    import functools
    import http.server
    import threading

    bundle = gateway.bundle("u2", sequence=2, size=3 << 20)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(gateway.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{bundle.name}"
        assert main(["install", url, "--config", str(gateway.config_path), "--json"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1] == {"event": "progress", "slot": "rootfs.B", "done": 3 << 20,
                                         "total": 3 << 20}
    assert [e["message"].split(": ")[1] for e in events if e["event"] == "log"][:3] == ["verify", "mark-bad",
                                                                                     "write"]
    assert events[-1]["event"] == "outcome" and events[-1]["result"] == "success"
    assert gateway.booted() == "B"


def signed_manifest(gateway: Gateway, install: list, *, image: bytes, sequence: int = 2) -> Path:
    """A manifest with the install sequence given, for the gateway's identity, signed with its key."""
    import uuid as uuid_module

    from agent.manifest import cose
    from suit_factory import (CLASS, IMAGE_MATCH, OVERRIDE, P_CLASS, P_DIGEST, P_SIZE, P_VENDOR, REPORT,
                              VENDOR, digest_bstr, envelope, manifest)
    vendor = uuid_module.uuid5(uuid_module.NAMESPACE_DNS, "example.com")
    shared = [OVERRIDE, {P_VENDOR: vendor.bytes, P_CLASS: uuid_module.uuid5(vendor, "gw-test").bytes},
              VENDOR, REPORT, CLASS, REPORT, OVERRIDE, {P_DIGEST: digest_bstr(image), P_SIZE: len(image)}]
    body = manifest(sequence, components=[[b"rootfs"]], shared=shared, install=install,
                    validate=[IMAGE_MATCH, REPORT])
    path = gateway.root / "hand.suit"
    path.write_bytes(envelope(body, cose.load_private_key(gateway.root / "release.pem")))
    return path


def test_a_fetched_payload_is_checked_even_without_image_match(gateway: Gateway) -> None:
    from suit_factory import FETCH, OVERRIDE, P_URI, REPORT
    good = b"good image" * 1000
    manifest = signed_manifest(gateway, [OVERRIDE, {P_URI: "#img"}, FETCH, REPORT], image=good)
    (gateway.root / "img").write_bytes(b"evil image" * 1000)      # same size, other bytes
    outcome = gateway.installer().install(str(manifest))
    assert (outcome.state, outcome.code) == ("failed", "image-mismatch")
    boot = gateway.bootloader()
    assert boot.get_primary() == "A" and not boot.get_state("B") and gateway.booted() == "A"
    (gateway.root / "img").write_bytes(good)
    assert gateway.installer().install(str(manifest)).result == "success"


def test_a_payload_without_digest_is_refused_before_anything_changes(gateway: Gateway) -> None:
    from agent.manifest import cose
    from suit_factory import FETCH, OVERRIDE, P_URI, REPORT, envelope, manifest
    body = manifest(2, components=[[b"rootfs"]], shared=[], install=[OVERRIDE, {P_URI: "#img"}, FETCH, REPORT])
    (gateway.root / "img").write_bytes(b"x" * 100)
    path = gateway.root / "nodigest.suit"
    path.write_bytes(envelope(body, cose.load_private_key(gateway.root / "release.pem")))
    code, reason = refusal(gateway, path)
    assert code == "unverifiable-payload" and "no image-digest and image-size" in reason


def test_waiting_for_a_reboot_is_not_a_crash(gateway: Gateway) -> None:
    gateway.installer().install(str(gateway.bundle("u2", sequence=2)), no_reboot=True)
    for _ in range(10):                              # more than the restart limit
        assert gateway.installer().resume().result == "pending"
    gateway.power_cycle()
    assert gateway.installer().resume().result == "success"


def test_every_start_confirms_the_booted_slot(gateway: Gateway) -> None:
    boot = gateway.bootloader()
    boot.set_primary("A")                            # A has a single try left, as after a switch
    assert boot.variables()["A_pending"] == "1"
    assert gateway.installer().resume() is None      # no update in flight: A is confirmed good
    variables = gateway.bootloader().variables()
    assert (variables["A_pending"], variables["A_left"]) == ("0", "3")


def test_a_second_process_is_refused_while_one_works(gateway: Gateway) -> None:
    import subprocess
    import sys

    state = gateway.root / "state"
    state.mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(state / 'lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match="another fwagent process") as caught:
            gateway.installer().install(str(gateway.bundle("u2", sequence=2)))
        assert caught.value.code == "busy"
    finally:
        holder.kill()
        holder.wait()


def test_threads_of_one_process_wait_for_the_journal_instead_of_refusing_each_other(gateway: Gateway) -> None:
    import threading
    import time

    journal = gateway.installer().journal
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with journal.locked():
            taken.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    with pytest.raises(UsageError, match="the update in progress holds the journal"):
        with journal.locked(wait=0.2):
            pass
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with journal.locked(wait=5):                    # waited for, not refused
        assert time.monotonic() - started >= 0.2
    holder.join()


def test_a_missing_cmdline_is_a_one_line_error(gateway: Gateway, capsys) -> None:
    (gateway.root / "cmdline").unlink()
    assert main(["install", str(gateway.bundle("u2", sequence=2)), "--config", str(gateway.config_path)]) == 1
    out = capsys.readouterr().out
    assert "bootloader: cannot read the kernel command line" in out


def test_the_writer_behind_a_bundle_writes_in_order_and_hands_its_error_back(tmp_path: Path) -> None:
    """Buffers go round between the reading thread and the writer; a write that fails is raised in
    the reading thread, and nothing after it is written."""
    from agent.install.slots import Slot, SlotError, SlotSink, WriteBehind

    device = tmp_path / "slot.img"
    device.write_bytes(bytes(64 << 10))
    sink = SlotSink(Slot("rootfs", "B", device), 64 << 10)
    behind = WriteBehind(sink, 4096)
    for value in range(8):
        buffer = behind.buffer()
        buffer[:4096] = bytes([value]) * 4096
        behind.put(buffer, 4096)
    behind.close()
    sink.close()
    data = device.read_bytes()
    assert [data[i * 4096] for i in range(8)] == list(range(8)) and data[8 * 4096:] == bytes(len(data) - 8 * 4096)

    small = SlotSink(Slot("rootfs", "B", device), 0)
    small.capacity = 6000                      # the slot ends in the second buffer
    behind = WriteBehind(small, 4096)
    with pytest.raises(SlotError) as error:
        for _ in range(8):
            buffer = behind.buffer()
            behind.put(buffer, 4096)
        behind.close()
    assert error.value.code == "slot-too-small"
    small.close()


class _Stream:
    """A checked payload stream as a bundle gives one, on a link of ``seconds_per_mib``."""

    def __init__(self, data: bytes, clock: list[float], seconds_per_mib: float) -> None:
        self.data, self.clock, self.rate, self.position = data, clock, seconds_per_mib, 0

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = min(len(buffer), len(self.data) - self.position, 1 << 20)
        buffer[:count] = self.data[self.position:self.position + count]
        self.position += count
        self.clock[0] += self.rate * count / (1 << 20)
        return count

    @property
    def checked_digest(self) -> bytes | None:
        import hashlib
        return hashlib.sha256(self.data).digest() if self.position == len(self.data) else None


@pytest.mark.parametrize("seconds_per_mib, checkpoints", [(0.01, [32]), (0.2, [8, 16, 24, 32])])
def test_a_streamed_payload_is_synced_every_8_mib_once_a_second_has_passed(
        tmp_path: Path, seconds_per_mib: float, checkpoints: list[int]) -> None:
    import os

    from agent.install.executor import SlotExecutor
    from agent.install.slots import Slot

    device = tmp_path / "slot.img"
    device.write_bytes(bytes(40 << 20))
    data = os.urandom(32 << 20)
    clock = [0.0]
    recorded: list[int] = []

    class Source:
        def open(self, uri: str, size: int | None) -> _Stream:
            return _Stream(data, clock, seconds_per_mib)

    executor = SlotExecutor({}, Source(), checkpoint=lambda _label, n: recorded.append(n >> 20),
                            clock=lambda: clock[0])
    digest, written = executor._stream(Slot("rootfs", "B", device), "#rootfs.img", len(data))
    assert written == len(data) and device.read_bytes()[:len(data)] == data
    assert recorded == checkpoints
