"""One line on what an install by delta cost, for the command line and the server (pure)."""

from __future__ import annotations

from typing import Any


def summary(stats: dict[str, Any]) -> str:
    """What a delta fetched against the full image, or why the full image was fetched."""
    if stats["mode"] != "delta":
        return f"full image ({stats['full']} bytes): {stats['reason']}"
    return (f"delta: fetched {stats['fetched']} of {stats['full']} bytes ({stats['fetched'] / stats['full']:.1%}) "
            f"in {stats['requests']} requests; frames: {stats['copied']} copied from the booted slot, "
            f"{stats['kept']} already in place, {stats['downloaded']} downloaded")
