"""MCUboot's modes and the flow fwagent runs in each, as data: pure.

MCUboot is built in one mode, which decides how a new image gets booted. A
Zephyr application with the SMP OS group's bootloader-information command
reports it (``{"query": "mode"}`` answered by ``{"mode": n}``, ``n`` from
MCUboot's ``enum mcuboot_mode``). The flow is chosen from that answer; when the
device does not answer, from ``[things.<name>].mcuboot_mode``; else a swap mode
is assumed (upload beside the running image, boot it on trial, confirm it).

    flow          steps                                                  can go back
    trial         upload, mark-for-test, reset, see-running, confirm     yes
    overwrite     upload, mark-permanent, reset, see-running             no
    pick          upload, reset, see-running                             no
    pick-revert   upload, mark-for-test, reset, see-running, confirm     yes
    recovery      enter-bootloader, upload, reset, see-running           no

``pick``: MCUboot boots the slot with the highest version (direct-XIP, RAM-load),
so the upload goes to the slot not running and needs no mark. ``recovery``: the
image goes into the primary slot through MCUboot's serial recovery (or its
firmware loader), entered with ``os reset`` and ``boot_mode`` 1 unless the
Thing is in its bootloader already; a Thing found there is always updated this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Mode(str, Enum):
    """MCUboot's modes by the names ``[things.<name>].mcuboot_mode`` takes."""

    SWAP = "swap"                           # one of the swap modes, not said which
    SWAP_SCRATCH = "swap-scratch"
    SWAP_MOVE = "swap-move"
    SWAP_OFFSET = "swap-offset"
    OVERWRITE_ONLY = "overwrite-only"
    SINGLE_APP = "single-app"
    DIRECT_XIP = "direct-xip"
    DIRECT_XIP_REVERT = "direct-xip-revert"
    RAM_LOAD = "ram-load"
    SINGLE_RAM_LOAD = "single-ram-load"
    FIRMWARE_LOADER = "firmware-loader"
    SERIAL_RECOVERY = "serial-recovery"     # not a build mode: update through MCUboot's serial recovery


# MCUboot's enum mcuboot_mode (bootutil/boot_status.h), as bootloader information reports it.
BY_NUMBER: dict[int, Mode] = {
    0: Mode.SINGLE_APP, 1: Mode.SWAP_SCRATCH, 2: Mode.OVERWRITE_ONLY, 3: Mode.SWAP_MOVE, 4: Mode.DIRECT_XIP,
    5: Mode.DIRECT_XIP_REVERT, 6: Mode.RAM_LOAD, 7: Mode.FIRMWARE_LOADER, 8: Mode.SINGLE_RAM_LOAD,
    9: Mode.SWAP_OFFSET,
}


class Step(str, Enum):
    ENTER = "enter-bootloader"      # os reset with boot_mode 1, then the bootloader must answer
    UPLOAD = "upload"
    MARK_TEST = "mark-for-test"     # boot it once at the next reset; it reverts unless confirmed
    MARK_PERMANENT = "mark-permanent"
    RESET = "reset"
    SEE_RUNNING = "see-running"     # the new image answers as the active one within boot_timeout
    CONFIRM = "confirm"


@dataclass(frozen=True)
class Flow:
    name: str
    steps: tuple[Step, ...]
    rolls_back: bool                # an image that does not come up is not kept: MCUboot goes back
    secondary: bool = False         # uploads go to the secondary slot: an upload found in the primary
                                    # was written there by MCUboot's serial recovery (see PRIMARY_WRITTEN)


TRIAL = Flow("trial", (Step.UPLOAD, Step.MARK_TEST, Step.RESET, Step.SEE_RUNNING, Step.CONFIRM), True, True)
OVERWRITE = Flow("overwrite", (Step.UPLOAD, Step.MARK_PERMANENT, Step.RESET, Step.SEE_RUNNING), False, True)
PICK = Flow("pick", (Step.UPLOAD, Step.RESET, Step.SEE_RUNNING), False)
PICK_REVERT = Flow("pick-revert", (Step.UPLOAD, Step.MARK_TEST, Step.RESET, Step.SEE_RUNNING, Step.CONFIRM), True)
RECOVERY = Flow("recovery", (Step.ENTER, Step.UPLOAD, Step.RESET, Step.SEE_RUNNING), False)
# What is left of a secondary-slot flow once the upload is found in the primary slot: a Thing in
# MCUboot's serial recovery that lists its images with flags, as an application would.
PRIMARY_WRITTEN = (Step.RESET, Step.SEE_RUNNING)

FLOWS: dict[Mode, Flow] = {
    Mode.SWAP: TRIAL, Mode.SWAP_SCRATCH: TRIAL, Mode.SWAP_MOVE: TRIAL, Mode.SWAP_OFFSET: TRIAL,
    Mode.OVERWRITE_ONLY: OVERWRITE,
    Mode.DIRECT_XIP: PICK, Mode.RAM_LOAD: PICK,
    Mode.DIRECT_XIP_REVERT: PICK_REVERT,
    Mode.SINGLE_APP: RECOVERY, Mode.SINGLE_RAM_LOAD: RECOVERY, Mode.FIRMWARE_LOADER: RECOVERY,
    Mode.SERIAL_RECOVERY: RECOVERY,
}

NAMES = tuple(mode.value for mode in Mode)


class UnknownModeError(ValueError):
    """The device reports a mode number fwagent has no flow for."""


@dataclass(frozen=True)
class Choice:
    mode: Mode
    source: str                     # "device", "configured", "assumed", "in-bootloader"
    flow: Flow

    def describe(self) -> str:
        """How the mode was come by, for error messages and results."""
        why = {"device": "reported by the device",
               "configured": "configured, the device does not report its mode",
               "assumed": "assumed, the device does not report its mode and none is configured",
               "in-bootloader": "the Thing answers from MCUboot's serial recovery"}[self.source]
        return f"MCUboot mode {self.mode.value}, {why}"


def choose(reported: int | None, configured: str | None, in_bootloader: bool) -> Choice:
    """The mode and flow from what the device says (``reported``, None when it did not answer),
    the configuration and where the Thing answered from.

    A Thing in its bootloader is updated through it. ``serial-recovery`` configured is the
    operator's choice of path and wins over the build mode the application reports; any other
    configured mode is used only when the device does not report one."""
    if in_bootloader:
        return Choice(Mode.SERIAL_RECOVERY, "in-bootloader", RECOVERY)
    if configured == Mode.SERIAL_RECOVERY.value:
        return Choice(Mode.SERIAL_RECOVERY, "configured", RECOVERY)
    if reported is not None and reported >= 0:
        if reported not in BY_NUMBER:
            raise UnknownModeError(f"the device reports MCUboot mode {reported}, which fwagent has no flow for")
        mode = BY_NUMBER[reported]
        return Choice(mode, "device", FLOWS[mode])
    if configured is not None:
        mode = Mode(configured)
        return Choice(mode, "configured", FLOWS[mode])
    return Choice(Mode.SWAP, "assumed", TRIAL)


def rolls_back(configured: str | None) -> bool:
    """Whether a Thing configured with ``mcuboot_mode`` can go back (the campaign's order);
    without one, a swap mode is assumed."""
    return FLOWS[Mode(configured)].rolls_back if configured is not None else True
