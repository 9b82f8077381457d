"""The ``name=value`` lines that ``grub-editenv list`` and ``fw_printenv`` print."""

from __future__ import annotations


def parse_listing(text: str) -> dict[str, str]:
    """Variables of a listing, in the order printed.

    A value may hold a newline, which the tools print as is; a line without
    ``=`` therefore continues the value before it.
    """
    variables: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name:
            variables[name] = value
            last = name
        elif last is not None:
            variables[last] += "\n" + line
    return variables
