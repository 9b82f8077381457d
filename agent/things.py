"""The gateway's Things as the agent uses them: open one (link, reset, flasher), read its version,
flash it. The protocols themselves are in bootloader_bridge/things/."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent.config import ThingConfig
from agent.errors import ThingError, ThingVerifyError
from bootloader_bridge.things.base import FlashProgress, FlashResult, ThingInfo
from bootloader_bridge.things.link import SerialLink
from bootloader_bridge.things.registry import create
from bootloader_bridge.things.reset import parse_reset

VERSION_TIMEOUT = 10.0


@contextmanager
def opened(thing: ThingConfig) -> Iterator[tuple[Any, Any, SerialLink]]:
    """(flasher, reset method, link) with the Thing in its bootloader; the port closed afterwards."""
    reset = parse_reset(thing.reset, thing.name)
    with SerialLink(thing.port, baud=thing.baud, parity=thing.parity, name=thing.name) as link:
        reset.enter(link)
        options: dict[str, Any] = {"name": thing.name}
        if thing.protocol == "stm32":
            options["address"] = thing.address
        yield create(thing.protocol, link, **options), reset, link


def info(thing: ThingConfig) -> ThingInfo:
    with opened(thing) as (flasher, reset, link):
        try:
            return flasher.info()
        finally:
            reset.leave(link)


def flash(thing: ThingConfig, image: bytes, progress: FlashProgress | None = None) -> FlashResult:
    """Write and verify ``image``, then start the Thing on it (for MCUboot: on trial, then kept)."""
    started = time.monotonic()
    with opened(thing) as (flasher, reset, link):
        result = flasher.flash(image, progress)
        verified = result.verified
        if thing.protocol == "mcuboot-smp":
            verified += "; " + _activate_mcuboot(thing, flasher, image, progress)
        reset.leave(link)
    return FlashResult(result.written, verified, result.retries, time.monotonic() - started)


def _activate_mcuboot(thing: ThingConfig, flasher: Any, image: bytes, progress: FlashProgress | None) -> str:
    """Boot the new image once on trial, see it run, then confirm it; an image that does not come
    up is not confirmed, and MCUboot goes back to the old one at the next reset.

    MCUboot's serial recovery writes the primary slot itself: there is nothing to try then, and
    a reset starts the image."""
    from bootloader_bridge.things.mcuboot_image import parse

    digest = parse(image).hash
    if progress:
        progress("activating", 0, len(image))
    if any(state.hash == digest and state.slot == 0 for state in flasher.image_states()):
        flasher.reset()
        return "written to the primary slot"
    flasher.mark_for_test(digest)
    flasher.reset()
    running = next((state for state in flasher.image_states() if state.active), None)
    if running is None or running.hash != digest:
        raise ThingVerifyError(f"{thing.name}: the new image did not come up after the reset "
                               f"(running {running.version if running else 'nothing'}); it is not confirmed, "
                               "and MCUboot goes back to the old image at the next reset")
    flasher.confirm(digest)
    if progress:
        progress("activating", len(image), len(image))
    return "booted on trial and confirmed"


def running_version(thing: ThingConfig) -> str | None:
    """What ``version_command`` prints (its first line), or None when the Thing has none."""
    if thing.version_command is None:
        return None
    try:
        done = subprocess.run(thing.version_command, capture_output=True, text=True, timeout=VERSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ThingError(f"{thing.name}: version command did not answer in {VERSION_TIMEOUT:g} s") from None
    except OSError as exc:
        raise ThingError(f"{thing.name}: version command {thing.version_command[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        raise ThingError(f"{thing.name}: version command exited {done.returncode}: {done.stderr.strip()[:200]}")
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if lines else None
