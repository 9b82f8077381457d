"""The A/B install transaction (imperative shell around agent/update/flow.py).

Each state of the flow is saved to the journal under its stable name before
its side effect runs; the side effect returns an event; the table gives the
next state. A restart continues where the resume map says. The final outcome
(committed, rolled back, failed) is recorded in the same atomic journal write
that ends the update, so it is recorded exactly once.
"""

from __future__ import annotations

import base64
import functools
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.errors import FwagentError, ThingOfflineError, UsageError, code_and_detail
from agent.files import private_dir
from agent.install.boot import BootInfo
from agent.install.executor import Progress, SlotExecutor, slot_for
from agent.install.slots import OTHER, SLOT_INDEX, Slot, SlotSink, check_fits, device_identity, size_text
from agent.install.update_record import UpdateRecord
from agent.journal import Journal, JournalDamagedError
from agent.journal_check import Salvage, salvage
from agent.update.flow import FINAL, Event, State, resume, step
from bootloader_bridge.bootchooser.base import SLOTS

if TYPE_CHECKING:
    from agent.download.downloader import Downloader
    from agent.download.downloader import Progress as DownloadProgress
    from agent.download.downloader import Resume
    from agent.delta.param import DeltaRef
    from agent.manifest.check import CheckResult
    from agent.manifest.processor import DeviceIdentity
    from agent.manifest.verify import Trust, VerifiedManifest

# The manifest machinery (SUIT, COSE, cryptography: about 10 MiB) is imported when an update
# needs it, not by a service that waits between updates; the HTTP machinery (requests, TLS:
# about 10 MiB more) when an update downloads, not by an install from a file.


# The states a cancel may still stop: nothing the bootloader boots has changed yet.
BEFORE_SWITCH = frozenset(s.value for s in (State.VERIFY, State.MARK_BAD, State.WRITE, State.STASH, State.STAGED))


MAX_THING_IMAGE = 64 << 20      # a microcontroller's flash is far smaller; kept in the state directory


class InstallError(FwagentError, RuntimeError):
    code = "install"


@dataclass(frozen=True)
class Outcome:
    id: str
    result: str            # "success" | "failure" | "pending"
    state: str
    reason: str = ""
    code: str = ""
    version: str | None = None
    origin: dict[str, Any] | None = None   # who asked for the update (e.g. a DDI action), for reporting
    things: dict[str, dict[str, Any]] | None = None   # each Thing's result: success, failure, offline or skipped
    delta: dict[str, dict[str, Any]] | None = None    # slot label -> what its delta fetched (agent/delta/fetch.py)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Recovery:
    """What ``recover_journal`` did."""

    problem: str           # what was damaged
    kept: Path             # the damaged journal, kept
    slot: str              # the booted slot, now primary and good
    salvaged: Salvage      # what the new journal kept

    def as_dict(self) -> dict[str, Any]:
        return {"damaged": self.problem, "kept": str(self.kept), "slot": self.slot,
                "installed_lost": self.salvaged.installed_lost, "outbox_dropped": self.salvaged.outbox_dropped,
                "update_reported": self.salvaged.update_reported}


class Installer:
    """Runs updates on the slots and bootloader that ``config`` describes."""

    def __init__(self, config: Config, bootloader: Any, boot: BootInfo, *,
                 reboot: Callable[[], None], open_source: Callable[..., Any],
                 progress: Progress | None = None, log: Callable[[str], None] = lambda _m: None,
                 downloader: Downloader | None = None,
                 on_step: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.bootloader = bootloader
        self.boot = boot
        self.reboot_command = reboot
        self.open_source = open_source
        self.progress = progress
        self.log = log
        self.journal = Journal(config.device.state_dir)
        self._downloader = downloader
        self.on_step = on_step          # told each state once it is persisted, before it acts
        self.cancel = threading.Event()   # stops downloads; set by request_cancel or stop
        self.stopping = threading.Event()
        self._point_of_no_return = threading.Lock()
        self._switched = False
        self._record: dict[str, Any] = {}   # the journal's record of the update running: saved at each step
        self._update: UpdateRecord | None = None   # its update, saved into it by _save
        self._held: dict[str, Any] = {}   # sources opened by this run: a bundle URL is read with one GET

    @functools.cached_property
    def trust(self) -> Trust:
        from agent.manifest import cose
        from agent.manifest.verify import Trust
        return Trust(tuple(cose.load_trust_anchor(p) for p in self.config.trust.keys),
                     tuple(cose.load_mac_key(p) for p in self.config.trust.hmac_keys))

    @property
    def downloader(self) -> Downloader:
        if self._downloader is None:
            from agent.download.downloader import Downloader
            self._downloader = Downloader(self.config.download)
        return self._downloader

    @functools.cached_property
    def device(self) -> DeviceIdentity:
        from agent.manifest.processor import DeviceIdentity
        return DeviceIdentity((self.config.device.vendor_id.bytes,), (self.config.device.class_id.bytes,))

    # --- entry points --------------------------------------------------------------

    def install(self, source: str, *, no_reboot: bool = False, origin: dict[str, Any] | None = None,
                links: dict[str, str] | None = None, stage: bool = False) -> Outcome:
        """``links`` map a manifest's ``#name`` payloads to URLs they are downloaded from; ``stage``:
        stop after the write, in ``staged``, until ``release`` (a pending outcome)."""
        with self.journal.locked():
            self._open(source).close()        # an unreadable source is refused before anything starts
            _ = self.trust                    # and so are unreadable trust keys
            record = self.journal.load()
            self.refuse_if_busy(record)
            update = UpdateRecord(id=uuid.uuid4().hex, state=State.VERIFY, source=source, no_reboot=no_reboot,
                                  restarts=0, started=time.time(), origin=origin, links=links or {}, stage=stage,
                                  nulls=frozenset({"origin"}))
            return self._run(record, update, State.VERIFY)

    def release(self) -> Outcome:
        """Let a staged update go on: switch, reboot, and on (a cancel set before: it fails)."""
        with self.journal.locked():
            record = self.journal.load()
            update = UpdateRecord.of(record)
            if update is None or update.state is not State.STAGED:
                raise UsageError("no update is staged", code="not-staged")
            update.released = True
            return self._run(record, update, State.STAGED)

    def request_cancel(self) -> bool:
        """Cancel the update in this process if it has not reached the switch; False once it has.

        Thread-safe against the update's own progress: the decision and the step into
        ``switch`` take the same lock, so an accepted cancel never meets a switched slot.
        """
        with self._point_of_no_return:
            update = UpdateRecord.of(self.journal.load())
            if self._switched or (update is not None and update.state.value not in BEFORE_SWITCH):
                return False
            self.cancel.set()
            return True

    def stop(self) -> None:
        """Leave the update where it is (the journal resumes it at the next start)."""
        self.stopping.set()
        self.cancel.set()

    @staticmethod
    def refuse_if_busy(record: dict[str, Any]) -> None:
        update = UpdateRecord.of(record)
        if update is not None:
            raise UsageError(f"an update is in progress (step {update.state.value}); "
                             "run 'fwagent run' to finish it, or 'fwagent rollback'", code="busy")

    def resume(self) -> Outcome | None:
        """At a start: continue the update in flight, or confirm the slot that booted."""
        with self.journal.locked():
            record = self.journal.load()
            update = UpdateRecord.of(record)
            if update is None:
                self._confirm_booted()
                return None
            if not self._waiting_for_reboot(update, update.state):
                update.restarts += 1   # waiting for a reboot is not a crash
            state, forced = resume(update.state, update.restarts)
            if forced:
                update.fail("restart-loop", f"{update.restarts} restarts within one update")
            return self._run(record, update, state)

    def abort(self, reason: str, code: str = "aborted") -> Outcome:
        """Give up the update in flight: before the switch it fails, after it rolls back."""
        with self.journal.locked():
            record = self.journal.load()
            update = UpdateRecord.of(record)
            if update is None:
                raise UsageError("no update is in progress")
            update.fail(code, reason)
            state = update.state
            if state.value in BEFORE_SWITCH:
                return self._finish(record, update, State.FAILED)
            if state is State.THINGS:     # the gateway is committed: a Thing never rolls it back
                return self._finish(record, update, State.COMMITTED)
            return self._run(record, update, State.ROLLBACK)

    def _waiting_for_reboot(self, update: UpdateRecord, state: State) -> bool:
        """Waiting, not crashing: for the reboot, or staged for the release."""
        if state is State.STAGED:
            return True
        return state in (State.REBOOT, State.CHECK_BOOT) and self.boot.boot_id() == update.boot_id

    def _confirm_booted(self) -> None:
        """No update in flight: the running slot is the good one; restore its boot attempts.

        Boot scripts spend a try (GRUB's X_TRY=1) or count attempts down (U-Boot's
        BOOT_X_LEFT) at every boot; without this confirmation a device that only
        reboots would run out of them, and the fallback of a later update would have
        no good slot to go back to.
        """
        booted = self.boot.booted_slot()
        if booted in OTHER:
            self.bootloader.set_state(booted, True)

    def status(self) -> dict[str, Any]:
        """What can be shown; with a damaged journal, what the bootloader and the kernel say."""
        try:
            record, damaged = self.journal.load(), None
        except JournalDamagedError as err:
            record, damaged = None, err.detail
        installed = (record or {}).get("installed") or {}
        booted = self.boot.booted_slot()
        slots = {}
        for name in SLOTS:
            version = installed.get("version") if installed.get("slot") == name else None
            slots[name] = {"good": self.bootloader.get_state(name), "version": version,
                           "devices": {c: str(pair[name]) for c, pair in self.config.slots.items()}}
        update = UpdateRecord.of(record) if record else None
        shown = None
        if update:
            from agent.log import redact      # a bundle URL's password, if it has one, is not shown
            shown = {"id": update.id, "state": update.state.value, "source": redact(update.source),
                     "target": update.target, "version": update.version, "restarts": update.restarts,
                     "reason": update.reason}
        return {"booted": booted, "primary": self.bootloader.get_primary(), "slots": slots,
                "update": shown,
                "installed": record["installed"] if record else None,
                "outbox": len(record["outbox"]) if record else None,
                "variables": self.bootloader.variables(), "journal_damaged": damaged}

    def recover_journal(self) -> Recovery | None:
        """``fwagent rollback`` on a damaged journal: the booted slot becomes primary and good,
        the damaged journal is kept beside the new one, which keeps what still checks out.
        None if the journal is not damaged."""
        with self.journal.locked():
            try:
                self.journal.load()
                return None
            except JournalDamagedError as err:
                found = err.problem
            booted = self._booted()
            self.bootloader.set_primary(booted)      # first: a failure here leaves all as it was
            self.bootloader.set_state(booted, True)
            text = self.journal.read() or b""
            salvaged = salvage(text, booted, uuid.uuid4().hex)
            kept = self.journal.replace_damaged(text, salvaged.record)
        return Recovery(found, kept, booted, salvaged)

    # --- the loop --------------------------------------------------------------------

    def _run(self, record: dict[str, Any], update: UpdateRecord, state: State) -> Outcome:
        try:
            return self._steps(record, update, state)
        finally:
            for opened in self._held.values():
                opened.close()
            self._held.clear()

    def _steps(self, record: dict[str, Any], update: UpdateRecord, state: State) -> Outcome:
        self._record, self._update = record, update    # what _save (download checkpoints too) saves
        while state not in FINAL:
            if self.stopping.is_set():
                return self._outcome(update, "pending", state.value)
            if not self._may_enter(state, update):
                state = State.FAILED
                break
            update.state = state
            self._save()                               # persisted before its side effect
            if self.on_step:
                self.on_step(state.value, update.as_dict())
            self.log(f"update {update.id[:8]}: {state.value}")
            event = self._act(state, update)
            if event is None:                          # waiting: for a reboot, by hand or to come
                return self._outcome(update, "pending", state.value)
            state = step(state, event)
        return self._finish(record, update, state)

    def _save(self) -> None:
        """The journal's record, with the update in flight as it stands now."""
        assert self._update is not None, "saved only while an update runs"
        self._record["update"] = self._update.as_dict()
        self.journal.save(self._record)

    def _may_enter(self, state: State, update: UpdateRecord) -> bool:
        """A cancel is honoured up to the switch, the point of no return; after it, refused.
        A switch persisted by an earlier process may have happened: past the point too."""
        with self._point_of_no_return:
            resumed_switch = update.state is State.SWITCH
            if (state.value in BEFORE_SWITCH or state is State.SWITCH) and not resumed_switch \
                    and self.cancel.is_set():
                update.fail("cancelled", "cancelled by the server")
                return False
            if state.value not in BEFORE_SWITCH:
                self._switched = True
            return True

    def _act(self, state: State, update: UpdateRecord) -> Event | None:
        action = getattr(self, "_" + state.value.replace("-", "_"))
        try:
            return action(update)
        except (FwagentError, OSError) as err:
            if self.stopping.is_set():
                return None                            # stopped, not failed: resumed at the next start
            if self.cancel.is_set() and state.value in BEFORE_SWITCH:
                update.fail("cancelled", "cancelled by the server")
                return Event.FAILED
            update.fail(*code_and_detail(err))
            self.log(f"update {update.id[:8]}: {state.value} failed: {update.code}: {update.reason}")
            return Event.FAILED

    # --- one method per state: the side effect, and the event it ends with ------------

    def check_source(self, source: str) -> tuple[bytes, CheckResult]:
        """The checks of ``verify``, with no update started: signature, anti-rollback, device,
        target slots (a server action's files are checked so as soon as they arrive)."""
        opened = self._open(source)
        try:
            manifest_bytes = opened.read_manifest()
        finally:
            opened.close()
        return manifest_bytes, self._check(manifest_bytes)

    def _check(self, manifest_bytes: bytes) -> CheckResult:
        from agent.manifest.check import check
        from agent.manifest.verify import RollbackState
        installed = self.journal.load()["installed"]
        rollback = (RollbackState(installed["sequence"], bytes.fromhex(installed["digest"]))
                    if installed else None)
        target = OTHER[self._booted()]
        result = check(manifest_bytes, self.trust, rollback=rollback, device=self.device,
                       slot=SLOT_INDEX[target])
        self._check_targets(result, target)
        return result

    def _open(self, source: str) -> Any:
        return self.open_source(source, self._remote)

    def _remote(self, url: str) -> Any:
        from agent.download.remote import RemoteFile
        return RemoteFile(self.downloader, url, cancel=self.cancel)

    def _source(self, source: str) -> Any:
        """The source, kept open for the rest of this run: a bundle URL's manifest is verified
        from the stream whose payloads are then written."""
        if source not in self._held:
            self._held[source] = self._open(source)
        return self._held[source]

    def _verify(self, update: UpdateRecord) -> Event:
        from agent.manifest.describe import manifest_version
        from agent.manifest.targets import target_of

        manifest_bytes = self._source(update.source).read_manifest()
        result = self._check(manifest_bytes)
        booted = self._booted()
        update.manifest = base64.b64encode(manifest_bytes).decode()
        update.target, update.previous = OTHER[booted], booted
        update.sequence, update.digest = result.manifest.sequence, result.manifest.digest.hex()
        update.version = manifest_version(result.manifest)
        update.nulls |= {"version"}                    # null when the manifest names no version
        installed = self._record["installed"]
        if installed and installed["digest"] == update.digest and installed["slot"] == booted:
            # Written again, it would go into the other slot and overwrite the fallback.
            update.reason = f"already installed on the booted slot {booted}"
            return Event.CURRENT
        things = {target_of(ref.component).name: ref for ref in result.payloads
                  if target_of(ref.component).kind == "thing"}
        # A Thing that can roll back (MCUboot reverts an image that does not confirm) goes first;
        # one that cannot (an STM32, or MCUboot's serial recovery, keeps what it was given) goes last.
        order = sorted(things, key=lambda name: not self.config.things[name].rolls_back)
        update.things = {name: {"result": "pending", "size": things[name].size,
                                "digest": things[name].digest.hex()} for name in order}
        update.things_only = len(things) == len(result.payloads)
        return Event.NO_SLOTS if update.things_only else Event.OK

    def _mark_bad(self, update: UpdateRecord) -> Event:
        assert update.target is not None and update.previous is not None, "known from verify on"
        self._check_not_booted(update.target)
        # The running slot is the fallback of this update: it must be bootable (GRUB's
        # X_TRY back to 0, U-Boot's attempts restored) before the target is touched.
        self.bootloader.set_state(update.previous, True)
        self.bootloader.set_state(update.target, False)
        return Event.OK

    def _write(self, update: UpdateRecord) -> Event:
        """The target slots, and the Things' images kept for after the commit (``stash`` too)."""
        assert update.target is not None, "known from verify on"
        self._check_not_booted(update.target)     # again: a restart may come after a renumbering
        manifest = self._manifest(update)
        things = self._thing_images()
        for name, thing in (update.things or {}).items():
            private_dir(things[name].device.parent)
            stash = os.open(things[name].device, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(stash, 0o600)
                os.ftruncate(stash, thing["size"])
            finally:
                os.close(stash)
        source = self._source(update.source)
        try:
            from agent.manifest.processor import Processor
            source.read_manifest()  # a bundle streams: its payloads follow the manifest
            payloads = source.payloads(manifest, SLOT_INDEX[update.target])
            executor = SlotExecutor(self._slots(update.target), payloads, self.progress,
                                    download=lambda uri, slot, size, digest, delta: self._download(
                                        update, uri, slot, size, digest, delta), links=update.links or {},
                                    things=things)
            if getattr(source, "streamed", False):
                self._resume_stream(update, source, executor)
            processor = Processor(manifest, self.device, executor)
            executor.parameters = processor.parameters
            processor.run("update")
            payloads.finish()       # the whole source checked, not only the payloads written
        finally:
            source.close()
        return Event.STAGE if update.stage else Event.OK

    def _staged(self, update: UpdateRecord) -> Event | None:
        """Written and checked; the switch waits for ``release`` (None: pending, staged)."""
        return Event.OK if update.released else None

    def _resume_stream(self, update: UpdateRecord, source: Any, executor: SlotExecutor) -> None:
        """A bundle read from a URL: what an earlier process wrote of it (synced, recorded) is not
        fetched again, if the server still has the same bundle (same ETag or Last-Modified);
        each new durable position is recorded as the payloads are written."""
        from agent.install.bundle_source import StreamProgress
        progress = StreamProgress.from_dict(update.stream)
        if progress.validator is None or progress.validator != source.validator:
            progress = StreamProgress(source.validator)        # another bundle, or none to tell: from zero
        executor.resume = dict(progress.written)

        def checkpoint(label: str, durable: int) -> None:
            progress.written[label] = durable
            update.stream = progress.as_dict()
            self._save()
        executor.checkpoint = checkpoint

    _stash = _write     # Things only: the same processing; no slot component is written

    def _download(self, update: UpdateRecord, uri: str, slot: Slot, size: int | None,
                  digest: bytes | None, delta: DeltaRef | None) -> tuple[bytes, int]:
        """Fetch into the slot, resuming where an earlier process left off (the journal says); by
        delta when the manifest offers it and no full download of this payload was begun."""
        from agent.download.downloader import Resume
        if update.downloads is None:
            update.downloads = {}
        downloads = update.downloads
        if delta is not None and size is not None and not downloads.get(slot.label):
            written = self._delta(update, delta, slot, size)
            if written is not None:
                return written

        def checkpoint(resume: Resume) -> None:
            downloads[slot.label] = resume.as_dict()
            self._save()

        def progress(p: DownloadProgress) -> None:
            if self.progress:
                self.progress(slot.label, p.done, p.total)

        sink = SlotSink(slot, size)
        try:
            result = self.downloader.fetch(uri, sink, size=size, digest=digest,
                                           resume=Resume.from_dict(downloads.get(slot.label)),
                                           checkpoint=checkpoint, cancel=self.cancel, progress=progress)
        finally:
            sink.close()
        return result.digest, result.size

    def _delta(self, update: UpdateRecord, delta: DeltaRef, slot: Slot, size: int) -> tuple[bytes, int] | None:
        """The image by delta from the booted slot of the same class; None when the solid payload
        must be fetched instead (the reason is kept for the outcome)."""
        from agent.delta.fetch import DeltaStats, Fallback, install_delta

        assert update.previous is not None, "known from verify on"
        old = self._slots(update.previous)[slot.slot_class]

        def progress(done: int, total: int) -> None:
            if self.progress:
                self.progress(slot.label, done, total, full=size)

        if update.delta is None:
            update.delta = {}
        report = update.delta
        try:
            written, stats = install_delta(self.downloader, delta, old, slot, size, cancel=self.cancel,
                                           progress=progress)
        except Fallback as fallback:
            stats = DeltaStats("full", size, fetched=fallback.fetched, reason=fallback.reason)
            self.log(f"{slot.label}: fetching the full image: {fallback.reason}")
            written = None
        report[slot.label] = stats.as_dict()
        self._save()
        return written

    def _switch(self, update: UpdateRecord) -> Event:
        # The boot this switch happens in; saved with the next state, before any reboot,
        # so that check-boot can tell "not rebooted yet" from "the bootloader fell back".
        update.boot_id = self.boot.boot_id()
        self.bootloader.set_primary(update.target)
        return Event.OK

    def _reboot(self, update: UpdateRecord) -> Event | None:
        if update.no_reboot:
            return None
        self.reboot_command()
        return Event.OK if self.boot.boot_id() != update.boot_id else None

    def _check_boot(self, update: UpdateRecord) -> Event | None:
        if self.boot.boot_id() == update.boot_id:
            return None if update.no_reboot else Event.SAME_BOOT
        booted = self._booted()
        if booted != update.target:
            update.fail("fell-back", f"the bootloader fell back to slot {booted}")
            return Event.FELL_BACK
        return Event.OK

    def _health(self, update: UpdateRecord) -> Event:
        from agent.install.health import run_health
        healthy, reason = run_health(self.config.health)
        if not healthy:
            update.fail("unhealthy", reason)
            return Event.FAILED
        return Event.OK

    def _commit(self, update: UpdateRecord) -> Event:
        self.bootloader.set_state(update.target, True)
        return Event.THINGS if update.things else Event.OK

    def _things(self, update: UpdateRecord) -> Event:
        """Flash each Thing from its kept image, checked again; after a failure the rest are skipped.
        A Thing not reached (offline) was not written to: the rest go on. Each result is saved as
        it comes: a restart flashes only the Things not done."""
        import hashlib

        from agent import things as thing_io

        assert update.things is not None, "an update with Things to flash"
        failed = next((name for name, t in update.things.items() if t["result"] == "failure"), None)
        for name, thing in update.things.items():
            if thing["result"] != "pending":
                continue
            if failed is not None:
                thing.update(result="skipped", reason=f"not flashed: {failed} failed before it")
            else:
                tried_before = thing.get("tried", False)     # a power cut may have left it half written
                try:
                    if name not in self.config.things:
                        raise InstallError(f"{name}: no longer configured ([things.{name}])", code="unknown-thing")
                    data = (self._things_dir / f"{name}.img").read_bytes()
                    if len(data) != thing["size"] or hashlib.sha256(data).digest() != bytes.fromhex(thing["digest"]):
                        raise InstallError(f"{name}: its kept image changed since it was checked",
                                           code="image-mismatch")     # read once: checked is flashed
                    thing["tried"] = True
                    self._save()
                    result = thing_io.flash(self.config.things[name], data, self._thing_progress(name))
                    thing.update(result="success", verified=result.verified, seconds=round(result.seconds, 1))
                except (FwagentError, OSError, ValueError, LookupError) as err:
                    code, detail = code_and_detail(err)
                    if isinstance(err, ThingOfflineError) and not tried_before:
                        thing.update(result="offline", code=code, reason=detail)
                    else:
                        failed = name
                        if isinstance(err, ThingOfflineError):
                            detail += "; an earlier attempt, cut short, may have written part of it"
                        thing.update(result="failure", code=code, reason=detail)
                    self.log(f"update {update.id[:8]}: Thing {name}: {code}: {detail}")
            self._save()
        offline = [name for name, t in update.things.items() if t["result"] == "offline"]
        if failed is not None:
            update.fail("thing-failed", f"Thing {failed} was not updated")
        elif offline:
            update.fail("thing-offline", f"not reached, not updated: {', '.join(offline)}")
        return Event.OK

    def _rollback(self, update: UpdateRecord) -> Event:
        target, previous = update.target, update.previous
        self.bootloader.set_state(target, False)
        self.bootloader.set_primary(previous)
        self.bootloader.set_state(previous, True)
        return Event.OK

    # --- the end -----------------------------------------------------------------------

    def _finish(self, record: dict[str, Any], update: UpdateRecord, state: State) -> Outcome:
        things = update.things or {}
        for thing in things.values():
            if thing["result"] == "pending":
                thing.update(result="skipped", reason=f"not flashed: the update ended {state.value}"
                             + (f" ({update.code})" if update.code else ""))
        done = all(thing["result"] == "success" for thing in things.values())
        result = ("success" if (state is State.COMMITTED and done) or state is State.ALREADY_INSTALLED
                  else "failure")
        outcome = self._outcome(update, result, state.value)
        if state is State.COMMITTED:
            before = record["installed"] or {}
            # Things only: the gateway runs what it ran; its slot and version stay.
            only = update.things_only
            record["installed"] = {"sequence": update.sequence, "digest": update.digest,
                                   "version": before.get("version") if only else update.version,
                                   "slot": update.previous if only else update.target, "time": time.time()}
        record["outbox"].append(outcome.as_dict())
        record["update"] = None
        self.journal.save(record)                      # the outcome and the end, in one write
        if self._things_dir.exists():
            import shutil
            shutil.rmtree(self._things_dir, ignore_errors=True)   # the kept Thing images
        with self._point_of_no_return:                 # ready for the next update of this process
            self._switched = False
            if not self.stopping.is_set():
                self.cancel.clear()
        self.log(f"update {update.id[:8]}: {state.value}"
                 + "".join(f": {text}" for text in (outcome.code, outcome.reason) if text))
        if state is State.ROLLED_BACK and self._booted() == update.target:
            self.reboot_command()                      # running the bad slot: go back
        return outcome

    def _outcome(self, update: UpdateRecord, result: str, state: str) -> Outcome:
        things = {name: {k: v for k, v in t.items() if k not in ("size", "digest", "tried")}
                  for name, t in (update.things or {}).items()} or None
        return Outcome(id=update.id, result=result, state=state, reason=update.reason or "",
                       origin=update.origin, things=things, delta=update.delta or None,
                       code=update.code or "", version=update.version)

    # --- helpers ------------------------------------------------------------------------

    def _booted(self) -> str:
        booted = self.boot.booted_slot()
        if booted not in OTHER:
            raise InstallError("the booted slot is unknown: the kernel command line has no fwagent.slot=A|B",
                               code="booted-unknown")
        return booted

    def _thing_progress(self, name: str) -> Callable[[str, int, int], None]:
        """Each phase of a Thing (erasing, writing, verifying, activating) counts to 100 % by itself:
        it is named in the label."""
        def report(phase: str, done: int, total: int) -> None:
            if self.progress:
                self.progress(f"thing.{name} ({phase})", done, total)
        return report

    @property
    def _things_dir(self) -> Path:
        return self.config.device.state_dir / "things"

    def _thing_images(self) -> dict[str, Slot]:
        """Where each configured Thing's image is kept between ``write`` and ``things``."""
        return {name: Slot("thing", name, self._things_dir / f"{name}.img") for name in self.config.things}

    def _slots(self, group: str) -> dict[str, Slot]:
        return {name: Slot(name, group, pair[group]) for name, pair in self.config.slots.items()}

    def _manifest(self, update: UpdateRecord) -> VerifiedManifest:
        """The manifest of the update in flight, its signature checked again: the journal
        is a file like any other. Payloads are bound to it by their digests."""
        from agent.manifest.verify import verify_envelope
        assert update.manifest is not None, "known from verify on"
        return verify_envelope(base64.b64decode(update.manifest), self.trust)

    def _check_targets(self, result: CheckResult, target: str) -> None:
        """Every payload goes to a configured slot of the target group, is verifiable, is not smaller
        than its class's least size (an empty one never passes), and fits."""
        payloads = result.payloads
        if not payloads:
            raise InstallError("the manifest fetches no payload", code="nothing-to-install")
        unsupported = sorted({a["action"] for a in result.actions} & {"copy", "swap"})
        if unsupported:
            raise InstallError(f"{', '.join(unsupported)} between components is not supported on gateway "
                               "slots", code="unsupported-command")
        self._check_not_booted(target)
        slots, things = self._slots(target), self._thing_images()
        for ref in payloads:
            slot = slot_for(ref.component, slots, things)
            if ref.digest is None or ref.size is None:
                raise InstallError(f"{slot.label}: the manifest gives no image-digest and image-size for "
                                   f"{ref.uri}: it could not be verified", code="unverifiable-payload")
            # An empty image would leave the slot as it is: the switch would boot what it held before.
            least = 1 if slot.slot_class == "thing" else self.config.min_image_sizes.get(slot.slot_class, 1)
            if ref.size < least:
                setting = "" if slot.slot_class == "thing" else f" ([slots.{slot.slot_class}].min_size)"
                raise InstallError(f"{slot.label}: the image has {ref.size} bytes, fewer than the {least}{setting} "
                                   "an image must have", code="image-too-small")
            if slot.slot_class == "thing":
                if ref.size > MAX_THING_IMAGE:
                    raise InstallError(f"{slot.label}: {size_text(ref.size)} is more than a Thing's "
                                       f"{size_text(MAX_THING_IMAGE)}", code="thing-image-too-large")
            else:
                check_fits(slot, ref.size)

    def _check_not_booted(self, target: str) -> None:
        """The target is not the booted slot, by name and by device identity."""
        if self._booted() == target:
            raise InstallError(f"slot {target} is booted; it is never written", code="slot-booted")
        booted = {device_identity(pair[OTHER[target]]) for pair in self.config.slots.values()}
        for slot in self._slots(target).values():
            if device_identity(slot.device) in booted:
                raise InstallError(f"{slot.label} ({slot.device}) is a device of the booted slot; it is "
                                   "never written", code="slot-booted")
