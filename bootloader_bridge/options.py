"""The agent.toml keys a plug-in declares: a bootloader backend's in ``[bootloader]``, a Thing
protocol's in ``[things.<name>]``.

A backend or protocol lists its own options (key, kind, default, bounds, choices or a check);
agent/config.py reads a table from that list alone, so a new backend or protocol needs no
change there, and its mistakes are found when the configuration is loaded, named by key.
A value reaches the backend as a keyword argument (``argument``, or the key itself): a path as
a :class:`pathlib.Path` relative to the configuration file, a command as a tuple of strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("path", "str", "int", "number", "bool", "command")


@dataclass(frozen=True)
class Option:
    key: str                                    # in agent.toml
    kind: str                                   # one of KINDS
    default: Any = None                         # when the key is absent; None: not set
    argument: str = ""                          # the backend's keyword argument; "": the key
    low: float | None = None                    # int, number: the least value (a number needs both bounds)
    high: float | None = None                   # and the greatest
    choices: tuple[str, ...] = ()               # str: the values there are
    check: Callable[[Any], bool] | None = None  # any other test of the value ...
    must: str = ""                              # ... and what the value must be: "a 32-bit address"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.key}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "number" and (self.low is None or self.high is None):
            raise ValueError(f"option {self.key}: a number needs both bounds (a configuration has no nan or inf)")

    @property
    def keyword(self) -> str:
        return self.argument or self.key

    def problem(self, value: Any, owner: str) -> str | None:
        """What is wrong with a value of the right kind, in words that follow the key
        (``must be from 1 to 9, got 12``); None when nothing is. ``owner`` is what declared
        the option (``type uboot``, ``protocol stm32``)."""
        if self.choices and value not in self.choices:
            return f"{value!r}: for {owner}, one of {', '.join(self.choices)}"
        too_low, too_high = self.low is not None and value < self.low, self.high is not None and value > self.high
        if too_low or too_high:
            bounds = (f"from {self.low:.12g} to {self.high:.12g}" if self.low is not None and self.high is not None
                      else f"at least {self.low:.12g}" if too_low else f"at most {self.high:.12g}")
            return f"must be {bounds}, got {value!r}"
        if self.check is not None and not self.check(value):
            return f"must be {self.must}"
        return None


def declared(plugin: Any) -> tuple[Option, ...]:
    """A backend's or protocol's options: its ``OPTIONS``; none when it declares none."""
    return tuple(getattr(plugin, "OPTIONS", ()))
