"""What the scenarios share: deploying a bundle on the reference server, reading what it recorded,
and following a gateway that reboots by itself until the server has the action's result."""

from __future__ import annotations

import time
from collections.abc import Callable

import pexpect

from hil.gateway.device import Gateway
from agent.demo.ddi_server import Action, DdiServer

UPDATE_TIMEOUT = 900.0     # seconds for a whole update under TCG on a busy two-core machine


def deploy(ddi: DdiServer, device_id: str, name: str, data: bytes, version: str) -> Action:
    return ddi.create_deployment(device_id, [{"part": "os", "name": "rootfs", "version": version,
                                              "artifacts": {f"{name}.fwb": data}}])


def details(ddi: DdiServer, action: Action) -> list[str]:
    return [text for status in ddi.statuses(action.id) for text in status.get("details", [])]


def finals(ddi: DdiServer, action: Action) -> list[dict]:
    """The closed statuses the device sent for the action: exactly one when all went well."""
    return [s for s in ddi.statuses(action.id) if s.get("execution") == "closed"]


def follow(gateway: Gateway, done: Callable[[], bool], what: str, timeout: float = UPDATE_TIMEOUT) -> list[str]:
    """Watch the console until ``done()``: every time the device reboots by itself, see the slot
    its boot script chose and log in again. Returns the slots booted meanwhile, in order."""
    slots: list[str] = []
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; slots booted meanwhile: {slots}")
        try:
            slots.append(gateway.await_bootloader(timeout=5))
        except pexpect.TIMEOUT:
            continue
        gateway.login()
    return slots


def settle(gateway: Gateway, quiet: float = 20.0) -> list[str]:
    """After the result: a reboot that may still follow (a rollback going back to the old slot),
    then a shell. Returns the slots booted meanwhile."""
    slots: list[str] = []
    while True:
        try:
            slots.append(gateway.await_bootloader(timeout=quiet))
        except pexpect.TIMEOUT:
            break
        gateway.login()
    gateway.login()
    return slots
