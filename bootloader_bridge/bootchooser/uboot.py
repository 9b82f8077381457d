"""U-Boot backend: RAUC's variables in the U-Boot environment, through ``fw_printenv``/``fw_setenv``.

Variables:

* ``BOOT_ORDER`` -- the boot order, slot names separated by spaces (``"A B"``);
* ``BOOT_A_LEFT`` / ``BOOT_B_LEFT`` -- boot attempts left; the boot script
  boots the first slot of the order with attempts left and decrements its
  count. A good slot gets ``attempts`` back each time the booted system marks
  it good; a bad slot has 0; ``set_primary`` gives exactly 1.

``attempts`` is 1 to 9: U-Boot's ``setexpr`` stores its results in hex, and
with one digit hex and decimal read the same.

A corrupt environment (bad CRC, or a variable above missing or malformed) is
a :class:`BootEnvCorruptError`. It is never "repaired": ``fw_setenv`` on a
corrupt environment would start from a default environment, so every write
reads the environment first and does not happen when that read fails.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from agent.errors import BootEnvCorruptError, BootloaderError, ConfigError

from bootloader_bridge.bootchooser import command
from bootloader_bridge.bootchooser.base import (DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT, SLOTS, check_slot,
                                                order_with_first, parse_order)
from bootloader_bridge.envcodec.listing import parse_listing
from bootloader_bridge.options import Option

# How fw_printenv (libubootenv, and U-Boot's own tools) says it could not read the stored environment.
_CORRUPT = ("cannot read environment", "bad crc", "using default")


MAX_ATTEMPTS = 9


class UBootBootloader:
    OPTIONS = (Option("fw_env_config", "path", "/etc/fw_env.config", argument="config"),
               Option("attempts", "int", DEFAULT_ATTEMPTS, low=1, high=MAX_ATTEMPTS))

    def __init__(self, config: str | Path = "/etc/fw_env.config", *, attempts: int = DEFAULT_ATTEMPTS,
                 timeout: float = DEFAULT_TIMEOUT, atomic_write: bool | None = None,
                 printenv: str = "fw_printenv", setenv: str = "fw_setenv") -> None:
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise ConfigError(f"uboot attempts must be 1 to {MAX_ATTEMPTS}, not {attempts}")
        self.config = Path(config)
        self.attempts = attempts
        self.timeout = timeout
        self._atomic_write = atomic_write
        self.printenv = printenv
        self.setenv = setenv

    @property
    def atomic_write(self) -> bool:
        """Whether one ``fw_setenv`` write is all-or-nothing: by default, when the environment is redundant.

        With two copies ``fw_setenv`` writes the older copy and only then
        makes it current (its flag), so a power cut leaves the previous copy
        in force. A single copy is rewritten in place; see :meth:`set_primary`.
        """
        if self._atomic_write is None:
            return len(_devices(self.config)) >= 2
        return self._atomic_write

    def get_primary(self) -> str | None:
        env = self._env()
        for slot in _order(env):
            if _left(env, slot) > 0:
                return slot
        return None

    def set_primary(self, slot: str) -> None:
        """``BOOT_<slot>_LEFT=1`` first, then ``BOOT_ORDER`` with the slot first.

        In that order every intermediate state boots: after the first step
        the old order still holds and the new slot only gained a fallback try;
        the reverse order could put a slot first whose count still holds the
        attempts of an earlier life, giving the new image more than one try.
        Unless one write is known to be atomic, the steps are separate writes.
        """
        check_slot(slot)
        order = order_with_first(_order(self._env()), slot)
        self._write([{f"BOOT_{slot}_LEFT": "1"}, {"BOOT_ORDER": " ".join(order)}])

    def get_state(self, slot: str) -> bool:
        return _left(self._env(), check_slot(slot)) > 0

    def set_state(self, slot: str, good: bool) -> None:
        check_slot(slot)
        self._env()  # never write into a corrupt environment
        self._write([{f"BOOT_{slot}_LEFT": str(self.attempts if good else 0)}])

    def variables(self) -> dict[str, str]:
        return parse_listing(command.run([self.printenv, "-c", str(self.config)],
                                         timeout=self.timeout, corrupt_if=_CORRUPT))

    def _env(self) -> dict[str, str]:
        """The variables, checked: every RAUC variable present and well-formed."""
        env = self.variables()
        missing = [name for name in ("BOOT_ORDER", *(f"BOOT_{s}_LEFT" for s in SLOTS)) if name not in env]
        if missing:
            raise BootEnvCorruptError(f"U-Boot environment ({self.config}) lacks {', '.join(missing)}")
        _order(env)
        for slot in SLOTS:
            _left(env, slot)
        return env

    def _write(self, steps: list[dict[str, str]]) -> None:
        """Write the steps in order, merged into one write when that is atomic, then check them."""
        if self.atomic_write:
            steps = [{name: value for step in steps for name, value in step.items()}]
        for step in steps:
            self._setenv(step)
        self._verify({name: value for step in steps for name, value in step.items()})

    def _setenv(self, assignments: dict[str, str]) -> None:
        with tempfile.NamedTemporaryFile("w", prefix="fwagent-setenv-", suffix=".txt") as script:
            script.write("".join(f"{name}={value}\n" for name, value in assignments.items()))
            script.flush()
            command.run([self.setenv, "-c", str(self.config), "-s", script.name],
                        timeout=self.timeout, corrupt_if=_CORRUPT)

    def _verify(self, expected: dict[str, str]) -> None:
        """Read back what was written: a ``fw_setenv`` that reads another script format ignores lines silently."""
        env = self.variables()
        wrong = {name: env.get(name) for name, value in expected.items() if env.get(name) != value}
        if wrong:
            raise BootloaderError(f"{self.setenv} did not store {expected}; the environment has {wrong}")


def _order(env: dict[str, str]) -> list[str]:
    return parse_order(env["BOOT_ORDER"], variable="BOOT_ORDER")


def _left(env: dict[str, str], slot: str) -> int:
    value = env[f"BOOT_{slot}_LEFT"]
    if not value.isdigit() or not value.isascii():
        raise BootEnvCorruptError(f"BOOT_{slot}_LEFT={value!r} is not a count of boot attempts")
    return int(value)


def _devices(config: Path) -> list[str]:
    """The environment copies that ``fw_env.config`` names: one line each, ``#`` comments aside."""
    try:
        text = config.read_text()
    except OSError as err:
        raise BootloaderError(f"cannot read {config}: {err.strerror or err}") from err
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
