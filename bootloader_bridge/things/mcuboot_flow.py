"""Flashing an MCUboot Thing: the flow of its mode (bootloader_bridge/things/mcuboot_modes.py),
step by step, on a Thing that agent/things.py opened (its flasher, and ``restart`` through its
reset lines or SMP's reset). The mcuboot-smp protocol's flow (smp.py's ``PROTOCOL``).

The mode comes from the device when it reports it, else from the configuration, else a swap
mode is assumed. A step the device refuses, and an image that does not come up, name the mode
the flow was for and how it was come by.

An image found running already (a power cut after the reset, before the confirm) is confirmed
if its flow confirms, not uploaded again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agent.errors import ThingError, ThingTimeoutError, ThingVerifyError
from bootloader_bridge.things import smp_codec as codec
from bootloader_bridge.things.base import FlashProgress, FlashResult
from bootloader_bridge.things.mcuboot_image import parse
from bootloader_bridge.things.mcuboot_modes import PRIMARY_WRITTEN, Choice, Step, UnknownModeError, choose
from bootloader_bridge.things.smp import SmpRefusedError

POLL = 0.2          # seconds between two looks at a Thing that is rebooting


def flash(session: Any, image: bytes, progress: FlashProgress | None, name: str,
          settings: Mapping[str, Any]) -> FlashResult:
    """Run the flow of the Thing's mode (``settings``: its mcuboot_mode and boot_timeout)."""
    flasher = session.flasher
    digest = parse(image).hash
    try:
        states, in_bootloader = flasher.listing()
    except SmpRefusedError as exc:
        if exc.rc != codec.ENOTSUP:
            raise
        raise SmpRefusedError(f"{exc.detail}: the device has no image management (SMP group 1); nothing was sent",
                              rc=exc.rc) from None
    try:
        choice = choose(None if in_bootloader else flasher.bootloader_mode(), settings["mcuboot_mode"], in_bootloader)
    except UnknownModeError as exc:
        raise ThingError(f"{name}: {exc}; nothing was sent") from None
    running = _active(states)
    if not in_bootloader and running is not None and running.hash == digest:
        if Step.CONFIRM in choice.flow.steps and not running.confirmed:
            _step(choice, "confirm", lambda: flasher.confirm(digest))
            return FlashResult(0, f"already running; confirmed ({choice.describe()})")
        return FlashResult(0, f"already running ({choice.describe()})")
    run = _Run(name, settings["boot_timeout"], session, image, digest, choice, progress)
    run.was_running = running.hash if running is not None else None
    steps, ending = list(choice.flow.steps), _ENDING[choice.flow.name]
    while steps:
        step = steps.pop(0)
        if not (step is Step.ENTER and in_bootloader):
            run.do(step)
        if step is Step.UPLOAD and choice.flow.secondary and run.in_primary():
            steps, ending = list(PRIMARY_WRITTEN), _ENDING["primary-written"]
    if progress:
        progress("activating", len(image), len(image))
    return FlashResult(run.written, f"{run.verified}; {ending} ({choice.describe()})", run.retries)


_ENDING = {
    "trial": "booted on trial and confirmed",
    "overwrite": "copied into the primary slot and running",
    "pick": "booted by version and running",
    "pick-revert": "booted on trial and confirmed",
    "recovery": "written to the primary slot and running",
    "primary-written": "written to the primary slot by MCUboot's serial recovery and running",
}


class _Run:
    def __init__(self, name: str, boot_timeout: float, session: Any, image: bytes, digest: bytes, choice: Choice,
                 progress: FlashProgress | None) -> None:
        self.name, self.boot_timeout = name, boot_timeout
        self.session, self.image, self.digest, self.choice = session, image, digest, choice
        self.flasher = session.flasher
        self.progress = progress
        self.verified, self.retries, self.written = "", 0, 0
        self.was_running: bytes | None = None

    def do(self, step: Step) -> None:
        {Step.ENTER: self._enter, Step.UPLOAD: self._upload, Step.MARK_TEST: self._mark_for_test,
         Step.MARK_PERMANENT: self._mark_permanent, Step.RESET: self._reset, Step.SEE_RUNNING: self._see_running,
         Step.CONFIRM: self._confirm}[step]()

    def _enter(self) -> None:
        """Into MCUboot's serial recovery or its firmware loader: os reset with boot_mode 1, then
        the bootloader must answer, or another image than the application (the firmware loader,
        which answers as an application does)."""
        _step(self.choice, "reset into the bootloader",
              lambda: self.flasher.reset(codec.BOOT_MODE_BOOTLOADER))
        states, in_bootloader = self._answer("the reset into the bootloader")
        now = _active(states)
        if not in_bootloader and (now is None or now.hash == self.was_running):
            raise ThingError(f"{self.name}: after a reset with boot_mode 1 the application answers again "
                             f"(running {_version(states)}), not MCUboot's serial recovery: the application was "
                             f"not built to reset into it ({self.choice.describe()}); nothing was written")

    def _upload(self) -> None:
        result = _step(self.choice, "upload", lambda: self.flasher.flash(self.image, self.progress))
        self.verified, self.retries, self.written = result.verified, result.retries, result.written
        if self.progress:
            self.progress("activating", 0, len(self.image))

    def in_primary(self) -> bool:
        """Whether the upload is listed in the primary slot (where no application writes)."""
        return any(state.hash == self.digest and state.slot == 0 for state in self.flasher.image_states())

    def _mark_for_test(self) -> None:
        _step(self.choice, "mark for test", lambda: self.flasher.mark_for_test(self.digest))

    def _mark_permanent(self) -> None:
        _step(self.choice, "mark permanent", lambda: self.flasher.confirm(self.digest))

    def _reset(self) -> None:
        _step(self.choice, "reset", self.session.restart)

    def _see_running(self) -> None:
        states, in_bootloader = self._answer("the reset")
        running = _active(states)
        if in_bootloader or running is None or running.hash != self.digest:
            now = "MCUboot's serial recovery answers" if in_bootloader else f"running {_version(states)}"
            after = ("it is not confirmed, and MCUboot goes back to the old image at the next reset"
                     if self.choice.flow.rolls_back else "this mode has no way back to the old image")
            raise ThingVerifyError(f"{self.name}: the new image did not come up after the reset ({now}); "
                                   f"{after} ({self.choice.describe()})")

    def _confirm(self) -> None:
        _step(self.choice, "confirm", lambda: self.flasher.confirm(self.digest))

    def _answer(self, after: str) -> tuple[list[codec.ImageState], bool]:
        """The image list once the Thing answers again; MCUboot swaps or copies images before the
        application starts, which takes a while (up to ``boot_timeout``)."""
        deadline = time.monotonic() + self.boot_timeout
        while True:
            try:
                return self.flasher.listing()
            except ThingTimeoutError:
                if time.monotonic() > deadline:
                    raise ThingTimeoutError(f"{self.name}: no answer within {self.boot_timeout:g} s "
                                            f"after {after} ({self.choice.describe()})") from None
                time.sleep(POLL)


def _step(choice: Choice, what: str, action: Any) -> Any:
    """``action()``; a refusal names the mode the flow was for."""
    try:
        return action()
    except SmpRefusedError as exc:
        raise SmpRefusedError(f"{exc.detail} ({choice.describe()})", rc=exc.rc) from None


def _active(states: list[codec.ImageState]) -> codec.ImageState | None:
    return next((state for state in states if state.active), None)


def _version(states: list[codec.ImageState]) -> str:
    running = _active(states)
    return running.version if running else "nothing"
