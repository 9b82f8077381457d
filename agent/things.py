"""The gateway's Things as the agent uses them: open one (link, reset, flasher), read its version,
flash it. Whatever is particular to a protocol (its flasher's options, its flow) is its
``ThingProtocol`` in bootloader_bridge/things/: here a Thing is opened, handed to its protocol,
and reset."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent.config import ThingConfig
from agent.errors import BootloaderError, ThingError, ThingOfflineError, ThingPortError, ThingTimeoutError
from bootloader_bridge.bootchooser.command import run
from bootloader_bridge.things.base import FlashProgress, FlashResult, ThingInfo
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.registry import protocol
from bootloader_bridge.things.reset import NoReset, parse_reset

VERSION_TIMEOUT = 10.0


@dataclass
class OpenThing:
    """A Thing held in its bootloader: its flasher, reset method and link."""

    flasher: Any
    reset: Any
    link: SerialLink
    restarted: bool = False     # the flow started the application itself: no reset after a success

    def restart(self) -> None:
        """Into the application: through the reset lines when there are any (with the boot pin
        released), else by the device's own reset command."""
        if isinstance(self.reset, NoReset):
            self.flasher.reset()
        else:
            self.reset.leave(self.link)
            self.link.drain(quiet=0.4, timeout=3.0)
        self.restarted = True


@contextmanager
def opened(thing: ThingConfig) -> Iterator[OpenThing]:
    """The Thing in its bootloader; reset into its application (unless the flow restarted it
    already and succeeded: after a failed trial boot the reset makes MCUboot go back) and the
    port closed afterwards, whatever happened (a Thing is never left held in reset). A failing
    reset on the way out does not hide the error that got there first.

    A Thing not reached is ThingOfflineError: its port does not open, or it times out without
    having sent a single byte. Nothing was written to it then."""
    declared = protocol(thing.protocol)
    reset = parse_reset(thing.reset, thing.name)
    try:
        link = SerialLink(thing.port, baud=thing.baud, parity=thing.parity, name=thing.name)
    except ThingPortError as err:
        raise ThingOfflineError(err.detail) from None
    with link:
        reset.enter(link)
        session = OpenThing(None, reset, link)
        try:
            arguments = declared.arguments(declared.settings(thing.options), not isinstance(reset, NoReset))
            session.flasher = declared.flasher(link, name=thing.name, **arguments)
            yield session
        except BaseException as failure:
            _leave_after(failure, reset, link)      # even after a trial boot: MCUboot then goes back
            if isinstance(failure, ThingTimeoutError) and link.received == 0:
                detail = failure.detail.removeprefix(f"{thing.name}: ")
                offline = ThingOfflineError(f"{thing.name}: no answer on {thing.port}, not a byte in this session "
                                            f"({detail})")
                for note in getattr(failure, "__notes__", ()):
                    offline.add_note(note)
                raise offline from None
            raise
        if not session.restarted:
            reset.leave(link)


def _leave_after(failure: BaseException, reset: Any, link: SerialLink) -> None:
    """Reset into the application after ``failure``; an error doing so becomes a note on it."""
    try:
        reset.leave(link)
    except Exception as err:  # noqa: BLE001 - the first error is the one to report
        failure.add_note(f"resetting into the application afterwards failed too: {err}")


def info(thing: ThingConfig) -> ThingInfo:
    with opened(thing) as session:
        return session.flasher.info()


def flash(thing: ThingConfig, image: bytes, progress: FlashProgress | None = None) -> FlashResult:
    """Write and verify ``image``, then start the Thing on it, by its protocol's flow (for MCUboot:
    on trial, then kept)."""
    started = time.monotonic()
    declared = protocol(thing.protocol)
    with opened(thing) as session:
        result = declared.flash(session, image, progress, thing.name, declared.settings(thing.options))
    return FlashResult(result.written, result.verified, result.retries, time.monotonic() - started)


def running_version(thing: ThingConfig) -> str | None:
    """What ``version_command`` prints (its first line), or None when the Thing has none."""
    if thing.version_command is None:
        return None
    try:
        output = run(thing.version_command, timeout=VERSION_TIMEOUT)
    except BootloaderError as err:
        raise ThingError(f"{thing.name}: version command: {err.detail}") from None
    lines = output.strip().splitlines()
    return lines[0].strip() if lines else None
