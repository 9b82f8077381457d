"""What the daemon is doing, in words: the step texts of its server reports and the
status line systemd shows (``systemctl status fwagent``, ``STATUS=``). Pure."""

from __future__ import annotations

from typing import Any

STEP_TEXT = {
    "verify": "verifying the signed manifest",
    "write": "installing into slot {target}",
    "staged": "staged in slot {target}; the switch waits for [policy].reboot",
    "switch": "switching to slot {target}",
    "reboot": "rebooting into slot {target}",
    "check-boot": "checking which slot booted",
    "health": "running the health checks",
    "commit": "committing slot {target}",
    "stash": "keeping the Things' images until they are flashed",
    "things": "flashing the Things",
    "rollback": "rolling back to slot {previous}",
}

PHASE_TEXT = {
    "idle": "idle",
    "download": "downloading",
    "wait-window": "downloaded; waiting for the server to allow the install",
    "wait-approval": "waiting for approval before the download",
    "install": "installing",
    "wait-reboot": "staged; the switch and reboot wait",
    "cancel": "cancelling; removing the downloads",
}


def step_text(state: str, update: dict[str, Any]) -> str | None:
    """An install step in words (None: a step with nothing to say)."""
    text = STEP_TEXT.get(state)
    return text.format(target=update.get("target"), previous=update.get("previous")) if text else None


def phase_text(phase: str, window: str | None = None, waiting: str | None = None) -> str:
    """What a phase of a server action does, before anything more precise is known; ``waiting``:
    why a local gate ([policy]) holds it."""
    if waiting:
        return f"{'downloaded; ' if phase == 'wait-window' else ''}{waiting}"
    if phase == "wait-window" and window == "unavailable":
        return "downloaded; waiting for the maintenance window"
    return PHASE_TEXT.get(phase, phase)


def percent(done: int, total: int | None) -> int:
    return min(100, int(done * 100 / total)) if total else 0


def size(count: int) -> str:
    """Bytes for a person: ``512 B``, ``12.5 MiB``."""
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def downloading(name: str, done: int, total: int | None) -> str:
    if total:
        return f"downloading {name}: {percent(done, total)} % of {size(total)}"
    return f"downloading {name}: {size(done)}"


def installing(slot: str, done: int, total: int | None) -> str:
    return f"installing {slot}: {percent(done, total)} %" if total else f"installing {slot}: {size(done)}"


def line(activity: str, *, action: str | None = None, update: str | None = None) -> str:
    """The status line: the activity, then the server action and the local update it is for."""
    ids = [f"action {action}"] if action else []
    ids += [f"update {update[:8]}"] if update else []
    return f"{activity} ({', '.join(ids)})" if ids else activity


def ids(update: dict[str, Any]) -> dict[str, str]:
    """How log lines and status lines name an update (a journal's update, an outcome): its
    server action (``action=12``), when a server asked for it, and the first 8 characters of its
    own id (``update=d4b33c09``, as ``fwagent status`` shows it)."""
    action = (update.get("origin") or {}).get("ddi_action")
    named = {"action": str(action)} if action is not None else {}
    return {**named, "update": str(update["id"])[:8]} if update.get("id") else named


def outcome(result: str, state: str, code: str = "", version: str | None = None) -> str:
    """How an update ended, or where it waits, in words."""
    if result == "pending" and state == "staged":
        return "staged: written and checked; the switch and reboot wait for [policy].reboot"
    if result == "pending":
        return f"waiting for the reboot into the new slot (step {state})"
    if state in ("committed", "already-installed"):
        return "the update ended: " + state.replace("-", " ") + (f", version {version}" if version else "")
    return f"the update ended: {state} ({code})" if code else f"the update ended: {state}"
